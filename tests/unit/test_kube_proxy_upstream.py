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


def test_the_normaliser_models_what_a_real_iptables_save_prints():
    """labkit's payload and the kernel's iptables-save of it, recorded, compare equal."""
    from kube_proxy_upstream_cases import DATA

    ours = parse(ipt.render_full(OVERALL))
    saved = parse((DATA.parent / "iptables_save_of_overall.txt").read_text())
    for name, table in ours.items():
        assert saved[name].rules == table.rules, name
        assert table.chains <= saved[name].chains, name


def test_nftables_overall_table_is_kube_proxys():
    from nft_rules import parse as parse_nft

    from labkit.dataplane import kubeproxy_nft as nft

    ours = parse_nft(nft.render_full(OVERALL))
    theirs = parse_nft(expected("nftables_overall.nft"))
    assert ours.objects == theirs.objects
    assert ours.rules == theirs.rules
