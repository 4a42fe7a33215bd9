"""VRRP in front of the ingress: keepalived on both edge nodes holds the
floating VIP; while the external client sends requests continuously, each
failure of the master moves the VIP to the backup. Each test measures the
failover (the client's longest time without an answer) and the failed
requests, then brings the master back and checks preempt / nopreempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from labkit import Faults, Lab, expect
from labkit.dataplane import keepalived
from labkit.load import ContinuousClient, LoadResult

pytestmark = pytest.mark.topology("ingress")  # one test also runs on ingress-haproxy

MASTER, BACKUP = "edge-1", "edge-2"  # by priority in topologies/ingress.yaml


@pytest.fixture
def vrrp_lab(lab: Lab) -> Iterator[Lab]:
    """Each test starts (and leaves the lab) with everything running and edge-1 the master."""
    lab.vrrp.wait_holder(MASTER)
    yield lab
    for node in (MASTER, BACKUP):
        if lab.runtime.is_running(lab.node(node).container):
            lab.ingress.start_proxy(node)
            lab.vrrp.start_keepalived(node)
    if not lab.topology.vrrp.preempt:  # type: ignore[union-attr]
        lab.vrrp.set(preempt=True)
    lab.vrrp.wait_holder(MASTER)


def fail_over(
    lab: Lab, break_master: Callable[[], None], measure: Callable[..., float], what: str
) -> LoadResult:
    """Break the master under continuous load; the VIP must move and service come back."""
    vip = lab.topology.vrrp.vip  # type: ignore[union-attr]
    with ContinuousClient(
        lab.node("client"), vip, host="web.example", timeout=0.3, duration=60
    ) as client:
        client.wait_successes(10)
        started = time.time()
        break_master()
        lab.vrrp.wait_holder(BACKUP, within=20)
        moved = time.time() - started
        client.wait_successes(10)  # served again, through the backup
    result = client.result
    assert result is not None
    print(f"{what}: {result.summary()}")
    measure(f"{what}_vip_moved_s", moved, "s")
    measure(f"{what}_failover_s", result.outage_s, "s")
    measure(f"{what}_failed_requests", result.failed, "requests")
    assert result.recovered
    return result


def test_the_vip_is_held_by_the_highest_priority(vrrp_lab: Lab):
    lab = vrrp_lab
    assert lab.vrrp.holders() == [MASTER]
    assert lab.vrrp.keepalived_running(BACKUP)
    assert lab.node("client").http(lab.topology.vrrp.vip, 80, host="web.example").ok  # type: ignore[union-attr]


def test_stopping_the_masters_keepalived_moves_the_vip_and_preempt_brings_it_back(
    vrrp_lab: Lab, measure: Callable[..., float]
):
    lab = vrrp_lab
    fail_over(lab, lambda: lab.vrrp.stop_keepalived(MASTER), measure, "keepalived_stop")
    lab.vrrp.start_keepalived(MASTER)
    lab.vrrp.wait_holder(MASTER, within=20)  # preempt: the higher priority takes it back


@pytest.mark.parametrize(
    "controller",
    [
        pytest.param("nginx", id="nginx"),
        pytest.param("haproxy", marks=pytest.mark.topology("ingress-haproxy"), id="haproxy"),
    ],
)
def test_killing_the_masters_proxy_gives_the_vip_away(
    vrrp_lab: Lab, measure: Callable[..., float], controller: str
):
    lab = vrrp_lab
    assert lab.topology.ingress.controller == controller  # type: ignore[union-attr]
    fail_over(lab, lambda: lab.ingress.stop_proxy(MASTER), measure, f"{controller}_kill")
    assert lab.vrrp.keepalived_running(MASTER), "the node is alive, only its proxy died"
    lab.ingress.start_proxy(MASTER)
    lab.vrrp.wait_holder(MASTER, within=20)


def test_stopping_the_master_node_moves_the_vip(
    vrrp_lab: Lab, faults: Faults, measure: Callable[..., float]
):
    lab = vrrp_lab
    fail_over(lab, lambda: faults.stop_node(MASTER) and None, measure, "node_stop")
    faults.start_node(MASTER)  # node script and every layer's apply again
    lab.vrrp.wait_holder(MASTER, within=20)
    assert lab.node("client").http(lab.topology.vrrp.vip, 80, host="web.example").ok  # type: ignore[union-attr]


def test_nopreempt_leaves_the_vip_with_the_backup(vrrp_lab: Lab):
    lab = vrrp_lab
    lab.vrrp.set(preempt=False)
    lab.vrrp.stop_keepalived(MASTER)
    lab.vrrp.wait_holder(BACKUP)
    backups_before = backup_entries(lab, MASTER)
    lab.vrrp.start_keepalived(MASTER)

    def old_master_is_backup() -> None:
        assert backup_entries(lab, MASTER) > backups_before, "not BACKUP yet"

    expect.eventually(old_master_is_backup, within=15, what=f"{MASTER} back as BACKUP")
    # A preempting node would now take over within an advert interval or two.
    holds_for(
        3 * lab.vrrp.master_down_interval(lab.topology.vrrp.priorities[MASTER]),
        lambda: assert_holders(lab, [BACKUP]),
    )


def backup_entries(lab: Lab, node: str) -> int:
    """How often keepalived on `node` has entered BACKUP state (its log)."""
    out = lab.node(node).exec(f"grep -c 'Entering BACKUP STATE' {keepalived.LOG_FILE}", check=False)
    return int(out.stdout.strip() or 0)


def assert_holders(lab: Lab, nodes: list[str]) -> None:
    assert lab.vrrp.holders() == nodes


def holds_for(seconds: float, check: Callable[[], None], every: float = 0.5) -> None:
    """`check` passes on every try during `seconds` (the first failure is raised)."""
    Retrying(
        stop=stop_after_delay(seconds),
        wait=wait_fixed(every),
        retry=retry_if_result(lambda _: True),
        retry_error_callback=lambda _: None,
    )(check)
