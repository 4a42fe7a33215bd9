"""iptables rules, normalised for what iptables-save changes, so dumps compare rule by rule.

iptables-save groups rules by chain, prints the basic matches (-s, -d, -i, -o, -p)
before the match modules, writes host addresses as /32, prints the default
options it fills in (`recent`'s mask and rsource, REJECT's icmp-port-unreachable,
`recent`'s options in its own order), spells MARK's --or-mark/--xor-mark as
--set-xmark, prints probabilities with 11 decimals and quotes comments as it
likes. Nothing else is normalised: the order of the modules, of the rules in a
chain, and every value stay as written.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

BASIC = ("-s", "-d", "-i", "-o", "-p")
RECENT_ORDER = ("--set", "--rcheck", "--seconds", "--reap", "--name", "--mask", "--rsource")
DEFAULTS = {"recent": {"--mask": "255.255.255.255", "--rsource": None}}


@dataclass
class Table:
    chains: set[str] = field(default_factory=set)
    rules: dict[str, list[str]] = field(default_factory=dict)  # chain -> rules in order
    deleted: set[str] = field(default_factory=set)


def _address(value: str) -> str:
    return value if "/" in value else f"{value}/32"


def normalise_rule(rule: str) -> str:
    """`-A CHAIN ...` in iptables-save's argument order."""
    words = shlex.split(rule)
    assert words[0] == "-A", rule
    chain, rest = words[1], words[2:]
    basics: dict[str, str] = {}
    modules: list[tuple[str, list[tuple[str, list[str]]]]] = []
    target: list[str] = []
    i, negate = 0, False
    while i < len(rest):
        word = rest[i]
        if word == "!":
            negate, i = True, i + 1
            continue
        prefix = "! " if negate else ""
        negate = False
        if word in BASIC:
            value = rest[i + 1]
            basics[word] = prefix + (_address(value) if word in ("-s", "-d") else value)
            i += 2
        elif word == "-m":
            modules.append((rest[i + 1], []))
            i += 2
        elif word == "-j":
            target, i = rest[i + 1 :], len(rest)
        else:
            values = []
            i += 1
            while i < len(rest) and not rest[i].startswith("-") and rest[i] != "!":
                values.append(rest[i])
                i += 1
            modules[-1][1].append((prefix + word, values))
    parts = ["-A", chain]
    for key in BASIC:
        if key in basics:
            value = basics[key]
            parts += ["!", key, value[2:]] if value.startswith("! ") else [key, value]
    for name, options in modules:
        parts += ["-m", name]
        present = dict((option, values) for option, values in options)
        for option, default in DEFAULTS.get(name, {}).items():
            present.setdefault(option, [] if default is None else [default])
        ordered = list(present.items())
        if name == "recent":
            ordered.sort(key=lambda item: RECENT_ORDER.index(item[0].lstrip("! ")))
        for option, values in ordered:
            if name == "statistic" and option == "--probability":
                values = [f"{float(values[0]):.11f}"]
            parts += [*option.split(" "), *values]
    if target[:2] == ["MARK", "--or-mark"]:
        target = ["MARK", "--set-xmark", f"{target[2]}/{target[2]}"]
    elif target[:2] == ["MARK", "--xor-mark"]:
        target = ["MARK", "--set-xmark", f"{target[2]}/0x0"]
    if target[:1] == ["REJECT"] and "--reject-with" not in target:
        target = [*target, "--reject-with", "icmp-port-unreachable"]
    if target:
        parts += ["-j", *target]
    return shlex.join(parts)


def parse(dump: str) -> dict[str, Table]:
    """An iptables-restore payload or iptables-save dump, by table."""
    tables: dict[str, Table] = {}
    table = Table()
    for line in dump.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = tables.setdefault(line[1:], Table())
        elif line.startswith(":"):
            table.chains.add(line[1:].split()[0])
        elif line.startswith("-X "):
            table.deleted.add(line.split()[1])
        else:
            rule = normalise_rule(line)
            table.rules.setdefault(shlex.split(rule)[1], []).append(rule)
    return tables
