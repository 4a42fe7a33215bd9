"""The hosts file and node placement: pure, no Docker."""

from __future__ import annotations

import pytest

from labkit.errors import TopologyError
from labkit.topology import parse_topology
from labkit.topology.inventory import (
    InventoryError,
    load_inventory,
    parse_inventory,
    place_nodes,
)

GOOD = """\
hosts:
  h1: {url: "unix:///run/docker.sock"}
  h2:
    url: tcp://192.0.2.10:2376
    tls: {ca: ca.pem, cert: cert.pem, key: key.pem}
  h3: {url: "ssh://admin@192.0.2.11"}
nodes:
  node-1: h2
"""


def message(text: str) -> str:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, source="hosts.yaml")
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_a_good_hosts_file_keeps_file_order_and_placement():
    inventory = parse_inventory(GOOD)
    assert inventory.host_names == ["h1", "h2", "h3"]
    assert inventory.hosts["h2"].tls is not None
    assert inventory.hosts["h3"].scheme == "ssh"
    assert inventory.nodes == {"node-1": "h2"}


def test_tls_paths_are_relative_to_the_hosts_file(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text(GOOD)
    tls = load_inventory(path).hosts["h2"].tls
    assert tls is not None and tls.ca == str(tmp_path / "ca.pem")


def test_plain_tcp_is_refused_naming_the_line_and_the_way_out():
    text = 'hosts:\n  h1: {url: "unix:///run/docker.sock"}\n  h2: {url: "tcp://192.0.2.10:2375"}\n'
    shown = message(text)
    assert "hosts.yaml:3:" in shown
    assert "hosts.h2" in shown
    assert "TLS".lower() in shown.lower() and "ssh://" in shown


def test_an_unknown_scheme_names_the_url_field():
    shown = message('hosts:\n  h1: {url: "http://192.0.2.10"}\n')
    assert "hosts.yaml:2:" in shown and "hosts.h1.url" in shown


def test_tls_on_a_unix_socket_is_an_error():
    shown = message(
        'hosts:\n  h1:\n    url: "unix:///run/docker.sock"\n    tls: {ca: a, cert: b, key: c}\n'
    )
    assert "tls applies to tcp:// only" in shown


def test_a_placement_on_an_unknown_host_names_the_line():
    shown = message('hosts:\n  h1: {url: "unix:///run/docker.sock"}\nnodes:\n  n1: h9\n')
    assert "hosts.yaml:4:" in shown and "unknown host 'h9'" in shown


def test_empty_hosts_and_bad_yaml_are_errors():
    assert "hosts" in message("hosts: {}\n")
    assert "not valid YAML" in message("hosts: [\n")
    assert "unknown field" in message('hosts:\n  h1: {url: "unix:///x", where: here}\n')


def test_missing_file_is_an_inventory_error(tmp_path):
    with pytest.raises(InventoryError, match="no such file"):
        load_inventory(tmp_path / "nope.yaml")


# --- placement ---------------------------------------------------------------

NODES = ["n1", "n2", "n3", "n4", "n5"]


def test_round_robin_in_file_order_without_pins():
    placed = place_nodes(NODES, ["b", "a"])
    assert placed == {"n1": "b", "n2": "a", "n3": "b", "n4": "a", "n5": "b"}


def test_pins_are_kept_and_the_rest_fill_the_least_loaded_host():
    placed = place_nodes(NODES, ["h1", "h2"], topology_pins={"n1": "h1", "n2": "h1"})
    assert placed["n1"] == placed["n2"] == "h1"
    assert [placed[n] for n in ("n3", "n4", "n5")] == ["h2", "h2", "h1"]


def test_inventory_pins_apply_too():
    assert place_nodes(["n1", "n2"], ["h1", "h2"], inventory_pins={"n1": "h2"}) == {
        "n1": "h2",
        "n2": "h1",
    }


def test_a_pin_to_an_unknown_host_is_an_error():
    with pytest.raises(TopologyError, match=r"nodes\.n1\.host: unknown host 'h9'") as caught:
        place_nodes(NODES, ["h1"], topology_pins={"n1": "h9"})
    assert caught.value.exit_code == 2


def test_disagreeing_pins_and_unknown_nodes_are_errors():
    with pytest.raises(TopologyError) as caught:
        place_nodes(
            NODES,
            ["h1", "h2"],
            topology_pins={"n1": "h1"},
            inventory_pins={"n1": "h2", "n9": "h1"},
        )
    shown = str(caught.value)
    assert "pinned to 'h1' here but to 'h2' in the hosts file" in shown
    assert "nodes.n9" in shown


def test_the_topology_accepts_a_host_pin():
    topology = parse_topology("name: t\nnodes:\n  n1: {host: h2}\n  n2: {}\n")
    assert topology.nodes["n1"].host == "h2"
    assert topology.nodes["n2"].host is None
