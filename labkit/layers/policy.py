"""The network policy layer: each node enforces the policies of its own pods.

`apply` loads every node's rules; `sync` (pods added, deleted, moved,
relabelled) reloads only the nodes whose rules changed, since a policy's
peers are pod IPs that may live anywhere. `set_policies` switches the
policies (and namespaces) of a running cluster: checked like a topology file
first, so a bad policy changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from labkit.dataplane import policy as plan
from labkit.errors import Problem, TopologyError
from labkit.layers.base import BaseLayer
from labkit.layers.push import push_changed
from labkit.runtime import features
from labkit.topology.model import Namespace, NetworkPolicy, Topology
from labkit.topology.validate import check_references

if TYPE_CHECKING:
    from labkit.core.cluster import Cluster

STATE_KEY = "policy"


def _state(cluster: Cluster) -> dict[str, Any]:
    state: dict[str, Any] = cluster.state.setdefault(STATE_KEY, {"applied": {}})
    return state


def enforcing(topology: Topology) -> bool:
    return bool(topology.policies) or any(ns.isolated for ns in topology.namespaces.values())


def push(cluster: Cluster, *, force: bool) -> dict[str, float]:
    """Load each node's rules (all, or those that changed); the seconds each node took."""
    wanted = plan.plan(cluster.topology, cluster.addresses.pod_ips, cluster.addresses.pod_subnets)
    scripts = {node: plan.node_script(rules) for node, rules in wanted.items()}
    return push_changed(cluster, scripts, _state(cluster)["applied"], force=force)


def set_policies(
    cluster: Cluster,
    policies: Mapping[str, NetworkPolicy | dict[str, Any]],
    namespaces: Mapping[str, Namespace | dict[str, Any]] | None = None,
) -> dict[str, float]:
    """Replace the cluster's policies (and, if given, namespaces); nodes follow.

    Checked like a topology file: a malformed CIDR or port raises
    TopologyError (exit code 2) and nothing changes. Returns the seconds each
    reloaded node took.
    """
    PolicyLayer().check(cluster)
    document = cluster.topology.model_dump(mode="json", exclude_none=True)
    document["policies"] = {
        name: p.model_dump(mode="json", exclude_none=True) if isinstance(p, NetworkPolicy) else p
        for name, p in policies.items()
    }
    if namespaces is not None:
        document["namespaces"] = {
            name: n.model_dump(mode="json") if isinstance(n, Namespace) else n
            for name, n in namespaces.items()
        }
    try:
        candidate = Topology.model_validate(document)
    except ValidationError as exc:
        problems = [Problem(tuple(error["loc"]), error["msg"]) for error in exc.errors()]
        raise TopologyError(problems, "set_policies") from None
    problems = [
        p for p in check_references(candidate) if p.path[:1] in (("policies",), ("namespaces",))
    ]
    if problems:
        raise TopologyError(problems, "set_policies")
    cluster.topology.policies = candidate.policies
    cluster.topology.namespaces = candidate.namespaces
    seconds = push(cluster, force=False)
    cluster.save()
    return seconds


def rule_counts(cluster: Cluster) -> dict[str, int]:
    """Per cluster node, how many policy rules it holds (from the plan)."""
    wanted = plan.plan(cluster.topology, cluster.addresses.pod_ips, cluster.addresses.pod_subnets)
    return {node: rules.rules for node, rules in wanted.items()}


class PolicyLayer(BaseLayer):
    name = "network policy"

    def wanted(self, cluster: Cluster) -> bool:
        if enforcing(cluster.topology):
            return True
        # Once rules were loaded, keep syncing them (the policies may have been removed since).
        return bool(cluster.state.get(STATE_KEY, {}).get("applied"))

    def check(self, cluster: Cluster) -> None:
        features.require("iptables", "network policy")
        features.require("conntrack", "network policy (stateful rules)")
        if cluster.topology.cluster.bridged_pods:
            features.require("br_netfilter", "network policy between pods of one node")

    def apply(self, cluster: Cluster) -> None:
        push(cluster, force=True)

    def sync(self, cluster: Cluster, changed_pods: Sequence[str]) -> None:
        push(cluster, force=False)

    def describe(self, cluster: Cluster) -> dict[str, Any]:
        topology = cluster.topology
        return {
            "network_policy": {
                "policies": sorted(topology.policies),
                "isolated_namespaces": sorted(
                    n for n, ns in topology.namespaces.items() if ns.isolated
                ),
                "rules_per_node": rule_counts(cluster),
                "warnings": plan.warnings(topology),
            }
        }


class Policies:
    """Network policy of a running lab (`lab.policy`)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def set(
        self,
        policies: Mapping[str, NetworkPolicy | dict[str, Any]],
        namespaces: Mapping[str, Namespace | dict[str, Any]] | None = None,
    ) -> dict[str, float]:
        """Replace the policies (and namespaces); the seconds each reloaded node took."""
        return set_policies(self.cluster, policies, namespaces)

    def rule_counts(self) -> dict[str, int]:
        return rule_counts(self.cluster)
