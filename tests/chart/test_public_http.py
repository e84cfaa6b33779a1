"""Browser playback from the internet (README "Serving viewers on the internet"): the edges'
public HTTP listener (only the playback routes) on the edge Service, never the pods' port 8080
with /metrics and the APIs, and the optional Ingress in front of it; rendered with the real
Helm engine, validated, and the edge's arguments read by the real binary."""

import json
import subprocess

import kubernetes_validate
import pytest
from helm_python.chart import lint
from helm_python.errors import HelmRenderError

from render import CHART, objects, render
from test_chart import BINARY, CRD_KINDS, KUBE_VERSION, container, of_kind

INGRESS = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-buffering": "off"},
        "hosts": ["watch.example.com"],
        "tls": [{"secretName": "watch-tls", "hosts": ["watch.example.com"]}],
    }
}
VARIANTS = {
    "ingress": INGRESS,
    "ingress-any-host": {"ingress": {"enabled": True}, "edge": {"publicHttp": {"servicePort": 8081}}},
    "no-public-http": {"edge": {"publicHttp": {"enabled": False}}},
}


def ports(obj):
    return {p["name"]: p for p in obj["spec"]["ports"]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_public_http_variants_lint_and_validate(variant):
    report = lint(str(CHART), VARIANTS[variant], strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    for doc in objects(render(VARIANTS[variant])):
        if doc["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_the_edge_service_exposes_the_public_port_and_never_metrics():
    docs = objects(render())
    services = of_kind(docs, "Service")
    edge = ports(services["liverelay-edge"])
    assert edge["public-http"] == {"name": "public-http", "port": 80, "targetPort": "public-http", "protocol": "TCP"}
    # The internet-facing Services carry no port of the pods' HTTP listener (metrics, APIs).
    for name in ["liverelay-edge", "liverelay-ingest"]:
        targets = {p["targetPort"] for p in services[name]["spec"]["ports"]}
        assert "http" not in targets and 8080 not in targets, name
    assert "public-http" not in ports(services["liverelay-ingest"])
    assert services["liverelay-http"]["spec"]["type"] == "ClusterIP", "/metrics stays inside"

    deployments = of_kind(docs, "Deployment")
    edge_pod = container(deployments["liverelay-edge"])
    assert {"name": "public-http", "containerPort": 8081, "protocol": "TCP"} in edge_pod["ports"]
    assert "--public-http-listen=0.0.0.0:8081" in edge_pod["args"]
    ingest_pod = container(deployments["liverelay-ingest"])
    assert not any(a.startswith("--public-http-listen") for a in ingest_pod["args"])
    rule = of_kind(docs, "NetworkPolicy")["liverelay-edge"]["spec"]["ingress"][0]
    assert {"port": "public-http", "protocol": "TCP"} in rule["ports"]
    assert of_kind(docs, "Ingress") == {}, "no Ingress unless asked for"


def test_without_public_http_no_port_no_listener():
    docs = objects(render(VARIANTS["no-public-http"]))
    assert "public-http" not in ports(of_kind(docs, "Service")["liverelay-edge"])
    edge_pod = container(of_kind(docs, "Deployment")["liverelay-edge"])
    assert "public-http" not in {p["name"] for p in edge_pod["ports"]}
    assert not any(a.startswith("--public-http-listen") for a in edge_pod["args"])


def test_the_ingress_routes_to_the_public_port():
    docs = objects(render(INGRESS))
    ingress = of_kind(docs, "Ingress")["liverelay-edge"]
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "watch-tls", "hosts": ["watch.example.com"]}]
    assert ingress["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/proxy-buffering": "off"}
    [rule] = spec["rules"]
    assert rule["host"] == "watch.example.com"
    [path] = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    assert backend == {"name": "liverelay-edge", "port": {"name": "public-http"}}
    assert "public-http" in ports(of_kind(docs, "Service")["liverelay-edge"]), "the port it names exists"

    any_host = of_kind(objects(render(VARIANTS["ingress-any-host"])), "Ingress")["liverelay-edge"]["spec"]
    assert [r.get("host") for r in any_host["rules"]] == [None]
    assert "ingressClassName" not in any_host and "tls" not in any_host


def test_an_ingress_needs_the_public_port():
    with pytest.raises(HelmRenderError, match="ingress.enabled needs edge.publicHttp.enabled"):
        render({"ingress": {"enabled": True}, "edge": {"publicHttp": {"enabled": False}}})


def test_the_binary_reads_the_edge_arguments():
    """The edge's rendered arguments load in the real binary: its public listener is set."""
    assert BINARY.exists(), f"{BINARY} not built (make test builds it first)"
    edge_pod = container(of_kind(objects(render()), "Deployment")["liverelay-edge"])
    args = [a for a in edge_pod["args"] if not a.startswith("--config=")]
    out = subprocess.run([str(BINARY), *args, "--print-config"], capture_output=True, text=True, check=True)
    http = json.loads(out.stdout)["http"]
    assert http["public_listen"] == "0.0.0.0:8081"
    assert http["listen"] == "0.0.0.0:8080"
