"""Renders the chart with the real Helm engine (helm-python-sdk bundles Helm's Go SDK).

`python tests/chart/render.py` rewrites k8s/base/liverelay.yaml from k8s/values.yaml, and
k8s/base/crds.yaml from the chart's crds/ (which Helm installs but leaves out of a render).
"""

import pathlib
import sys

import yaml
from helm_python.chart import Chart

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "liverelay"
K8S = ROOT / "k8s"


def render(values=None, name="liverelay", namespace="liverelay"):
    """Rendered manifests by template path (NOTES.txt left out)."""
    with Chart.load(str(CHART)) as chart:
        out = chart.render(values=values or {}, name=name, namespace=namespace)
    return {path: text for path, text in out.items() if not path.endswith("NOTES.txt")}


def objects(rendered):
    """Every Kubernetes object of a render, in template order."""
    docs = []
    for path in sorted(rendered):
        docs.extend(d for d in yaml.safe_load_all(rendered[path]) if d)
    return docs


def crds():
    """The CustomResourceDefinitions Helm installs from the chart's crds/, as (path, text)."""
    with Chart.load(str(CHART)) as chart:
        return sorted((c["name"], c["data"]) for c in chart.crds)


def k8s_crds():
    """k8s/base/crds.yaml: the chart's CRDs, applied before (and upgraded apart from) the rest."""
    header = "# The chart's crds/, copied by `make k8s`; do not edit.\n"
    return header + "\n---\n".join(text.strip() for _, text in crds()) + "\n"


def k8s_base():
    """The plain manifests: the chart rendered with k8s/values.yaml, without test hooks."""
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    rendered = render(values)
    parts = [
        rendered[path].strip()
        for path in sorted(rendered)
        if "/tests/" not in path and rendered[path].strip()
    ]
    header = "# Generated from charts/liverelay with k8s/values.yaml by `make k8s`; do not edit.\n"
    return header + "\n---\n".join(parts) + "\n"


if __name__ == "__main__":
    (K8S / "base" / "crds.yaml").write_text(k8s_crds())
    (K8S / "base" / "liverelay.yaml").write_text(k8s_base())
    sys.exit(0)
