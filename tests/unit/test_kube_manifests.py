"""Kubernetes manifests -> labkit's model: reading, schema errors, conversion, placement."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from labkit.errors import TopologyError, UsageError
from labkit.topology import parse_topology
from labkit.topology.kube import load_manifests, resolve, slug
from labkit.topology.kube.podnames import ALPHABET

DATA = Path(__file__).parent.parent / "data" / "kube"
INFRA = """\
name: t
nodes:
  node-1: {roles: [edge]}
  node-2: {labels: {disk: ssd}}
  node-3: {}
"""


def infra(text: str = INFRA):
    return parse_topology(text)


def load(text: str, topology=None, **kwargs):
    return load_manifests(["-"], topology or infra(), stdin=io.StringIO(text), **kwargs)


def refused(text: str, topology=None) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        load(text, topology)
    assert caught.value.exit_code == 2
    return [str(problem) for problem in caught.value.problems]


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx
        ports: [{name: http, containerPort: 8080}, {containerPort: 53, protocol: UDP}]
"""


def test_a_deployment_becomes_pods_named_and_spread_as_kubernetes_would():
    pods = load(DEPLOYMENT).topology.pods
    assert len(pods) == 3
    for key, pod in pods.items():
        namespace, _, name = key.partition("/")
        assert namespace == "shop" and pod.namespace == "shop"
        deployment, template_hash, suffix = name.split("-")
        assert deployment == "web" and len(suffix) == 5
        assert set(template_hash + suffix) <= set(ALPHABET)
        assert pod.labels == {"app": "web"}
        assert pod.origin is not None and pod.origin.owner == "Deployment/web"
        assert pod.run == [
            "echo-server --http-port 0 --tcp-port 0 --udp-port 53",
            "echo-server --http-port 8080 --tcp-port 0 --udp-port 0",
        ]
    assert sorted(pod.node for pod in pods.values()) == ["node-1", "node-2", "node-3"]
    assert list(load(DEPLOYMENT).topology.pods) == list(pods)  # stable across runs


def test_a_changed_template_changes_the_hash_not_the_replica_count():
    before = {k.split("-")[1] for k in load(DEPLOYMENT).topology.pods}
    after = {k.split("-")[1] for k in load(DEPLOYMENT.replace("nginx", "httpd")).topology.pods}
    assert len(before) == len(after) == 1 and before != after


def test_statefulset_daemonset_and_node_selection():
    text = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      nodeSelector: {disk: ssd}
      containers: [{name: db, image: postgres, ports: [{containerPort: 5432}]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kube-system}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      hostNetwork: true
      containers: [{name: agent, image: agent, ports: [{containerPort: 9100}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: pinned}
spec:
  nodeName: node-3
  containers: [{name: c, image: busybox}]
"""
    pods = load(text).topology.pods
    assert pods["db-0"].node == pods["db-1"].node == "node-2"
    agents = {key: pod for key, pod in pods.items() if key.startswith("kube-system/agent-")}
    assert sorted(pod.node for pod in agents.values()) == ["node-1", "node-2", "node-3"]
    assert all(pod.host_network for pod in agents.values())
    assert pods["pinned"].node == "node-3" and pods["pinned"].run == []


def test_a_node_selector_no_node_satisfies():
    text = DEPLOYMENT.replace(
        "    spec:\n      containers:",
        "    spec:\n      nodeSelector: {gpu: 'yes'}\n      containers:",
    )
    messages = refused(text)
    assert len(messages) == 3  # one per replica, as the scheduler reports each pod
    assert messages[0].startswith(
        "<stdin>:10: Deployment/shop/web: spec.template.spec.nodeSelector:"
    )
    assert "no pod-running node has the labels" in messages[0]


def test_a_pod_on_an_unknown_node():
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  nodeName: node-9\n  containers: [{name: c, image: i}]\n"
    (message,) = refused(text)
    assert message.startswith("<stdin>:5: Pod/default/p: spec.nodeName: unknown node 'node-9'")


def test_the_example_app_service_ingress_readiness_and_ignored_kinds():
    report = load_manifests([DATA], infra())
    topology = report.topology
    assert topology.namespaces["shop"].labels == {"team": "shop"}
    service = topology.services["shop/frontend"]
    assert service.namespace == "shop" and service.ports[0].target_port == "http"
    assert topology.ingress is not None and topology.ingress.nodes == ["node-1"]
    (rule,) = topology.ingress.rules
    assert (rule.host, rule.service, rule.port) == ("shop.example", "shop/frontend", "http")
    for pod in topology.pods.values():
        (probe,) = pod.readiness
        assert probe.kind == "http" and probe.path == "/healthz" and probe.period == 2
        assert pod.run == ["echo-server --http-port 8080 --tcp-port 0 --udp-port 0"]
    assert report.ignored_line() == "ignored (no network meaning): ConfigMap/shop/settings"


def test_service_kinds_and_a_service_selecting_nothing():
    text = """\
apiVersion: v1
kind: Service
metadata: {name: lonely}
spec:
  type: NodePort
  selector: {app: nobody}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
"""
    report = load(text)
    service = report.topology.services["lonely"]
    assert (service.type, service.session_affinity, service.affinity_timeout) == (
        "NodePort",
        "ClientIP",
        60,
    )
    assert service.ports[0].node_port == 30080
    (warning,) = [str(w) for w in report.warnings]
    assert warning.startswith("<stdin>:6: Service/default/lonely: spec.selector: selects no pod")


def test_ingress_class_picks_the_controller():
    text = """\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: public, annotations: {ingressclass.kubernetes.io/is-default-class: "true"}}
spec: {controller: haproxy.org/ingress-controller/haproxy}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  defaultBackend: {service: {name: web, port: {number: 80}}}
"""
    ingress = load(text).topology.ingress
    assert ingress is not None and ingress.controller == "haproxy"
    assert ingress.default_backend is not None and ingress.default_backend.service == "web"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # a field the schema does not have
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 80}]\n  selectr: {}\n",
            "<stdin>:6: Service/default/s: spec.selectr: unknown field",
        ),
        (  # a wrong type, deep down
            DEPLOYMENT.replace("replicas: 3", "replicas: three"),
            "<stdin>:5: Deployment/shop/web: spec.replicas: 'three' is not of type 'integer', 'null'",
        ),
        (  # a required field missing
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{image: i}]}\n",
            "<stdin>:4: Pod/default/p: spec.containers.0: 'name' is a required property",
        ),
        (  # a kind labkit does not know
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
            "<stdin>:1: Widget/default/w: apiVersion: labkit does not know kind 'Widget'",
        ),
        (  # a known kind in the wrong apiVersion
            "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: i}\n",
            "<stdin>:1: Ingress/default/i: apiVersion: Ingress is known as apiVersion networking.k8s.io/v1",
        ),
        (  # a name the API server would refuse
            "apiVersion: v1\nkind: Service\nmetadata: {name: Web_1}\nspec: {ports: [{port: 80}]}\n",
            "<stdin>:3: Service/default/Web_1: metadata.name: name 'Web_1' must be an RFC 1035 label",
        ),
        (  # a selector that does not match the template
            DEPLOYMENT.replace("matchLabels: {app: web}", "matchLabels: {app: api}"),
            "<stdin>:6: Deployment/shop/web: spec.selector: selector does not match template labels",
        ),
        (  # SCTP
            DEPLOYMENT.replace("protocol: UDP", "protocol: SCTP"),
            "<stdin>:13: Deployment/shop/web: spec.template.spec.containers.0.ports.1.protocol: labkit serves TCP and UDP",
        ),
    ],
)
def test_schema_and_model_errors_name_file_line_document_and_field(text, expected):
    messages = refused(text)
    assert any(message.startswith(expected) for message in messages), messages


def test_the_second_document_of_a_file_is_named():
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {ports: [{port: 0}]}\n"
    (message,) = refused(text)
    assert message.startswith("<stdin>:8: Service/a/s: spec.ports.0.port")


def test_a_policy_port_name_no_selected_pod_declares():
    text = (
        DEPLOYMENT
        + """\
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: htp}]}]
"""
    )
    (message,) = refused(text)
    assert "NetworkPolicy/shop/p: spec.ingress.0.ports.0.port: no TCP port named 'htp'" in message


def test_names_colliding_with_the_topology_files():
    topology = infra(INFRA + "pods:\n  web: {node: node-1, namespace: shop}\n")
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec: {containers: [{name: c, image: i}]}\n"
    (message,) = refused(text, topology)
    assert "Pod/shop/web: metadata.name: pod shop/web is in the topology file already" in message


def test_an_unsupported_kube_version_is_a_usage_error():
    with pytest.raises(UsageError, match=r"no schemas for Kubernetes 1\.2"):
        load(DEPLOYMENT, kube_version="1.2")
    assert len(load(DEPLOYMENT, kube_version="1.30").topology.pods) == 3


def test_manifests_in_the_topology_file(tmp_path):
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "web.yaml").write_text(DEPLOYMENT)
    (tmp_path / "k8s" / "notes.txt").write_text("not a manifest")
    topology_file = tmp_path / "t.yaml"
    topology_file.write_text(INFRA + "manifests: [k8s]\npods:\n  native: {node: node-1}\n")
    topology = parse_topology(topology_file.read_text(), source=str(topology_file))
    assert "native" in topology.pods and len(topology.pods) == 4


def test_resolve_and_slug():
    keys = ["web", "shop/web", "blog/web", "shop/api"]
    assert resolve("web", keys) == "web"  # default wins
    assert resolve("api", keys) == "shop/api"
    assert resolve("shop/web", keys) == "shop/web"
    assert resolve("default/web", keys) == "web"
    with pytest.raises(UsageError, match="ambiguous: say blog/web or shop/web"):
        resolve("web", ["shop/web", "blog/web"], "pod")
    with pytest.raises(UsageError, match="no pod 'nope'"):
        resolve("nope", keys, "pod")
    assert slug("shop/web") == "shop_web"
    long = slug("a-very-long-namespace/" + "x" * 60)
    assert len(long) <= 32 and long != slug("a-very-long-namespace/" + "x" * 61)


def test_ingress_nginx_tcp_and_udp_services_configmaps_become_l4_entries():
    text = """\
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  selector: {app: echo}
  ports: [{name: tcp, port: 9000}, {name: udp, port: 9000, protocol: UDP}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: tcp-services, namespace: ingress-nginx}
data: {"9000": "shop/echo:9000"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: udp-services, namespace: ingress-nginx}
data: {"5353": "shop/echo:udp"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
"""
    report = load(text)
    ingress = report.topology.ingress
    assert ingress is not None and ingress.nodes  # the edge nodes
    assert ingress.tcp == {9000: "shop/echo:9000"} and ingress.udp == {5353: "shop/echo:udp"}
    assert report.ignored == ["ConfigMap/default/settings"]


JOBS = """\
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: shop}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: migrate, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: r, image: report}]
"""


def test_jobs_and_cronjobs_are_accepted_and_listed_as_ignored_with_why():
    report = load(JOBS)
    assert report.topology.pods == {}  # run-to-completion pods: none is made
    assert report.ignored_line() == (
        "ignored (run-to-completion pods are not emulated): Job/shop/migrate, "
        "CronJob/default/report; ignored (no network meaning): ConfigMap/default/settings"
    )


def test_a_job_is_still_checked_against_its_schema():
    (message,) = refused(JOBS.replace("restartPolicy: Never", "restartPolicy: 7"))
    assert message.startswith("<stdin>:7: Job/shop/migrate: spec.template.spec.restartPolicy:")
