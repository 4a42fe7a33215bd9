"""nft payloads, compared by the table state they leave (what knftables' fake dumps).

Objects (table, sets, maps, chains, elements) compare as a set; each chain's
rules in order. Transaction steps that leave nothing in a fresh table
(`flush`, `delete`) are dropped; blank and `#` lines too.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class State:
    objects: set[str] = field(default_factory=set)
    rules: dict[str, list[str]] = field(default_factory=dict)


def parse(payload: str) -> State:
    state = State()
    for line in payload.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.split()[0] in ("flush", "delete"):
            continue
        words = line.split(" ", 5)
        if words[:2] == ["add", "rule"]:
            state.rules.setdefault(words[4], []).append(words[5])
        else:
            state.objects.add(line)
    return state
