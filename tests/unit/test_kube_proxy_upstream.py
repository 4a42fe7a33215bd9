"""labkit's renderers against kube-proxy's own expected dumps, rule by rule."""

from __future__ import annotations

from iptables_rules import parse
from kube_proxy_upstream_cases import OVERALL, expected

from labkit.dataplane import kubeproxy_iptables as ipt

# kube-proxy's fake iptables: no --random-fully, nfacct counters present.
UPSTREAM_FAKE = ipt.Features(random_fully=False, nfacct=True)


def test_iptables_overall_rules_are_kube_proxys():
    ours = parse(ipt.render_full(OVERALL, features=UPSTREAM_FAKE))
    theirs = parse(expected("iptables_overall.rules"))
    assert ours.keys() == theirs.keys()
    for name, table in theirs.items():
        assert ours[name].chains == table.chains, name
        for chain, rules in table.rules.items():
            assert ours[name].rules.get(chain) == rules, (name, chain)
        assert ours[name].rules.keys() == table.rules.keys(), name


def test_iptables_payload_is_already_in_iptables_save_form():
    """What labkit writes is what iptables-save prints back (the drift digest relies on it)."""
    import shlex

    from iptables_rules import normalise_rule

    for line in ipt.render_full(OVERALL).splitlines():
        if line.startswith("-A "):
            assert normalise_rule(line) == shlex.join(shlex.split(line)), line


def test_nftables_overall_table_is_kube_proxys():
    from nft_rules import parse as parse_nft

    from labkit.dataplane import kubeproxy_nft as nft

    ours = parse_nft(nft.render_full(OVERALL))
    theirs = parse_nft(expected("nftables_overall.nft"))
    assert ours.objects == theirs.objects
    assert ours.rules == theirs.rules
