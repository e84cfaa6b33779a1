"""The Helm chart, checked as far as possible without a cluster: rendered by the real Helm
engine, linted, every object validated against the Kubernetes schema, the properties operators
rely on asserted, the config it renders accepted by the real binary, k8s/ kept in step."""

import json
import os
import pathlib
import subprocess

import kubernetes_validate
import pytest
import yaml
from helm_python.chart import Chart, lint

from render import CHART, K8S, ROOT, k8s_base, objects, render

KUBE_VERSION = "1.33.0"
# Kinds from CRDs (Prometheus Operator) have no schema in kubernetes-validate.
CRD_KINDS = {"ServiceMonitor"}

VARIANTS = {
    "default": {},
    "external-redis": {
        "redis": {
            "bundled": {"enabled": False},
            "address": "redis-master.db.svc:6379",
            "existingSecret": "redis-auth",
            "tls": True,
        }
    },
    "redis-cluster": {
        "redis": {"bundled": {"enabled": False}, "address": "r0:6379,r1:6379,r2:6379", "cluster": True}
    },
    "hpa-custom-metric": {
        "edge": {"hpa": {"viewersPerPod": 2000}},
        "ingest": {"hpa": {"enabled": True, "publishersPerPod": 50}, "service": {"externalTrafficPolicy": "Local"}},
    },
    "tls": {"relayTls": {"enabled": True, "existingSecret": "relay-tls", "serverName": "liverelay-ingest"}},
    "monitoring": {"metrics": {"serviceMonitor": {"enabled": True}, "grafanaDashboard": {"enabled": True}}},
}


def of_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env(deployment):
    return {e["name"]: e for e in container(deployment)["env"]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_is_clean(variant):
    report = lint(str(CHART), VARIANTS[variant], strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_validates(variant):
    docs = objects(render(VARIANTS[variant]))
    assert len(docs) >= 12
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_deployments_probes_ports_security_and_drain():
    docs = objects(render())
    deployments = of_kind(docs, "Deployment")
    assert set(deployments) == {"liverelay-ingest", "liverelay-edge"}
    for role, grace in [("ingest", 300), ("edge", 60)]:
        d = deployments[f"liverelay-{role}"]
        c = container(d)
        assert c["args"][0] == role
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        expected = {"rtmp": 1935, "http": 8080} | ({"grpc": 50051} if role == "ingest" else {})
        assert ports == expected
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["terminationGracePeriodSeconds"] == grace + 15
        assert env(d)["LIVERELAY_RTMP__DRAIN_GRACE_SECS"]["value"] == str(grace)
        assert c["lifecycle"]["preStop"]["sleep"]["seconds"] == 5
        assert pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == role
        token = env(d)["LIVERELAY_CLUSTER_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert token == {"name": "liverelay-cluster-token", "key": "cluster-token"}
        assert env(d)["LIVERELAY_REDIS__URL"]["value"] == "redis://liverelay-redis:6379"
    secrets = of_kind(docs, "Secret")
    assert "cluster-token" in secrets["liverelay-cluster-token"]["data"]


def test_services_hpa_pdb_and_network_policies():
    docs = objects(render())
    services = of_kind(docs, "Service")
    assert services["liverelay-ingest"]["spec"]["type"] == "LoadBalancer"
    assert services["liverelay-edge"]["spec"]["type"] == "LoadBalancer"
    assert services["liverelay-ingest-headless"]["spec"]["clusterIP"] == "None"
    assert services["liverelay-ingest-headless"]["spec"]["ports"][0]["port"] == 50051
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {"liverelay-edge"}, "edges scale by default, ingests on request"
    edge_hpa = hpas["liverelay-edge"]["spec"]
    assert edge_hpa["scaleTargetRef"]["name"] == "liverelay-edge"
    assert edge_hpa["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]
    assert "replicas" not in of_kind(docs, "Deployment")["liverelay-edge"]["spec"], "the HPA owns replicas"
    pdbs = of_kind(docs, "PodDisruptionBudget")
    assert {n: p["spec"]["maxUnavailable"] for n, p in pdbs.items()} == {"liverelay-ingest": 1, "liverelay-edge": 1}
    policies = of_kind(docs, "NetworkPolicy")
    grpc_rule = policies["liverelay-ingest"]["spec"]["ingress"][1]
    assert grpc_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "edge"
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    redis_from = policies["liverelay-redis"]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
    assert {"key": "app.kubernetes.io/component", "operator": "In", "values": ["ingest", "edge"]} in redis_from
    assert "liverelay-redis" in of_kind(docs, "StatefulSet")


def test_custom_metric_hpa_and_local_traffic_policy():
    docs = objects(render(VARIANTS["hpa-custom-metric"]))
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    pods_metric = hpas["liverelay-edge"]["spec"]["metrics"][1]
    assert pods_metric == {
        "type": "Pods",
        "pods": {"metric": {"name": "liverelay_viewers"}, "target": {"type": "AverageValue", "averageValue": "2000"}},
    }
    assert hpas["liverelay-ingest"]["spec"]["metrics"][1]["pods"]["metric"]["name"] == "liverelay_publishers"
    assert of_kind(docs, "Service")["liverelay-ingest"]["spec"]["externalTrafficPolicy"] == "Local"


def test_external_redis_with_password_and_tls():
    docs = objects(render(VARIANTS["external-redis"]))
    assert "liverelay-redis" not in of_kind(docs, "StatefulSet")
    e = env(of_kind(docs, "Deployment")["liverelay-edge"])
    assert e["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "redis-password"}
    assert e["LIVERELAY_REDIS__URL"]["value"] == "rediss://:$(REDIS_PASSWORD)@redis-master.db.svc:6379"
    assert "liverelay-redis" not in of_kind(docs, "NetworkPolicy")
    cluster = env(of_kind(objects(render(VARIANTS["redis-cluster"])), "Deployment")["liverelay-ingest"])
    assert cluster["LIVERELAY_REDIS__URL"]["value"] == "redis://r0:6379,redis://r1:6379,redis://r2:6379"


def test_relay_tls_mounts_and_settings():
    deployments = of_kind(objects(render(VARIANTS["tls"])), "Deployment")
    ingest, edge = deployments["liverelay-ingest"], deployments["liverelay-edge"]
    assert env(ingest)["LIVERELAY_CLUSTER__TLS_CERT"]["value"] == "/etc/liverelay/tls/tls.crt"
    assert env(ingest)["LIVERELAY_CLUSTER__TLS_KEY"]["value"] == "/etc/liverelay/tls/tls.key"
    assert env(edge)["LIVERELAY_CLUSTER__TLS_CA"]["value"] == "/etc/liverelay/tls/ca.crt"
    assert env(edge)["LIVERELAY_CLUSTER__TLS_DOMAIN"]["value"] == "liverelay-ingest"
    for d in (ingest, edge):
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        assert volumes["relay-tls"]["secret"]["secretName"] == "relay-tls"


def test_monitoring_service_monitor_and_dashboard():
    docs = objects(render(VARIANTS["monitoring"]))
    monitor = of_kind(docs, "ServiceMonitor")["liverelay"]
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    http = of_kind(docs, "Service")["liverelay-http"]
    assert all(http["metadata"]["labels"][k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    dashboard = of_kind(docs, "ConfigMap")["liverelay-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "liverelay-overview.json").read_text())
    assert json.loads(dashboard["data"]["liverelay-overview.json"]) == shipped


def test_helm_test_hook_checks_readiness():
    hooks = [d for d in objects(render()) if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert len(hooks) == 1
    assert hooks[0]["spec"]["containers"][0]["command"][-1] == "http://liverelay-http:8080/readyz"


def test_values_schema_rejects_bad_values():
    with Chart.load(str(CHART)) as chart:
        chart.validate_schema({})
        for bad in [{"edge": {"replicas": "two"}}, {"logFormat": "xml"}, {"redis": {"leaseTtlMs": 10}}, {"typo": 1}]:
            with pytest.raises(Exception):
                chart.validate_schema(bad)


def test_rendered_config_is_accepted_by_the_binary(tmp_path):
    """The settings the chart renders load in the real binary, with integers kept integers."""
    binary = pathlib.Path(os.environ.get("LIVERELAY_BIN", ROOT / "target" / "debug" / "liverelay"))
    assert binary.exists(), f"{binary} not built (make test builds it first)"
    config = of_kind(objects(render()), "ConfigMap")["liverelay-config"]["data"]["liverelay.yaml"]
    path = tmp_path / "liverelay.yaml"
    path.write_text(config)
    out = subprocess.run(
        [str(binary), "edge", f"--config={path}", "--print-config"], capture_output=True, text=True, check=True
    )
    settings = json.loads(out.stdout)
    assert settings["rtmp"]["chunk_size"] == 4096
    assert settings["rtmp"]["drain_grace_secs"] == 30
    assert settings["redis"]["lease_ttl_ms"] == 5000
    assert settings["log"]["format"] == "json"


def test_k8s_manifests_are_in_step_with_the_chart():
    committed = (K8S / "base" / "liverelay.yaml").read_text()
    assert committed == k8s_base(), "k8s/base/liverelay.yaml is stale: run `make k8s`"
    docs = [d for d in yaml.safe_load_all(committed) if d]
    assert "Secret" not in {d["kind"] for d in docs}, "no secret in the repository"
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
