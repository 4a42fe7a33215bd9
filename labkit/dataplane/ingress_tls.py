"""TLS termination at the ingress: the certificate each host is served with, and the
files that carry them to an edge node. Pure.

As ingress-nginx does it: a host named by a `tls` entry with a certificate (a
kubernetes.io/tls Secret) is served with that certificate; every other host,
and a `tls` entry without one, with the default certificate: a self-signed one
that each edge node makes once, as each ingress-nginx pod makes its "Kubernetes
Ingress Controller Fake Certificate". HTTP stays served on the HTTP port too
(no redirect to HTTPS).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from labkit.dataplane.script import write_file
from labkit.topology.model import Ingress

TLS_DIR = "/etc/labkit/ingress/tls"
DEFAULT_PEM = f"{TLS_DIR}/default.pem"
CRT_LIST = f"{TLS_DIR}/crt-list"  # haproxy's: a certificate per line, with its hosts
FAKE_SUBJECT = "/O=Acme Co/CN=Kubernetes Ingress Controller Fake Certificate"
FAKE_NAME = "ingress.local"


@dataclass(frozen=True)
class Certificate:
    """A given certificate: one PEM file with the chain and the key (both proxies take it)."""

    path: str
    hosts: tuple[str, ...]
    pem: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.pem.encode()).hexdigest()[:16]


def certificates(ingress: Ingress) -> tuple[Certificate, ...]:
    """The certificates the `tls` entries give, in their order."""
    found = []
    for index, entry in enumerate(ingress.tls):
        if entry.certificate is None or entry.key is None:
            continue  # the default certificate serves its hosts
        pem = f"{entry.certificate.strip()}\n{entry.key.strip()}\n"
        found.append(Certificate(f"{TLS_DIR}/{index}.pem", tuple(entry.hosts), pem))
    return tuple(found)


def host_matches(pattern: str, host: str) -> bool:
    """`*.example.com` matches one label in front of example.com, as in a certificate."""
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == host


def certificate_path(given: tuple[Certificate, ...], host: str | None) -> str:
    """The file `host` is served with: the first given certificate naming it, else the default."""
    if host is not None:
        for certificate in given:
            if any(host_matches(pattern, host) for pattern in certificate.hosts):
                return certificate.path
    return DEFAULT_PEM


def crt_list(given: tuple[Certificate, ...]) -> str:
    """haproxy's crt-list: each given certificate for the hosts its `tls` entry names."""
    return "".join(f"{c.path} {' '.join(c.hosts)}".rstrip() + "\n" for c in given)


def files_script(given: tuple[Certificate, ...]) -> str:
    """Put the certificate files in place: the default one made once per node, the
    given ones written every time (they may have changed)."""
    key, crt = f"{TLS_DIR}/default.key", f"{TLS_DIR}/default.crt"
    lines = [
        f"mkdir -p {TLS_DIR} && chmod 700 {TLS_DIR}",
        f"if [ ! -s {DEFAULT_PEM} ]; then",
        f"  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj '{FAKE_SUBJECT}' "
        f"-addext 'subjectAltName=DNS:{FAKE_NAME}' -keyout {key} -out {crt} 2>/dev/null",
        f"  cat {crt} {key} > {DEFAULT_PEM} && rm -f {crt} {key}",
        "fi",
    ]
    lines += [write_file(certificate.path, certificate.pem) for certificate in given]
    lines.append(write_file(CRT_LIST, crt_list(given)) if given else f": > {CRT_LIST}")
    return "\n".join(lines)


def config_comments(given: tuple[Certificate, ...]) -> list[str]:
    """Lines naming each given certificate's digest: a changed certificate changes the
    configuration, so it is deployed again."""
    return [f"# tls {certificate.path} {certificate.digest}" for certificate in given]
