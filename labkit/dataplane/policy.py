"""Network policy: Kubernetes NetworkPolicy semantics -> an iptables-restore payload per node.

Each node enforces the policies of its own pods, where their traffic crosses
its filter FORWARD chain: routed traffic (to and from other nodes) and bridged
traffic between pods of the node (bridge-nf-call-iptables=1 sends it there).

    FORWARD -> LABKIT-POLICY (first rule, ahead of kube-proxy's ACCEPTs)
        ESTABLISHED,RELATED            -> RETURN    (stateful: replies pass)
        -s <pod ip>  (egress-isolated)  -> LABKIT-POL-EG-<pod>
        -d <pod ip>  (ingress-isolated) -> LABKIT-POL-IN-<pod>
    LABKIT-POL-EG/IN-<pod>: one RETURN per allowed (peer, port), then REJECT.

Allowed traffic RETURNs, so that the rest of FORWARD (kube-proxy's, the
portmap plugin's) still applies; denied traffic is rejected with ICMP
"administratively prohibited", so a denied client fails at once instead of
timing out (a truth table of denied paths then runs in seconds).

Conntrack entries outlive a policy change: a flow the old rules let through
would keep matching ESTABLISHED, and so would a "new" datagram that happens to
reuse its 5-tuple. After loading its rules a node therefore deletes the
entries of its pods' flows that the new rules deny (as Calico and Cilium clean
their own state), so the new policy holds for every packet that follows.

Traffic a node sends itself to its pods goes through OUTPUT and is never
filtered: Kubernetes allows a node to reach its own pods (kubelet probes).
Traffic from other nodes (their processes, e.g. an ingress controller) is
subject to the destination pod's ingress rules like any other source.

Pure: topology and pod IPs in, text out. One module per job: selection and
allows (policy_allows), iptables rendering (policy_iptables), conntrack pruning
(policy_conntrack); this one gathers their public names.
"""

from __future__ import annotations

from labkit.dataplane.policy_allows import (  # noqa: F401  (the policy's public names)
    NAMESPACE_NAME_LABEL,
    Allow,
    PodView,
    block_networks,
    known_namespaces,
    parse_cidr,
    peer_pods,
    pod_allows,
    pod_views,
    selects,
    warnings,
)
from labkit.dataplane.policy_conntrack import (  # noqa: F401
    FlowRules,
    flow_denied,
    flow_rules,
    parse_conntrack_line,
    prune_program,
)
from labkit.dataplane.policy_iptables import (  # noqa: F401
    DENY,
    POD_CHAIN_PREFIX,
    POLICY_CHAIN,
    NodePolicy,
    allow_rule,
    node_addresses_in_pod_network,
    node_script,
    plan,
    pod_chain,
    render_node,
)
from labkit.topology.selectors import selector_matches  # noqa: F401  (tests use it from here)
