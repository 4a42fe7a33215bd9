"""`apply` and `delete` of manifests: the pure diff, and a lab against the fake runtime."""

from __future__ import annotations

import io

import pytest

from labkit import Lab, parse_topology
from labkit.errors import TopologyError
from labkit.runtime.fake import FakeRuntime
from labkit.topology.kube.apply_plan import (
    applied_documents,
    deleted_documents,
    native_base,
    plan_apply,
)
from labkit.topology.kube.documents import parse_documents
from labkit.topology.kube.manifests import add_manifests, merge_documents

INFRA = """\
name: kw
networks:
  underlay: {subnet: 10.211.0.0/24}
nodes:
  node-1: {roles: [edge]}
  node-2: {labels: {disk: ssd}}
pods:
  native: {node: node-1}
"""


def deployment(replicas: int, image: str = "nginx", labels: str = "app: web") -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{{labels}}}}}
    spec:
      containers:
      - {{name: web, image: {image}, ports: [{{containerPort: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress]}
"""


def docs(text: str, source: str = "f.yaml"):
    problems: list = []
    found = parse_documents(text, source, problems)
    assert not problems
    return found


def merged(text: str):
    return merge_documents(docs(text), parse_topology(INFRA)).topology


def test_apply_replaces_by_kind_namespace_name_and_says_what_it_did():
    stored = docs(deployment(2))
    after, outcome = applied_documents(stored, docs(deployment(4) + "---\n" + POLICY))
    assert [d.subject for d in after] == [
        "Deployment/shop/web",
        "Service/shop/web",
        "NetworkPolicy/shop/deny",
    ]
    assert outcome.lines == [
        "Deployment/shop/web configured",
        "Service/shop/web unchanged",
        "NetworkPolicy/shop/deny created",
    ]


def test_delete_drops_what_the_files_name_whatever_they_say():
    stored = docs(deployment(2) + "---\n" + POLICY)
    after, outcome = deleted_documents(stored, docs(POLICY.replace("Ingress]", "Egress]")))
    assert [d.subject for d in after] == ["Deployment/shop/web", "Service/shop/web"]
    assert outcome.lines == ["NetworkPolicy/shop/deny deleted"]
    _, missing = deleted_documents(after, docs(POLICY))
    assert missing.lines == ["NetworkPolicy/shop/deny not found"]


def test_scaling_adds_and_removes_pods_and_keeps_the_others():
    two, four, one = merged(deployment(2)), merged(deployment(4)), merged(deployment(1))
    up = plan_apply(two, four)
    assert set(two.pods) < set(four.pods)
    assert sorted(up.pods_new) == sorted(set(four.pods) - set(two.pods))
    assert up.pods_gone == [] and up.services_gone == [] and not up.policies_changed
    down = plan_apply(four, one)
    assert sorted(down.pods_gone) == sorted(set(four.pods) - set(one.pods)) and not down.pods_new
    assert set(one.pods) <= set(two.pods)  # the same first replica, on the same node


def test_a_changed_template_replaces_the_pods_labels_only_relabel():
    before = merged(deployment(2))
    replaced = plan_apply(before, merged(deployment(2, image="httpd")))
    # The hash in the name follows the template: new names, old ones gone.
    assert len(replaced.pods_new) == 2 and len(replaced.pods_gone) == 2
    relabelled = before.model_copy(deep=True)
    key = next(k for k in relabelled.pods if k.startswith("shop/"))
    relabelled.pods[key].labels = {"app": "web", "tier": "x"}
    plan = plan_apply(before, relabelled)
    assert plan.pods_relabelled == [key] and not plan.pods_new and not plan.pods_gone


def test_policies_and_services_changes_are_seen():
    before = merged(deployment(2))
    after = merged(deployment(2) + "---\n" + POLICY)
    plan = plan_apply(before, after)
    assert plan.policies_changed and not plan.pods_new and not plan.services_new
    other = merged(deployment(2).replace("port: 80,", "port: 81,"))
    assert plan_apply(before, other).services_gone == ["shop/web"]
    assert plan_apply(before, other).services_new == ["shop/web"]
    assert plan_apply(before, before).empty


def test_the_native_base_keeps_native_objects_added_since():
    snapshot = parse_topology(INFRA)
    current = merged(deployment(2))
    current.pods["late"] = current.pods["native"].model_copy()
    base = native_base(snapshot, current)
    assert set(base.pods) == {"native", "late"}


def test_add_manifests_stacks_on_a_topology_that_has_some():
    first = add_manifests(parse_topology(INFRA), ["-"], stdin=io.StringIO(deployment(2)))
    second = add_manifests(first.topology, ["-"], stdin=io.StringIO(POLICY))
    assert "shop/deny" in second.topology.policies
    assert second.base is not None and set(second.base.pods) == {"native"}
    assert len(second.documents) == 3


# -- on a lab (the fake runtime) ---------------------------------------------------------


pytestmark = pytest.mark.usefixtures("host_has_everything")  # tests/unit/conftest.py


@pytest.fixture
def lab():
    runtime = FakeRuntime()
    runtime.responses["dig +short"] = "10.96.0.10"  # the DNS pods answer for kube-dns
    topology = add_manifests(
        parse_topology(INFRA), ["-"], stdin=io.StringIO(deployment(2))
    ).topology
    lab = Lab.up(topology, runtime=runtime)
    runtime.reset()
    return lab, runtime


def test_lab_apply_scales_a_deployment_on_its_nodes(lab):
    lab, runtime = lab
    before = set(lab.topology.pods)
    result = lab.apply([{**_deployment_object(4)}])
    assert result.lines == ["Deployment/shop/web configured"]
    new = set(lab.topology.pods) - before
    assert len(new) == 2
    for key in new:
        netns = key.replace("/", "_")
        assert any(f"\nnetns add {netns}\n" in command for _, command in runtime.execs)
    assert set(Lab.attach("kw", runtime).topology.pods) == set(lab.topology.pods)
    lab.apply([_deployment_object(1)])
    assert len([k for k in lab.topology.pods if k.startswith("shop/")]) == 1


def test_lab_apply_of_an_invalid_file_changes_nothing(lab):
    lab, runtime = lab
    before = lab.topology.model_dump()
    bad = _deployment_object(4)
    bad["spec"]["replicas"] = "many"
    with pytest.raises(TopologyError) as caught:
        lab.apply([bad])
    assert caught.value.exit_code == 2
    assert lab.topology.model_dump() == before and runtime.execs == []


def test_lab_delete_removes_the_pods_of_a_deployment(lab):
    lab, _ = lab
    lab.delete([_deployment_object(2)])
    workloads = {name for name, pod in lab.topology.pods.items() if pod.namespace != "kube-system"}
    assert workloads == {"native"}  # the cluster DNS's pods stay
    assert "shop/web" in lab.topology.services  # not named: stays


def _deployment_object(replicas: int) -> dict:
    import yaml

    return next(yaml.safe_load_all(deployment(replicas)))


# -- reading fast: LibYAML data, lines only when asked ------------------------------------


def test_the_fast_read_gives_the_careful_reads_data_and_lines():
    from pathlib import Path

    from labkit.topology.kube.documents import _parse_carefully

    for path in sorted((Path(__file__).parent.parent / "data").rglob("*.yaml")):
        text = path.read_text()
        if "&" in text or "*" in text:
            continue
        fast, careful = parse_documents(text, str(path), []), _parse_carefully(text, str(path), [])
        assert [d.data for d in fast] == [d.data for d in careful], path
        for quick, slow in zip(fast, careful, strict=True):
            assert quick.where() == slow.where(), path  # the document's own line, uncomposed
            deep = ("metadata", "name")
            assert quick.where(deep) == slow.where(deep), path


def test_a_duplicate_key_is_still_found():
    problems: list = []
    parse_documents("kind: A\nkind: B\n", "dup.yaml", problems)
    assert [str(p) for p in problems] == ["dup.yaml:2: kind: duplicate name"]
