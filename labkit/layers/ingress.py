"""The ingress layer: a proxy on each edge node rendered from the rules and the
current endpoints, and keepalived holding the floating VIP in front of them.

A render goes to the node as a candidate file, is checked there by the
proxy's own checker (`nginx -t`, `haproxy -c`) and only then replaces the
running configuration, with a graceful reload. A refused render changes
nothing on the node: the old configuration keeps serving and the checker's
message is raised (`IngressConfigError`) and kept for `labkit status`.

What tests and benchmarks use: `vip_holders`, `wait_vip_holder`,
`set_upstream`, `set_vrrp`, `deploy`, `start_keepalived`, `stop_keepalived`,
`start_proxy`, `stop_proxy`.

`apply` is also safe on a running lab (a reload or a start per node): the
faults API runs it again after a node comes back.

State in `lab.layer_state["ingress"]`: the hash of the configuration each
edge node serves, and the last refused render's error per node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from ipaddress import IPv4Interface
from typing import TYPE_CHECKING, Any

from labkit import expect
from labkit.dataplane import ingress_haproxy, ingress_nginx, keepalived
from labkit.dataplane.ingress_routes import Controller, RoutingTable, UpstreamServer, routing_table
from labkit.dataplane.script import write_file
from labkit.errors import LabkitError, UsageError
from labkit.lab import LAYERS, parallel
from labkit.layers import services
from labkit.topology.addressing import pick_underlay_subnets
from labkit.topology.model import Ingress, Vrrp
from labkit.topology.validate import check_vrrp

if TYPE_CHECKING:
    from labkit.lab import Lab

STATE_KEY = "ingress"
CONTROLLERS = {"nginx": ingress_nginx.CONTROLLER, "haproxy": ingress_haproxy.CONTROLLER}
CHECK_FAILED = 65  # exit status of the deploy script when the checker refuses


class IngressConfigError(LabkitError):
    """The proxy's own checker refused a render; the previous configuration still serves."""


def _state(lab: Lab) -> dict[str, Any]:
    return lab.layer_state.setdefault(STATE_KEY, {})


def _ingress(lab: Lab) -> Ingress:
    if lab.topology.ingress is None:
        raise UsageError(f"lab {lab.name} has no ingress")
    return lab.topology.ingress


def _vrrp(lab: Lab) -> Vrrp:
    if lab.topology.vrrp is None:
        raise UsageError(f"lab {lab.name} has no vrrp")
    return lab.topology.vrrp


def controller(lab: Lab) -> Controller:
    return CONTROLLERS[_ingress(lab).controller]


# -- the proxy's configuration ----------------------------------------------------


def upstream_servers(lab: Lab) -> dict[tuple[str, str], list[UpstreamServer]]:
    """Per (service, port key), where the proxy sends: pod IPs or the Service VIP."""
    ingress = _ingress(lab)
    wanted = {rule.service for rule in ingress.rules}
    if ingress.default_backend is not None:
        wanted.add(ingress.default_backend.service)
    servers: dict[tuple[str, str], list[UpstreamServer]] = {}
    for service in sorted(wanted):
        if ingress.upstream == "service":
            vip = services.service_vip(lab, service)
            for port in lab.topology.services[service].ports:
                key = port.name or str(port.port)
                servers[(service, key)] = [UpstreamServer(vip, port.port)]
            continue
        for endpoint in services.endpoints(lab, service):
            for key, target in endpoint.ports.items():
                servers.setdefault((service, key), []).append(UpstreamServer(endpoint.ip, target))
    return servers


def current_table(lab: Lab) -> RoutingTable:
    return routing_table(_ingress(lab), lab.topology.services, upstream_servers(lab))


def render(lab: Lab) -> str:
    return controller(lab).render(current_table(lab))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _deploy_script(
    text: str, config_path: str, check: Callable[[str], str], running: str, reload: str, start: str
) -> str:
    """Write `text` as a candidate and check it; only if valid put it in place and reload
    (or start). One exec: the configuration travels in the script."""
    candidate = f"{config_path}.candidate"
    return "\n".join(
        [
            "set -e",  # a checker's refusal is caught by `if`, not by this
            "mkdir -p /run/labkit /var/log/labkit",  # the checker opens the pid and log files
            write_file(candidate, text),
            f"if ! out=$({check(candidate)} 2>&1); then",
            '  printf "%s\\n" "$out"',
            f"  rm -f {candidate}",
            f"  exit {CHECK_FAILED}",
            "fi",
            f"mv {candidate} {config_path}",
            _start_or_reload(running, reload, start),
        ]
    )


def _start_or_reload(running: str, reload: str | None, start: str) -> str:
    """Reload if running (no reload: leave it be), else start. Newlines, not `;`: a
    start command may end in `&`."""
    return f"if {{ {running}; }}; then\n  {reload or ':'}\nelse\n  {start}\nfi"


def deploy(lab: Lab, node: str, text: str) -> None:
    """Put `text` in place as the proxy's configuration on `node`, if its checker accepts it.

    Raises `IngressConfigError` with the checker's message when it refuses;
    then nothing changed on the node.
    """
    proxy = controller(lab)
    script = _deploy_script(
        text, proxy.config_path, proxy.check, proxy.running, proxy.reload, proxy.start
    )
    result = lab.node(node).exec(script, check=False, timeout=30)
    state = _state(lab)
    if result.exit_code == CHECK_FAILED:
        message = result.output.strip()
        state.setdefault("errors", {})[node] = message
        raise IngressConfigError(
            f"{proxy.name} on {node} refused the new configuration; the previous one keeps "
            f"serving:\n{message}"
        )
    if not result.ok:
        raise LabkitError(
            f"{proxy.name} on {node}: deploying the configuration failed:\n{result.output}"
        )
    state.setdefault("deployed", {})[node] = _digest(text)
    state.get("errors", {}).pop(node, None)


def deploy_all(lab: Lab, *, force: bool = False) -> list[str]:
    """Render once and deploy on every running edge node whose configuration differs.

    A stopped node is left out; it gets the current render when it comes back
    (`apply` runs again then). Returns the nodes deployed to.
    """
    text = render(lab)
    deployed = _state(lab).get("deployed", {})
    nodes = [
        node
        for node in _ingress(lab).nodes
        if (force or deployed.get(node) != _digest(text))
        and lab.runtime.is_running(lab.node(node).container)
    ]
    failures: list[str] = []

    def one(node: str) -> None:
        try:
            deploy(lab, node, text)
        except IngressConfigError as exc:
            failures.append(str(exc))

    parallel(one, nodes)
    if failures:
        raise IngressConfigError("\n".join(failures))
    return nodes


def start_proxy(lab: Lab, node: str) -> None:
    """Start the proxy with the configuration in place (after a crash or a node restart)."""
    proxy = controller(lab)
    lab.node(node).exec(_start_or_reload(proxy.running, None, proxy.start), timeout=30)


def stop_proxy(lab: Lab, node: str) -> None:
    """Kill every process of the proxy on `node` at once: what a crash looks like."""
    lab.node(node).exec(f"pkill -KILL -x {controller(lab).name} || true", timeout=10)


def proxy_running(lab: Lab, node: str) -> bool:
    return lab.node(node).exec(controller(lab).running, check=False).ok


def set_upstream(lab: Lab, mode: str) -> None:
    """Switch the upstream mode (`endpoints` | `service`) of a running lab."""
    ingress = _ingress(lab)
    lab.topology.ingress = Ingress.model_validate({**ingress.model_dump(), "upstream": mode})
    deploy_all(lab)
    lab.save()


# -- VRRP ------------------------------------------------------------------------------


def _interface(lab: Lab, node: str, network: str) -> str:
    address = lab.addresses.node_ip(node, network)
    out = lab.node(node).exec(f"ip -o -4 addr show to {address}/32").stdout.split()
    if len(out) < 2:
        raise LabkitError(f"node {node} has no interface with {address} (network {network})")
    return out[1]


def vrrp_config(lab: Lab, node: str, interface: str) -> str:
    vrrp = _vrrp(lab)
    subnet = lab.addresses.underlay_subnets[vrrp.network]
    spec = keepalived.VrrpNode(
        name=node,
        interface=interface,
        priority=vrrp.priorities[node],
        vip=IPv4Interface(f"{vrrp.vip}/{subnet.prefixlen}"),
        advert_interval=vrrp.advert_interval,
        preempt=vrrp.preempt,
        router_id=vrrp.router_id,
    )
    ingress = lab.topology.ingress
    check = (
        keepalived.HealthCheck(keepalived.proxy_check_command(ingress.port)) if ingress else None
    )
    return keepalived.render(spec, check)


def _install_keepalived(lab: Lab, node: str) -> None:
    """Write keepalived.conf (checked by `keepalived -t` first), then reload or start."""
    text = vrrp_config(lab, node, _interface(lab, node, _vrrp(lab).network))
    script = _deploy_script(
        text, keepalived.CONFIG_PATH, keepalived.check_command, keepalived.RUNNING,
        keepalived.reload_command(), keepalived.start_command(),
    )  # fmt: skip
    result = lab.node(node).exec(script, check=False, timeout=30)
    if result.exit_code == CHECK_FAILED:
        raise IngressConfigError(
            f"keepalived on {node} refused its configuration:\n{result.output}"
        )
    if not result.ok:
        raise LabkitError(f"keepalived on {node} did not start:\n{result.output}")


def start_keepalived(lab: Lab, node: str) -> None:
    lab.node(node).exec(
        _start_or_reload(keepalived.RUNNING, None, keepalived.start_command()), timeout=10
    )


def keepalived_running(lab: Lab, node: str) -> bool:
    return lab.node(node).exec(keepalived.RUNNING, check=False).ok


def stop_keepalived(lab: Lab, node: str) -> None:
    """Stop keepalived on `node` (SIGTERM: a master hands the VIP over on its way out)."""
    lab.node(node).exec(keepalived.stop_command(), timeout=10)

    def stopped() -> None:
        assert not keepalived_running(lab, node), "keepalived still runs"

    expect.eventually(stopped, within=10, what=f"keepalived on {node} to exit")


def vip_holders(lab: Lab) -> list[str]:
    """The nodes that have the VIP on an interface now (one, unless VRRP is split)."""
    vrrp = _vrrp(lab)

    def holds(node: str) -> bool:
        result = lab.node(node).exec(
            f"ip -o -4 addr show to {vrrp.vip}/32", check=False, timeout=10
        )
        return result.ok and bool(result.stdout.strip())

    def alive(node: str) -> bool:
        return lab.runtime.is_running(lab.node(node).container)

    nodes = [node for node in vrrp.priorities if alive(node)]
    return [node for node, held in zip(nodes, parallel(holds, nodes), strict=True) if held]


def wait_vip_holder(lab: Lab, node: str | None = None, within: float = 20.0) -> str:
    """Wait until exactly one node holds the VIP (`node`, if given); that node."""

    def check() -> str:
        holders = vip_holders(lab)
        if len(holders) != 1 or (node is not None and holders[0] != node):
            raise AssertionError(f"VIP held by {holders or 'nobody'}")
        return holders[0]

    wanted = f"node {node}" if node else "one node"
    return expect.eventually(check, within=within, every=0.2, what=f"the VIP held by {wanted}")


def set_vrrp(lab: Lab, **changes: Any) -> None:
    """Change the VRRP settings of a running lab (advert_interval, preempt, priorities).

    Checked as the topology file would be; keepalived reloads its configuration.
    """
    vrrp = Vrrp.model_validate({**_vrrp(lab).model_dump(), **changes})
    problems = list(check_vrrp(lab.topology.model_copy(update={"vrrp": vrrp})))
    if problems:
        raise UsageError("; ".join(str(problem) for problem in problems))
    lab.topology.vrrp = vrrp
    parallel(lambda node: _install_keepalived(lab, node), list(vrrp.priorities))
    lab.save()


def master_down_interval(vrrp: Vrrp, priority: int) -> float:
    """How long a backup waits without adverts before it takes over (RFC 5798)."""
    skew = (256 - priority) * vrrp.advert_interval / 256
    return 3 * vrrp.advert_interval + skew


# -- the layer --------------------------------------------------------------------------


def check_vip_subnet(lab: Lab) -> None:
    """With an unpinned subnet, the VIP can only be checked against the one `up` will pick."""
    vrrp = lab.topology.vrrp
    if vrrp is None or lab.topology.networks[vrrp.network].subnet is not None:
        return  # a pinned subnet was checked with the topology
    picked = pick_underlay_subnets(lab.topology, lab.runtime.taken_subnets())[vrrp.network]
    if vrrp.vip not in picked:
        raise UsageError(
            f"vrrp.vip {vrrp.vip} is outside network {vrrp.network!r}, which would get "
            f"{picked} on this host; pin networks.{vrrp.network}.subnet to a subnet holding "
            "the VIP"
        )


class IngressLayer:
    name = "ingress"

    def wanted(self, lab: Lab) -> bool:
        return lab.topology.ingress is not None or lab.topology.vrrp is not None

    def check(self, lab: Lab) -> None:
        check_vip_subnet(lab)

    def apply(self, lab: Lab) -> None:
        if lab.topology.ingress is not None:
            deploy_all(lab, force=True)
        if lab.topology.vrrp is not None:
            parallel(
                lambda node: _install_keepalived(lab, node), list(lab.topology.vrrp.priorities)
            )
            vrrp = lab.topology.vrrp
            top = max(vrrp.priorities.values())
            wait_vip_holder(lab, within=master_down_interval(vrrp, top) + 15)

    def sync(self, lab: Lab, changed_pods: Sequence[str]) -> None:
        if lab.topology.ingress is not None and changed_pods:
            deploy_all(lab)

    def describe(self, lab: Lab) -> dict[str, Any]:
        document: dict[str, Any] = {}
        ingress, vrrp = lab.topology.ingress, lab.topology.vrrp
        if ingress is not None:
            document["ingress"] = {
                "controller": ingress.controller,
                "upstream": ingress.upstream,
                "nodes": list(ingress.nodes),
                "port": ingress.port,
                "config": controller(lab).config_path,
                "refused": dict(_state(lab).get("errors", {})),
            }
        if vrrp is not None:
            document["vrrp"] = {
                "vip": str(vrrp.vip),
                "network": vrrp.network,
                "priorities": dict(vrrp.priorities),
                "advert_interval": vrrp.advert_interval,
                "preempt": vrrp.preempt,
                "holders": vip_holders(lab),
            }
            if ingress is not None:
                document["ingress"]["url"] = f"http://{vrrp.vip}:{ingress.port}/"
        return document


LAYERS.append(IngressLayer())
