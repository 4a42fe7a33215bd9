"""How each proxy mode writes and checks its rules on a node: the node scripts. Pure.

A sync on a node is one script, so one exec:

 1. check: the digest of the rules labkit owns, as found on the node, against
    the digest recorded after labkit's last write. A difference (rules
    deleted or changed by hand) prints DRIFT and the chains found, and stops:
    the caller then writes everything (a full sync) instead.
 2. write: one transaction (`iptables-restore --noflush` or `nft -f`); in
    ipvs mode a script: VIPs on kube-ipvs0, `ipvsadm -R`, `iptables-restore`.
 3. the jumps from the built-in chains (iptables), conntrack deletions.
 4. the new digest, for the next check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labkit.dataplane import kubeproxy_iptables as ipt
from labkit.dataplane import kubeproxy_ipvs as ipvs
from labkit.dataplane import kubeproxy_nft as nft
from labkit.dataplane.kubeproxy import ProxyPlan
from labkit.dataplane.script import q

DRIFT = "LABKIT-DRIFT"
DIGEST = "LABKIT-DIGEST"
CHAIN = "LABKIT-CHAIN"
MARKER = "LABKIT_RULES_EOF"
# awk: drop the `elements = { ... }` (one line or several) of `set affinity-*` blocks.
_WITHOUT_AFFINITY_ELEMENTS = (
    r"/^\tset affinity-/ {inset = 1} "
    r"inset && /elements = \{/ {skip = 1} "
    r"!skip {print} "
    r"skip && /\}/ {skip = 0; next} "
    r"/^\t\}/ {inset = 0}"
)


@dataclass(frozen=True)
class Mode:
    """A proxy mode's tools on the node."""

    name: str  # iptables | nftables | ipvs
    backend: str = "nft"  # iptables only: which iptables (nft | legacy)

    @property
    def _ipt(self) -> str:
        return "iptables-legacy" if self.backend == "legacy" else "iptables"

    # -- what the node runs ---------------------------------------------------

    def digest_command(self) -> str:
        if self.name == "ipvs":
            return ipvs.digest_command(self._ipt)
        if self.name == "nftables":
            # Everything but the affinity sets' elements, which come and go with traffic.
            return (
                f"{{ nft list table {nft.FAMILY} {nft.TABLE} 2>/dev/null || true; }} "
                f"| awk {q(_WITHOUT_AFFINITY_ELEMENTS)} | md5sum"
            )
        save = f"{self._ipt}-save"
        return (
            f"{{ {save} -t filter; {save} -t nat; }} 2>/dev/null "
            "| grep -E '^(:KUBE-|-A KUBE-|-A [A-Z]+ .*-j KUBE-)' | sed 's/ \\[[0-9]*:[0-9]*\\]$//' "
            "| md5sum"
        )

    def chains_command(self) -> str:
        """Print `LABKIT-CHAIN <name>` for each per-service chain found (nftables: and each
        set, so that unused affinity sets go too)."""
        if self.name == "ipvs":  # fixed chain names, nothing goes stale
            return "true"
        if self.name == "nftables":
            return (
                f"nft list table {nft.FAMILY} {nft.TABLE} 2>/dev/null | "
                f"sed -n 's/^\\t\\(chain\\|set\\) \\([^ ]*\\) {{$/{CHAIN} \\2/p'"
            )
        return (
            f"{self._ipt}-save -t nat | sed -n 's/^:\\(KUBE-\\(SVC\\|SVL\\|EXT\\|FW\\|SEP\\)-[^ ]*\\) .*/"
            f"{CHAIN} \\1/p'"
        )

    def apply_command(self, path: str) -> str:
        if self.name == "ipvs":
            return f"sh -e {path}"  # the payload is a script: addresses, ipvsadm, iptables
        if self.name == "nftables":
            return f"nft -f {path}"
        return f"{self._ipt}-restore --noflush < {path}"

    def hook_commands(self, fresh: bool = False) -> list[str]:
        """Ensure the jumps from the built-in chains (inserted first, as kube-proxy does).
        `fresh`: the node holds none yet (its script at up), so one restore inserts them
        all, in the same order: a check and an insert per hook cost 28 processes."""
        if self.name == "nftables":
            return []  # the table's own base chains hook in
        if fresh:
            body = []
            for wanted in ("filter", "nat"):
                rules = [f"-I {c} 1 {spec}" for t, c, spec in reversed(self._hooks) if t == wanted]
                body += [f"*{wanted}", *rules, "COMMIT"] if rules else []
            text = "\n".join(body)
            return [f"{self._ipt}-restore --noflush <<'{MARKER}'\n{text}\n{MARKER}"]
        commands = []
        for table, chain, spec in reversed(self._hooks):
            commands.append(
                f"{self._ipt} -w -t {table} -C {chain} {spec} 2>/dev/null || "
                f"{self._ipt} -w -t {table} -I {chain} 1 {spec}"
            )
        return commands

    @property
    def _hooks(self) -> tuple[tuple[str, str, str], ...]:
        return ipvs.HOOKS if self.name == "ipvs" else ipt.HOOKS

    # -- payloads ----------------------------------------------------------------

    def render_full(
        self,
        plan: ProxyPlan,
        existing_chains: Iterable[str] = (),
        stale_since_last: Iterable[str] = (),
    ) -> str:
        """`stale_since_last` (nftables): `stale_after_full`/`stale_after_partial` of the
        previous sync; those chains are deleted now (iptables deletes at once)."""
        if self.name == "ipvs":
            return ipvs.render_full(plan, self._ipt)
        if self.name == "nftables":
            return nft.render_full(plan, existing_chains, stale_since_last)
        return ipt.render_full(plan, existing_chains)

    def render_partial(
        self, old: ProxyPlan, new: ProxyPlan, stale_since_last: Iterable[str] = ()
    ) -> str:
        if self.name == "ipvs":
            return ipvs.render_partial(old, new, self._ipt)
        if self.name == "nftables":
            return nft.render_partial(old, new, stale_since_last)
        return ipt.render_partial(old, new)

    def stale_after_full(self, plan: ProxyPlan, existing_chains: Iterable[str]) -> set[str]:
        """The chains a full sync left flushed, to delete at the next sync (nftables)."""
        return nft.stale_chains(plan, existing_chains) if self.name == "nftables" else set()

    def stale_after_partial(self, old: ProxyPlan, new: ProxyPlan) -> set[str]:
        return nft.partial_stale_chains(old, new) if self.name == "nftables" else set()

    def rule_count(self, plan: ProxyPlan) -> int:
        if self.name == "ipvs":
            return ipvs.rule_count(plan)
        if self.name == "nftables":
            return nft.rule_count(plan)
        return ipt.rule_count(ipt.render_full(plan))

    def cleanup_script(self) -> str:
        """Remove everything this mode wrote (used when switching modes, and by the bench)."""
        if self.name == "nftables":
            return f"nft delete table {nft.FAMILY} {nft.TABLE} 2>/dev/null || true\n"
        lines = [
            f"{self._ipt} -w -t {table} -D {chain} {spec} 2>/dev/null || true"
            for table, chain, spec in self._hooks
        ]
        if self.name == "ipvs":
            lines += ipvs.cleanup_lines()
        save = f"{self._ipt}-save"
        for table in ("nat", "filter"):
            chains = f"$({save} -t {table} | sed -n 's/^:\\(KUBE-[^ ]*\\) .*/\\1/p')"
            lines.append(f"for c in {chains}; do {self._ipt} -w -t {table} -F $c; done")
            lines.append(f"for c in {chains}; do {self._ipt} -w -t {table} -X $c; done")
        return "\n".join(lines) + "\n"


def mode_of(proxy_mode: str, iptables_backend: str = "nft") -> Mode:
    return Mode(proxy_mode, iptables_backend if proxy_mode == "iptables" else "nft")


def payload_step(mode: Mode, payload: str | None, path: str) -> list[str]:
    """Write the payload (inline when given, else it was copied to `path` already) and load it."""
    lines = []
    if payload is not None:
        assert MARKER not in payload
        lines.append(f"cat > {path} <<'{MARKER}'\n{payload.rstrip()}\n{MARKER}")
    lines.append(mode.apply_command(path))
    return lines


def sync_script(
    mode: Mode,
    *,
    payload: str | None,
    path: str,
    expected_digest: str | None,
    conntrack: Sequence[str] = (),
    before: Sequence[str] = (),
    after: Sequence[str] = (),
    record_digest: bool = True,
    fresh: bool = False,
) -> str:
    """The node's script for one sync; `expected_digest` None skips the drift check;
    `fresh`: the node holds no rules of labkit's yet."""
    lines = ["set -e", *before]
    if expected_digest is not None:
        lines += [
            _digest_into("found", mode),
            f'if [ "$found" != {q(expected_digest)} ]; then',
            f'  echo "{DRIFT} $found"',
            f"  {mode.chains_command()}",
            "  exit 0",
            "fi",
        ]
    lines += payload_step(mode, payload, path)
    lines += mode.hook_commands(fresh=fresh)
    lines += conntrack
    lines += after
    if record_digest:
        lines += [_digest_into("digest", mode), f'echo "{DIGEST} $digest"']
    return "\n".join(lines) + "\n"


def _digest_into(variable: str, mode: Mode) -> str:
    """Shell: the rules' digest in `variable` (md5sum's first word, cut by the shell)."""
    return f"{variable}=$({mode.digest_command()}); {variable}=${{{variable}%% *}}"


@dataclass(frozen=True)
class SyncOutput:
    drift: bool
    digest: str
    chains: tuple[str, ...]


def parse_sync_output(output: str) -> SyncOutput:
    drift, digest, chains = False, "", []
    for line in output.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == DRIFT:
            drift = True
        elif words[0] == DIGEST and len(words) > 1:
            digest = words[1]
        elif words[0] == CHAIN and len(words) > 1:
            chains.append(words[1])
    return SyncOutput(drift, digest, tuple(chains))
