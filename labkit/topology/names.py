"""Name rules of a topology: Kubernetes' own, with labkit's shorter lengths where
a name ends up in an engine object, a hostname or a rule comment.

Kubernetes (k8s.io/apimachinery validation) has a few kinds of names:

- RFC 1123 DNS label: lower case letters, digits and '-', starting and ending
  with a letter or digit, at most 63 characters. Namespaces are these.
- RFC 1035 DNS label: the same, starting with a letter. Services are these
  (a service's name is a DNS name: `<service>.<namespace>.svc`).
- IANA service name: a container port's name, at most 15 characters, with a letter.
- Qualified name: a label key, `[prefix/]name`, the prefix a DNS subdomain.
- Label value: at most 63 letters, digits, '-', '_' and '.', or empty.

Pods, nodes and policies may be DNS subdomains in Kubernetes; here they stay
DNS labels of at most 32 characters, because labkit makes hostnames, network
namespace names and engine object names of them. Every message quotes the
pattern as it is (square brackets and all): the CLI escapes markup.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator

DNS_1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
DNS_1123_SUBDOMAIN = rf"{DNS_1123_LABEL}(\.{DNS_1123_LABEL})*"
QUALIFIED_NAME_PART = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
IANA_SVC_NAME = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"

LABKIT_NAME_MAX = 32  # lab, network, node, pod, policy, floating IP and service names
K8S_LABEL_MAX = 63
K8S_SUBDOMAIN_MAX = 253
PORT_NAME_MAX = 15  # IANA service names; service ports too, to keep rule comments short

# Kept for callers that match names themselves (the topology's own name).
NAME_PATTERN = rf"^{DNS_1123_LABEL}$"


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def dns_label_problem(value: str, max_length: int = K8S_LABEL_MAX) -> str | None:
    """Why `value` is not an RFC 1123 DNS label of at most `max_length` characters."""
    if len(value) > max_length:
        return f"{value!r} is {len(value)} characters long (at most {max_length})"
    if not _matches(DNS_1123_LABEL, value):
        return (
            f"{value!r} must be an RFC 1123 DNS label: lower case letters, digits and '-', "
            f"starting and ending with a letter or digit (pattern {DNS_1123_LABEL})"
        )
    return None


def dns_1035_label_problem(value: str, max_length: int = K8S_LABEL_MAX) -> str | None:
    """Why `value` is not an RFC 1035 DNS label (a 1123 label starting with a letter)."""
    if len(value) > max_length:
        return f"{value!r} is {len(value)} characters long (at most {max_length})"
    if not _matches(DNS_1035_LABEL, value):
        return (
            f"{value!r} must be an RFC 1035 DNS label: lower case letters, digits and '-', "
            f"starting with a letter and ending with a letter or digit (pattern {DNS_1035_LABEL})"
        )
    return None


def dns_subdomain_problem(value: str) -> str | None:
    if len(value) > K8S_SUBDOMAIN_MAX:
        return f"{value!r} is {len(value)} characters long (at most {K8S_SUBDOMAIN_MAX})"
    if not _matches(DNS_1123_SUBDOMAIN, value) or any(
        len(part) > K8S_LABEL_MAX for part in value.split(".")
    ):
        return (
            f"{value!r} must be an RFC 1123 DNS subdomain: DNS labels joined by '.' "
            f"(pattern {DNS_1123_SUBDOMAIN})"
        )
    return None


def port_name_problem(value: str) -> str | None:
    """Kubernetes' IANA_SVC_NAME: at most 15 characters, a letter, no '--'."""
    if len(value) > PORT_NAME_MAX:
        return f"{value!r} is {len(value)} characters long (at most {PORT_NAME_MAX})"
    if not _matches(IANA_SVC_NAME, value) or "--" in value or not re.search("[a-z]", value):
        return (
            f"{value!r} must be an IANA service name: lower case letters, digits and '-' "
            f"(pattern {IANA_SVC_NAME}), with at least one letter and no '--'"
        )
    return None


def label_key_problem(value: str) -> str | None:
    """A Kubernetes label key: `[prefix/]name`, prefix a DNS subdomain."""
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or dns_subdomain_problem(prefix)):
        return f"label key {value!r}: its prefix must be a DNS subdomain (pattern {DNS_1123_SUBDOMAIN})"
    if len(name) > K8S_LABEL_MAX or not _matches(QUALIFIED_NAME_PART, name):
        return (
            f"label key {value!r}: the name must be at most {K8S_LABEL_MAX} letters, digits, "
            f"'-', '_' and '.', starting and ending with a letter or digit "
            f"(pattern {QUALIFIED_NAME_PART})"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > K8S_LABEL_MAX or not _matches(QUALIFIED_NAME_PART, value):
        return (
            f"label value {value!r} must be empty or at most {K8S_LABEL_MAX} letters, digits, "
            f"'-', '_' and '.', starting and ending with a letter or digit "
            f"(pattern {QUALIFIED_NAME_PART})"
        )
    return None


def _checked(problem_of: Callable[[str], str | None]) -> Callable[[str], str]:
    def check(value: str) -> str:
        problem = problem_of(value)
        if problem:
            raise ValueError(problem)
        return value

    return check


# Annotated types for the model: a wrong name fails where it stands in the file.
Name = Annotated[str, AfterValidator(_checked(lambda v: dns_label_problem(v, LABKIT_NAME_MAX)))]
NamespaceName = Annotated[str, AfterValidator(_checked(dns_label_problem))]
ServiceName = Annotated[
    str, AfterValidator(_checked(lambda v: dns_1035_label_problem(v, LABKIT_NAME_MAX)))
]
PortName = Annotated[str, AfterValidator(_checked(port_name_problem))]
ServicePortName = Annotated[
    str, AfterValidator(_checked(lambda v: dns_label_problem(v, PORT_NAME_MAX)))
]
LabelKey = Annotated[str, AfterValidator(_checked(label_key_problem))]
LabelValue = Annotated[str, AfterValidator(_checked(label_value_problem))]
Labels = dict[LabelKey, LabelValue]


def object_key_problem(value: str) -> str | None:
    """Why `value` is neither `NAME` nor `NS/NAME` (a namespace, then a Kubernetes name).

    Lenient on purpose: whether a key is a manifest's (a DNS subdomain of up to
    253) or a native one (labkit's shorter label) is checked with the object,
    in `checks/names.py`.
    """
    namespace, slash, name = value.rpartition("/")
    if slash and (problem := dns_label_problem(namespace)):
        return f"namespace of {problem}"
    return dns_subdomain_problem(name)


ObjectKey = Annotated[str, AfterValidator(_checked(object_key_problem))]
