"""Topology models of namespaces and NetworkPolicies (Kubernetes' semantics)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from labkit.topology.names import LabelKey, Labels, LabelValue, NamespaceName
from labkit.topology.object_meta import Origin, Protocol
from labkit.topology.strict import Strict


class Namespace(Strict):
    labels: Labels = Field(
        default_factory=dict,
        description="Matched by namespace selectors (kubernetes.io/metadata.name is implied)",
    )
    isolated: bool = Field(
        default=False,
        description="Pod traffic only within the namespace, plus what policies allow",
    )


class LabelExpression(Strict):
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] = Field(default_factory=list)


class LabelSelector(Strict):
    """Kubernetes LabelSelector: both parts must match; empty matches everything."""

    match_labels: Labels = Field(default_factory=dict)
    match_expressions: list[LabelExpression] = Field(default_factory=list)


class IpBlock(Strict):
    cidr: str = Field(description="e.g. 10.244.0.0/16 (checked by the loader)")
    except_: list[str] = Field(default_factory=list, alias="except")


class PolicyPeer(Strict):
    """One `from`/`to` entry: selectors (pods of matching namespaces) or an IP block."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IpBlock | None = None


class PolicyPort(Strict):
    protocol: Protocol = "TCP"
    port: int | str | None = Field(
        default=None, description="Number or a pod port's name; none: all"
    )
    end_port: int | None = None


class PolicyIngressRule(Strict):
    from_: list[PolicyPeer] = Field(
        default_factory=list, alias="from", description="Empty: any source"
    )
    ports: list[PolicyPort] = Field(default_factory=list, description="Empty: any port")


class PolicyEgressRule(Strict):
    to: list[PolicyPeer] = Field(default_factory=list, description="Empty: any destination")
    ports: list[PolicyPort] = Field(default_factory=list, description="Empty: any port")


class NetworkPolicy(Strict):
    """Kubernetes NetworkPolicy semantics; an empty rule list denies that direction."""

    namespace: NamespaceName = "default"
    pod_selector: LabelSelector = Field(default_factory=LabelSelector)
    policy_types: list[Literal["Ingress", "Egress"]] | None = Field(
        default=None, description="Default: Ingress, plus Egress when there are egress rules"
    )
    ingress: list[PolicyIngressRule] = Field(default_factory=list)
    egress: list[PolicyEgressRule] = Field(default_factory=list)
    origin: Origin | None = None

    def types(self) -> set[str]:
        if self.policy_types is not None:
            return set(self.policy_types)
        return {"Ingress", "Egress"} if self.egress else {"Ingress"}
