"""Load + validate 1,000 manifest documents (a benchmark, not a test): `labkit bench manifests --no-lab`."""

# Run from the repo root: PYTHONPATH=. .venv/bin/python scripts/bench-kube-load.py
from rich.console import Console

from labkit.bench.manifests import run
from pathlib import Path

run(
    count=1000,
    repeats=5,
    with_lab=False,
    out=Path("bench-results/manifests.json"),
    console=Console(),
)
