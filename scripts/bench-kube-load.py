"""Load + validate 1,000 manifest documents (a benchmark, not a test)."""
# Run from the repo root: PYTHONPATH=. .venv/bin/python scripts/bench-kube-load.py
import io, time
from labkit.topology import parse_topology
from labkit.topology.kube import load_manifests
from labkit.topology.kube.documents import parse_documents
from labkit.topology.kube import schema

topo = parse_topology("name: t\nnodes:\n  node-1: {}\n  node-2: {}\n  node-3: {}\n")
docs = []
for i in range(250):
    docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: web-{i}, namespace: ns-{i % 10}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web-{i}}}}}
  template:
    metadata: {{labels: {{app: web-{i}}}}}
    spec:
      containers: [{{name: web, image: nginx, ports: [{{name: http, containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-{i}, namespace: ns-{i % 10}}}
spec: {{selector: {{app: web-{i}}}, ports: [{{name: http, port: 80, targetPort: http}}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web-{i}, namespace: ns-{i % 10}}}
spec:
  podSelector: {{matchLabels: {{app: web-{i}}}}}
  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{team: a}}}}}}], ports: [{{port: http}}]}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: c-{i}, namespace: ns-{i % 10}}}
data: {{a: b}}""")
text = "\n---\n".join(docs)
for round_ in range(2):
    t0 = time.perf_counter()
    parsed = parse_documents(text, "bench.yaml", [])
    t1 = time.perf_counter()
    version = schema.pick_version(None)
    for d in parsed:
        assert not schema.schema_problems(d, version)
    t2 = time.perf_counter()
    r = load_manifests(["-"], topo, stdin=io.StringIO(text))
    t3 = time.perf_counter()
    print(f"round {round_}: {len(parsed)} docs  parse {t1-t0:.3f}s  validate {t2-t1:.3f}s  full load+validate+convert+check {t3-t2:.3f}s  pods={len(r.topology.pods)}")
