"""The cluster DNS's records, as kube-dns / CoreDNS's kubernetes plugin serves them. Pure.

 - A `svc.ns.svc.cluster.local` -> the ClusterIP; for a headless service, one A
   per ready endpoint, and a per-pod name `pod.svc.ns.svc.cluster.local`
   (StatefulSet-style: labkit takes a pod's name as its hostname).
 - SRV `_port._proto.svc.ns.svc.cluster.local` for each named port: the service
   name and port, or, headless, each pod's name and target port (weights split 100).
 - CNAME `svc.ns.svc.cluster.local` -> `external_name` for ExternalName services.

Rendered for dnsmasq (as dataplane/dns.py runs it): A records in a hosts file
(re-read on SIGHUP), SRV and CNAME as `srv-host=`/`cname=` lines of a config
file (read at start only: a change there needs a restart, `needs_restart`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from labkit.dataplane.dns import DOMAIN, service_name
from labkit.topology.model import Topology
from labkit.topology.services_alloc import ServiceEndpoint, port_key


@dataclass(frozen=True, order=True)
class Record:
    name: str
    kind: str  # A | SRV | CNAME
    target: str  # an address, a name
    port: int = 0  # SRV
    weight: int = 0  # SRV


def _srv(port_name: str, protocol: str, fqdn: str) -> str:
    return f"_{port_name}._{protocol.lower()}.{fqdn}"


def service_records(
    topology: Topology,
    vips: Mapping[str, IPv4Address],
    endpoints: Mapping[str, Sequence[ServiceEndpoint]],
) -> list[Record]:
    """Every record of the cluster's services (ready endpoints only), sorted."""
    records: list[Record] = []
    for name, service in topology.services.items():
        fqdn = service_name(name, service.namespace)
        if service.type == "ExternalName":
            if service.external_name:
                records.append(Record(fqdn, "CNAME", service.external_name.rstrip(".")))
            continue
        ready = [e for e in endpoints.get(name, ()) if e.ready]
        if not service.headless:
            records.append(Record(fqdn, "A", str(vips[name])))
            records += [
                Record(_srv(p.name, p.protocol, fqdn), "SRV", fqdn, p.port, 100)
                for p in service.ports
                if p.name
            ]
            continue
        for endpoint in ready:
            records += [
                Record(fqdn, "A", str(endpoint.ip)),
                Record(f"{endpoint.pod}.{fqdn}", "A", str(endpoint.ip)),
            ]
        for port in service.ports:
            if not port.name:
                continue
            serving = [e for e in ready if port_key(port) in e.ports]
            weight = 100 // len(serving) if serving else 0
            records += [
                Record(
                    _srv(port.name, port.protocol, fqdn),
                    "SRV",
                    f"{e.pod}.{fqdn}",
                    e.ports[port_key(port)],
                    weight,
                )
                for e in serving
            ]
    return sorted(set(records))


def hosts_file(records: Sequence[Record]) -> str:
    """The A records, `address name` (dnsmasq answers every line of a name)."""
    return "".join(f"{r.target} {r.name}\n" for r in records if r.kind == "A")


def records_conf(records: Sequence[Record]) -> str:
    """SRV and CNAME records as dnsmasq options (a `conf-file=` of the DNS config)."""
    lines = [f"# labkit cluster DNS: SRV and CNAME records under {DOMAIN}"]
    for r in records:
        if r.kind == "SRV":
            lines.append(f"srv-host={r.name},{r.target},{r.port},0,{r.weight}")
        elif r.kind == "CNAME":
            lines.append(f"cname={r.name},{r.target}")
    return "\n".join(lines) + "\n"


def needs_restart(old: Sequence[Record], new: Sequence[Record]) -> bool:
    """dnsmasq re-reads hosts files on SIGHUP, not its options: SRV/CNAME changes restart it."""
    return records_conf(old) != records_conf(new)
