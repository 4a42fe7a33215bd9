"""Fault renderers: partition rules. Pure. (qdiscs: `dataplane.shaping`.)"""

from __future__ import annotations

from collections.abc import Sequence

from labkit.dataplane.script import script

PARTITION_IN = "LABKIT-FAULT-PART-IN"  # raw PREROUTING: what arrives from the other side
PARTITION_OUT = "LABKIT-FAULT-PART-OUT"  # raw OUTPUT: what the node sends to the other side


def partition_script(addresses: Sequence[str], macs: Sequence[str]) -> str:
    """Raw-table chains that drop everything from and to the given peers (empty: heal)."""
    lines = ["*raw", f":{PARTITION_IN} - [0:0]", f":{PARTITION_OUT} - [0:0]"]
    lines += [f"-A {PARTITION_IN} -s {address}/32 -j DROP" for address in addresses]
    lines += [f"-A {PARTITION_IN} -m mac --mac-source {mac} -j DROP" for mac in macs]
    lines += [f"-A {PARTITION_OUT} -d {address}/32 -j DROP" for address in addresses]
    lines.append("COMMIT")
    payload = "\n".join(lines)
    return script(
        [
            f"iptables-restore --noflush <<'LABKIT_EOF'\n{payload}\nLABKIT_EOF",
            f"iptables -t raw -C PREROUTING -j {PARTITION_IN} 2>/dev/null || "
            f"iptables -t raw -I PREROUTING 1 -j {PARTITION_IN}",
            f"iptables -t raw -C OUTPUT -j {PARTITION_OUT} 2>/dev/null || "
            f"iptables -t raw -I OUTPUT 1 -j {PARTITION_OUT}",
        ]
    )
