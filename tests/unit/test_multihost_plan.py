"""Sandbox planning, shared-segment detection and cleanup with unreachable hosts (no engine)."""

from __future__ import annotations

from ipaddress import IPv4Network

import docker
import pytest
import yaml

from labkit.errors import UsageError
from labkit.runtime.docker import DockerRuntime
from labkit.runtime.l2 import shared_segments
from labkit.runtime.sandbox import dockerd_argv, inventory_text, pick_subnet, plan_sandbox
from labkit.runtime.swarm import HostUnreachable, SwarmRuntime
from labkit.topology.inventory import parse_inventory


def test_the_sandbox_subnet_avoids_what_is_taken():
    taken = [IPv4Network("10.250.0.0/24"), IPv4Network("10.250.1.128/25")]
    assert pick_subnet(taken) == IPv4Network("10.250.2.0/24")


def test_a_plan_names_hosts_paths_and_addresses():
    plan = plan_sandbox("t1", 3, IPv4Network("10.250.4.0/24"))
    assert [h.name for h in plan.hosts] == ["h1", "h2", "h3"]
    assert [h.address for h in plan.hosts] == ["10.250.4.11", "10.250.4.12", "10.250.4.13"]
    assert plan.hosts[0].url == "unix:///run/labkit-sandbox/t1/h1/docker.sock"
    assert plan.hosts[1].data_root == "/var/lib/labkit-sandbox/t1/h2"
    assert all(h.netns.startswith("lksb-t1-") for h in plan.hosts)


def test_a_plan_refuses_bad_names_and_counts():
    with pytest.raises(UsageError):
        plan_sandbox("Bad_Name", 2, IPv4Network("10.250.4.0/24"))
    with pytest.raises(UsageError):
        plan_sandbox("ok", 0, IPv4Network("10.250.4.0/24"))


def test_dockerd_gets_its_own_roots_socket_and_no_bridge():
    host = plan_sandbox("t1", 1, IPv4Network("10.250.4.0/24")).hosts[0]
    argv = dockerd_argv(host, "/run/x/daemon.json")
    for flag, value in [
        ("--data-root", host.data_root),
        ("--exec-root", host.exec_root),
        ("--pidfile", host.pidfile),
        ("-H", host.url),
        ("--bridge", "none"),
    ]:
        assert argv[argv.index(flag) + 1] == value
    assert f"--net=/run/netns/{host.netns}" in argv


def test_the_sandbox_inventory_is_a_valid_hosts_file():
    plan = plan_sandbox("t1", 2, IPv4Network("10.250.4.0/24"))
    text = inventory_text(plan)
    assert parse_inventory(text).host_names == ["h1", "h2"]
    assert yaml.safe_load(text)["hosts"]["h2"]["url"].startswith("unix://")


def test_shared_segments_ignore_dockers_own_bridges():
    addresses = {
        "h1": [
            ("eth0", "10.250.0.11/24"),
            ("docker_gwbridge", "172.18.0.1/16"),
            ("lo", "127.0.0.1/8"),
        ],
        "h2": [
            ("eth0", "10.250.0.12/24"),
            ("docker_gwbridge", "172.18.0.1/16"),
            ("lo", "127.0.0.1/8"),
        ],
    }
    assert shared_segments(addresses) == [IPv4Network("10.250.0.0/24")]
    addresses["h2"] = [("eth0", "10.9.0.12/24")]
    assert shared_segments(addresses) == []


def dead_host() -> DockerRuntime:
    # A pinned API version: the client does not talk to the engine until asked.
    return DockerRuntime(
        docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41", timeout=2)
    )


def test_cleanup_reports_unreachable_hosts_instead_of_failing():
    runtime = SwarmRuntime({"h1": dead_host(), "h2": dead_host()})
    result = runtime.cleanup("sb-x")
    assert result.removed == 0
    assert {"h1", "h2"} <= set(result.unreachable)
    with pytest.raises(HostUnreachable, match="run `down` again"):
        runtime.remove_lab("sb-x")
    assert runtime.lab_names() == set()


def test_placement_falls_back_to_the_least_loaded_host():
    runtime = SwarmRuntime({"h1": dead_host(), "h2": dead_host()}, {"a": "h1"})
    assert runtime._host_for_node("b") == "h2"
    assert runtime._host_for_node("c") == "h1"
