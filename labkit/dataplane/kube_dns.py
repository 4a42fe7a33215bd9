"""The cluster DNS as a cluster runs it: kube-dns pods behind the DNS Service. Pure.

`with_cluster_dns` adds to a topology what a cluster's addons would: two
pods `kube-dns-1`/`kube-dns-2` in `kube-system` (label `k8s-app: kube-dns`,
spread over the cluster nodes) running dnsmasq, and the Service `kube-dns`
at the DNS ClusterIP (the 10th service address) with ports `dns` (UDP 53)
and `dns-tcp` (TCP 53). The Service is programmed by the proxy like any
other, so DNS is Service traffic: a policy can allow or deny it, and losing
one pod leaves the other serving.

A DNS pod's container waits for its config, then runs dnsmasq in the
foreground, and starts it again when it exits (a restart picks up changed
SRV/CNAME records; A records are re-read on SIGHUP). The records
(dataplane/dns_records.py) are files on the node, shared by its DNS pods.
"""

from __future__ import annotations

from labkit.dataplane.dns import DOMAIN
from labkit.dataplane.dns_records import Record, hosts_file, records_conf
from labkit.dataplane.script import q, write_file
from labkit.topology.model import Pod, PodPort, Service, ServicePort, Topology
from labkit.topology.services_alloc import DNS_NAMESPACE, DNS_SERVICE, dns_vip

NAMESPACE = DNS_NAMESPACE
SERVICE = DNS_SERVICE
LABELS = {"k8s-app": "kube-dns"}
REPLICAS = 2
CONFIG_DIR = "/etc/labkit/kube-dns"
CONF_PATH = f"{CONFIG_DIR}/dnsmasq.conf"
HOSTS_PATH = f"{CONFIG_DIR}/hosts"
RECORDS_PATH = f"{CONFIG_DIR}/records.conf"
PID_GLOB = "/run/labkit-kube-dns-*.pid"
LOG_PATH = "/var/log/labkit/kube-dns.log"

# The container: dnsmasq in the foreground, started again when it exits (or
# once its config is written: waiting costs a `sleep` process per 50 ms).
POD_COMMAND = (
    f"while :; do [ -f {CONF_PATH} ] && dnsmasq -k --conf-file={CONF_PATH} "
    "--pid-file=/run/labkit-kube-dns-$POD_NAME.pid; sleep 0.05; done"
)


def pod_names() -> list[str]:
    return [f"{SERVICE}-{i}" for i in range(1, REPLICAS + 1)]


def wanted(topology: Topology) -> bool:
    """DNS when the cluster asks for it, has services, and has nodes to run pods on."""
    return topology.cluster.dns and bool(topology.services) and bool(_members(topology))


def present(topology: Topology) -> bool:
    service = topology.services.get(SERVICE)
    return service is not None and service.namespace == NAMESPACE


def _members(topology: Topology) -> list[str]:
    return [name for name, node in topology.nodes.items() if node.is_member]


def with_cluster_dns(topology: Topology) -> Topology:
    """The topology plus the kube-dns pods and Service (a copy; unchanged when not wanted)."""
    if not wanted(topology) or present(topology):
        return topology
    members = _members(topology)
    result = topology.model_copy(deep=True)
    ports = [PodPort(name="dns", port=53, protocol="UDP"), PodPort(name="dns-tcp", port=53)]
    for index, name in enumerate(pod_names()):
        node = members[index % len(members)]  # a replica per node, as a spread constraint does
        pod = Pod(
            node=node, namespace=NAMESPACE, labels=dict(LABELS), run=[POD_COMMAND], ports=ports
        )
        result.pods[name] = pod
    result.services[SERVICE] = Service(
        namespace=NAMESPACE,
        selector=dict(LABELS),
        vip=dns_vip(topology.cluster),
        ports=[
            ServicePort(name="dns", protocol="UDP", port=53, target_port=53),
            ServicePort(name="dns-tcp", protocol="TCP", port=53, target_port=53),
        ],
    )
    return result


def dnsmasq_conf() -> str:
    return (
        "\n".join(
            [
                "# labkit cluster DNS (kube-dns' role), shared by this node's DNS pods",
                "no-resolv",
                "no-hosts",
                f"addn-hosts={HOSTS_PATH}",
                f"conf-file={RECORDS_PATH}",
                f"local=/{DOMAIN}/",  # never forwarded: unknown names are NXDOMAIN
                "domain-needed",
                "local-ttl=5",
                "user=root",
                f"log-facility={LOG_PATH}",
            ]
        )
        + "\n"
    )


def records_update_lines(records: list[Record]) -> list[str]:
    """Write the records; HUP the node's DNS pods (A records) or restart them (SRV/CNAME
    changed). The first time, the config is written last: the DNS pods wait for it and
    then start with every record, nothing to signal."""
    new = f"{RECORDS_PATH}.new"
    return [
        write_file(HOSTS_PATH, hosts_file(records)),
        write_file(new, records_conf(records)),
        f"if [ ! -e {q(RECORDS_PATH)} ]; then mv {q(new)} {q(RECORDS_PATH)}; sig=; "
        f"elif cmp -s {q(new)} {q(RECORDS_PATH)}; then rm -f {q(new)}; sig=HUP; "
        f"else mv {q(new)} {q(RECORDS_PATH)}; sig=TERM; fi",
        # in one step: a DNS pod starts dnsmasq as soon as the file is there
        write_file(f"{CONF_PATH}.new", dnsmasq_conf()),
        f"mv {q(CONF_PATH + '.new')} {q(CONF_PATH)}",
        f'[ -z "$sig" ] || for f in {PID_GLOB}; do [ -f "$f" ] && kill -$sig $(cat "$f") '
        "2>/dev/null; done; true",
    ]
