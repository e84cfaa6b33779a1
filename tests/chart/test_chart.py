"""The Helm chart, checked as far as possible without a cluster: rendered by the real Helm
engine, linted, every object validated against the Kubernetes schema, the properties operators
rely on asserted, the config it renders accepted by the real binary, k8s/ kept in step."""

import base64
import copy
import json
import os
import re
import shutil
import socket
import time
import urllib.request
import pathlib
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python.chart import Chart, lint
from helm_python.errors import HelmRenderError, HelmValuesError

from render import CHART, K8S, ROOT, crds, k8s_base, k8s_crds, objects, render

KUBE_VERSION = "1.33.0"
# Kinds from CRDs (Prometheus Operator) have no schema in kubernetes-validate.
CRD_KINDS = {"ServiceMonitor"}
# Built by `cargo test` (make test) before the chart checks.
BINARY = pathlib.Path(os.environ.get("LIVERELAY_BIN", ROOT / "target" / "debug" / "liverelay"))

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
    "control-disabled": {"control": {"enabled": False}},
    "play-tokens-without-control": {"control": {"enabled": False}, "auth": {"playTokens": {"enabled": True, "secret": "k"}}},
    "stream-keys-play-tokens": {
        "auth": {"publishKeys": True, "playTokens": {"enabled": True}},
        "ingest": {"allowPlay": True},
        "edge": {"publicRtmpUrl": "rtmp://$(POD_NAME).edge.example.com:1935"},
        "networkPolicy": {"controlApiNamespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        "config": {
            "auth": {"on_control_unavailable": "allow", "cache_secs": 2},
            "notify": [{"app": "live", "on_publish": "http://backend.platform/rtmp/publish", "timeout_ms": 3000}],
        },
    },
    "relays": {
        "config": {
            "relays": [
                {
                    "kind": "pull",
                    "url": "rtmp://upstream:1935/app/name",
                    "stream": "live/foo",
                    "mode": "on-demand",
                    "initial_backoff_ms": 250,
                    "max_backoff_ms": 20000,
                    "stall_timeout_ms": 5000,
                    "max_attempts": 10,
                    "linger_secs": 30,
                },
                {"kind": "push", "url": "rtmp://a.rtmp.youtube.com/live2/STREAM-KEY", "stream": "live/foo"},
            ]
        }
    },
    "relay-resources-disabled": {"control": {"relayResources": {"enabled": False}}},
    "webhooks": {
        "control": {
            "existingSecret": "control-auth",
            "webhooks": [
                {"url": "https://backend.platform/liverelay/events", "events": ["stream.started", "stream.ended"]},
                {"url": "http://audit.platform/hook", "secret": "given-signing-key", "max_attempts": 3},
            ],
        }
    },
}


def of_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env(deployment):
    return {e["name"]: e for e in container(deployment)["env"]}


def secret_data(docs, name, key):
    return base64.b64decode(of_kind(docs, "Secret")[name]["data"][key]).decode()


def process_env(deployment, docs, **fields):
    """The environment the kubelet would give the container: rendered Secrets resolved, the
    downward API from `fields`, $(VAR) expanded."""
    out = {}
    for e in container(deployment)["env"]:
        if "value" in e:
            value = e["value"]
            for name, v in out.items():
                value = value.replace(f"$({name})", v)
        elif "secretKeyRef" in e["valueFrom"]:
            ref = e["valueFrom"]["secretKeyRef"]
            value = secret_data(docs, ref["name"], ref["key"])
        else:
            value = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        out[e["name"]] = value
    return out


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
    assert set(deployments) == {"liverelay-ingest", "liverelay-edge", "liverelay-control"}
    for role, grace in [("ingest", 300), ("edge", 60)]:
        d = deployments[f"liverelay-{role}"]
        c = container(d)
        assert c["args"][0] == role
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        expected = {"rtmp": 1935, "http": 8080} | ({"grpc": 50051} if role == "ingest" else {"public-http": 8081})
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
        assert env(d)["LIVERELAY_REDIS__URL"]["value"] == "redis://:$(REDIS_PASSWORD)@liverelay-redis:6379"
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
    assert {n: p["spec"]["maxUnavailable"] for n, p in pdbs.items()} == {
        "liverelay-ingest": 1,
        "liverelay-edge": 1,
        "liverelay-control": 1,
    }
    policies = of_kind(docs, "NetworkPolicy")
    grpc_rule = policies["liverelay-ingest"]["spec"]["ingress"][1]
    assert grpc_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "edge"
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    redis_from = policies["liverelay-redis"]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
    assert {"key": "app.kubernetes.io/component", "operator": "In", "values": ["ingest", "edge", "control"]} in redis_from
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


def redis_statefulset(docs):
    return of_kind(docs, "StatefulSet")["liverelay-redis"]


def test_bundled_redis_has_a_password_a_volume_and_noeviction():
    docs = objects(render())
    password = secret_data(docs, "liverelay-redis", "redis-password")
    assert re.fullmatch(r"[A-Za-z0-9]{40}", password), "random and URL-safe"
    sts = redis_statefulset(docs)
    c = container(sts)
    assert c["args"] == [
        "--requirepass", "$(REDIS_PASSWORD)",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--maxmemory", "160mb",
        "--maxmemory-policy", "noeviction",
    ]
    assert env(sts)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "liverelay-redis", "key": "redis-password"}
    assert process_env(sts, docs)["REDISCLI_AUTH"] == password, "the readiness probe's redis-cli authenticates"
    # The data volume is a claim, not an emptyDir.
    assert "volumes" not in sts["spec"]["template"]["spec"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"], "the cluster's default StorageClass"
    assert "helm.sh/chart" not in claim["metadata"]["labels"], "volumeClaimTemplates are immutable"
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    # Every pod's Redis URL carries the password.
    fields = {"metadata.name": "p", "metadata.namespace": "n", "status.podIP": "10.0.0.1"}
    for d in of_kind(docs, "Deployment").values():
        assert process_env(d, docs, **fields)["LIVERELAY_REDIS__URL"] == f"redis://:{password}@liverelay-redis:6379"


def test_bundled_redis_password_storage_class_and_ephemeral_choice():
    values = {"redis": {"bundled": {"password": "given-pw", "maxmemory": "1gb", "persistence": {"size": "5Gi", "storageClass": "fast"}}}}
    docs = objects(render(values))
    assert secret_data(docs, "liverelay-redis", "redis-password") == "given-pw"
    sts = redis_statefulset(docs)
    assert container(sts)["args"][-3] == "1gb"
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert (claim["storageClassName"], claim["resources"]["requests"]["storage"]) == ("fast", "5Gi")
    # persistence.enabled=false: an emptyDir, no claim.
    sts = redis_statefulset(objects(render({"redis": {"bundled": {"persistence": {"enabled": False}}}})))
    assert "volumeClaimTemplates" not in sts["spec"]
    assert sts["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]
    # existingSecret: the bundled Redis and the pods use it, the chart creates none.
    docs = objects(render({"redis": {"existingSecret": "my-redis"}}))
    assert "liverelay-redis" not in of_kind(docs, "Secret")
    for d in [redis_statefulset(docs), *of_kind(docs, "Deployment").values()]:
        assert env(d)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "my-redis", "key": "redis-password"}


def test_bundled_redis_args_start_a_real_redis_that_persists(tmp_path):
    """The rendered arguments, given to the redis-server of `make test-deps`: a password is
    required, writes go to an append-only file, eviction is off."""
    docs = objects(render())
    password = secret_data(docs, "liverelay-redis", "redis-password")
    args = [a.replace("$(REDIS_PASSWORD)", password) for a in container(redis_statefulset(docs))["args"]]
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", *args, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )

    def cli(*command, auth=True):
        environ = {**os.environ, "REDISCLI_AUTH": password} if auth else os.environ
        out = subprocess.run(["redis-cli", "-p", str(port), *command], capture_output=True, text=True, env=environ)
        return out.stdout.strip()

    try:
        wait_for(lambda: cli("ping") == "PONG", "redis")
        assert "NOAUTH" in cli("set", "k", "v", auth=False)
        assert cli("config", "get", "appendonly").split() == ["appendonly", "yes"]
        assert cli("config", "get", "maxmemory-policy").split() == ["maxmemory-policy", "noeviction"]
        assert cli("config", "get", "maxmemory").split() == ["maxmemory", str(160 * 1024 * 1024)]
        assert cli("set", "k", "v") == "OK"
        wait_for(lambda: any(b"k" in f.read_bytes() for f in tmp_path.glob("appendonlydir/*.aof")), "the AOF")
    finally:
        server.terminate()
        server.wait(timeout=10)


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


def hook_pods(values=None):
    return {
        d["metadata"]["name"]: d
        for d in objects(render(values))
        if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    }


def test_helm_test_hook_checks_readiness():
    hooks = hook_pods()
    assert set(hooks) == {"liverelay-test-readyz", "liverelay-test-control"}
    assert hooks["liverelay-test-readyz"]["spec"]["containers"][0]["command"][-1] == "http://liverelay-http:8080/readyz"


def rejects(chart, values, at, problem):
    """`values` fail the chart's values.schema.json at `at` for `problem`, Helm's own words: a
    value refused for another reason (or by another check) is not this rejection."""
    expected = f"- at '{at}': {problem}\n"
    with pytest.raises(HelmValuesError, match=re.escape(expected)):
        chart.validate_schema(values)


def test_values_schema_rejects_bad_values():
    with Chart.load(str(CHART)) as chart:
        chart.validate_schema({})
        bad_values = [
            ({"edge": {"replicas": "two"}}, "/edge/replicas", "got string, want integer"),
            ({"logFormat": "xml"}, "/logFormat", "value must be one of 'json', 'text'"),
            ({"redis": {"leaseTtlMs": 10}}, "/redis/leaseTtlMs", "minimum: got 10, want 300"),
            (
                {"redis": {"bundled": {"password": "p@ss/word"}}},
                "/redis/bundled/password",
                "'p@ss/word' does not match pattern '^[A-Za-z0-9._~-]*$'",
            ),
            (
                {"redis": {"bundled": {"maxmemory": "256Mi"}}},
                "/redis/bundled/maxmemory",
                "'256Mi' does not match pattern '^[0-9]+(b|kb|mb|gb)$'",
            ),
            (
                {"redis": {"bundled": {"persistence": {"enabled": "yes"}}}},
                "/redis/bundled/persistence/enabled",
                "got string, want boolean",
            ),
            (
                {"redis": {"bundled": {"persistence": {"size": "1G"}}}},
                "/redis/bundled/persistence/size",
                "'1G' does not match pattern '^[0-9]+(Mi|Gi|Ti)$'",
            ),
            (
                {"redis": {"bundled": {"persistence": {"storageclass": "x"}}}},
                "/redis/bundled/persistence",
                "additional properties 'storageclass' not allowed",
            ),
            ({"typo": 1}, "", "additional properties 'typo' not allowed"),
            ({"control": {"webhooks": [{"secret": "no url"}]}}, "/control/webhooks/0", "missing property 'url'"),
            (
                {"control": {"webhooks": [{"url": "https://x", "maxAttempts": 3}]}},
                "/control/webhooks/0",
                "additional properties 'maxAttempts' not allowed",
            ),
            ({"control": {"adminTokn": "x"}}, "/control", "additional properties 'adminTokn' not allowed"),
            ({"auth": {"publishKeys": "yes"}}, "/auth/publishKeys", "got string, want boolean"),
            (
                {"config": {"auth": {"play_token_secret": "not in a ConfigMap"}}},
                "/config/auth",
                "additional properties 'play_token_secret' not allowed",
            ),
            (
                {"config": {"notify": [{"on_publsh": "http://x"}]}},
                "/config/notify/0",
                "additional properties 'on_publsh' not allowed",
            ),
            (
                {"edge": {"publicRtmpUrl": "http://not-rtmp"}},
                "/edge/publicRtmpUrl",
                "'http://not-rtmp' does not match pattern '^(rtmps?://.+)?$'",
            ),
            (
                {"control": {"relayResources": {"enabled": "yes"}}},
                "/control/relayResources/enabled",
                "got string, want boolean",
            ),
            (
                {"control": {"relayResources": {"enabled": True, "namespace": "other"}}},
                "/control/relayResources",
                "additional properties 'namespace' not allowed",
            ),
        ]
        for values, at, problem in bad_values:
            rejects(chart, values, at, problem)


def test_rendered_config_is_accepted_by_the_binary(tmp_path):
    """The settings the chart renders load in the real binary, with integers kept integers."""
    binary = BINARY
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
    assert (K8S / "base" / "crds.yaml").read_text() == k8s_crds(), "k8s/base/crds.yaml is stale: run `make k8s`"
    docs = [d for d in yaml.safe_load_all(committed) if d]
    assert "Secret" not in {d["kind"] for d in docs}, "no secret in the repository"
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


# --- the control service -------------------------------------------------------------------


def test_control_deployment_service_pdb_and_secrets():
    docs = objects(render())
    d = of_kind(docs, "Deployment")["liverelay-control"]
    c = container(d)
    pod = d["spec"]["template"]["spec"]
    assert d["spec"]["replicas"] == 2
    assert c["args"] == [
        "control",
        "--config=/etc/liverelay/config/liverelay.yaml",
        "--http-listen=0.0.0.0:8080",
        "--grpc-listen=0.0.0.0:50051",
    ]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "grpc": 50051}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is True, "the token for Relay resources"
    assert pod["serviceAccountName"] == "liverelay-control"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    spread = pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]
    assert spread["app.kubernetes.io/component"] == "control"
    e = env(d)
    assert e["LIVERELAY_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "liverelay-control", "key": "admin-token"}
    assert e["LIVERELAY_CLUSTER_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "liverelay-cluster-token", "key": "cluster-token"}
    assert e["LIVERELAY_REDIS__URL"]["value"] == "redis://:$(REDIS_PASSWORD)@liverelay-redis:6379"
    assert "LIVERELAY_AUTH__PLAY_TOKEN_SECRET" not in e, "play tokens are off by default"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "liverelay-config"
    # The Secret: random values, 40 characters, both keys.
    assert len(secret_data(docs, "liverelay-control", "admin-token")) == 40
    assert len(secret_data(docs, "liverelay-control", "play-token-secret")) == 40
    # Service: ClusterIP, HTTP and gRPC, selecting control pods only.
    svc = of_kind(docs, "Service")["liverelay-control"]["spec"]
    assert svc["type"] == "ClusterIP"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["ports"]} == {
        "http": (8080, "http"),
        "grpc": (50051, "grpc"),
    }
    assert svc["selector"]["app.kubernetes.io/component"] == "control"
    pdb = of_kind(docs, "PodDisruptionBudget")["liverelay-control"]["spec"]
    assert pdb["selector"]["matchLabels"]["app.kubernetes.io/component"] == "control"
    # Metrics: the HTTP Service the ServiceMonitor selects takes in control pods too.
    http = of_kind(docs, "Service")["liverelay-http"]["spec"]["selector"]
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in http.items())


def test_ingest_asks_control_and_publishing_stays_open_by_default():
    docs = objects(render())
    deployments = of_kind(docs, "Deployment")
    ingest = env(deployments["liverelay-ingest"])
    assert ingest["LIVERELAY_AUTH__CONTROL_URL"]["value"] == "http://liverelay-control:50051"
    assert ingest["LIVERELAY_AUTH__PUBLISH"]["value"] == "open"
    edge = env(deployments["liverelay-edge"])
    assert not any(k.startswith("LIVERELAY_AUTH__") for k in edge), "edges play openly by default"
    assert "control_url" not in of_kind(docs, "ConfigMap")["liverelay-config"]["data"]["liverelay.yaml"]


def test_stream_keys_play_tokens_and_public_url():
    docs = objects(render(VARIANTS["stream-keys-play-tokens"]))
    deployments = of_kind(docs, "Deployment")
    ingest, edge, control = (env(deployments[f"liverelay-{r}"]) for r in ("ingest", "edge", "control"))
    assert ingest["LIVERELAY_AUTH__PUBLISH"]["value"] == "key"
    ref = {"name": "liverelay-control", "key": "play-token-secret"}
    for e in (edge, ingest):  # the ingest allows plays here, so it checks tokens too
        assert e["LIVERELAY_AUTH__PLAY"]["value"] == "token"
        assert e["LIVERELAY_AUTH__PLAY_TOKEN_SECRET"]["valueFrom"]["secretKeyRef"] == ref
    assert control["LIVERELAY_AUTH__PLAY_TOKEN_SECRET"]["valueFrom"]["secretKeyRef"] == ref
    assert edge["LIVERELAY_CLUSTER__PUBLIC_RTMP_URL"]["value"] == "rtmp://$(POD_NAME).edge.example.com:1935"
    # $(POD_NAME) expands: POD_NAME is defined before it.
    names = [x["name"] for x in container(deployments["liverelay-edge"])["env"]]
    assert names.index("POD_NAME") < names.index("LIVERELAY_CLUSTER__PUBLIC_RTMP_URL")
    config = yaml.safe_load(of_kind(docs, "ConfigMap")["liverelay-config"]["data"]["liverelay.yaml"])
    assert config["auth"] == {"on_control_unavailable": "allow", "cache_secs": 2, "control_timeout_ms": 2000}
    assert config["notify"][0]["on_publish"] == "http://backend.platform/rtmp/publish"


def test_publish_keys_need_control():
    with pytest.raises(HelmRenderError, match=r"\(liverelay/templates/[a-z-]+\.yaml:\d+:\d+\): auth\.publishKeys needs control\.enabled$"):
        render({"control": {"enabled": False}, "auth": {"publishKeys": True}})


def test_control_disabled_renders_no_control():
    rendered = render(VARIANTS["control-disabled"])
    docs = objects(rendered)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert not [n for n in names if "control" in n[1]], names
    assert not [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "control"]
    text = "\n".join(rendered.values())
    assert "control_url" not in text and "CONTROL_URL" not in text and "ADMIN_TOKEN" not in text
    assert set(hook_pods(VARIANTS["control-disabled"])) == {"liverelay-test-readyz"}


def test_play_tokens_without_control():
    docs = objects(render(VARIANTS["play-tokens-without-control"]))
    assert "Deployment" not in {d["kind"] for d in docs if "control" in d["metadata"]["name"]}
    assert of_kind(docs, "Secret")["liverelay-control"]["data"] == {"play-token-secret": base64.b64encode(b"k").decode()}
    edge = env(of_kind(docs, "Deployment")["liverelay-edge"])
    assert edge["LIVERELAY_AUTH__PLAY_TOKEN_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "liverelay-control"


def test_control_network_policy():
    policies = of_kind(objects(render()), "NetworkPolicy")
    http_rule, grpc_rule = policies["liverelay-control"]["spec"]["ingress"]
    assert policies["liverelay-control"]["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "control"
    assert http_rule == {"from": [{"podSelector": {}}], "ports": [{"port": "http", "protocol": "TCP"}]}
    assert grpc_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "ingest"
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    policies = of_kind(objects(render(VARIANTS["stream-keys-play-tokens"])), "NetworkPolicy")
    http_from = policies["liverelay-control"]["spec"]["ingress"][0]["from"]
    assert http_from == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
    ]


def test_webhooks_with_signing_secrets_and_existing_secret():
    docs = objects(render(VARIANTS["webhooks"]))
    assert "liverelay-control" not in of_kind(docs, "Secret"), "existingSecret: the chart makes none"
    d = of_kind(docs, "Deployment")["liverelay-control"]
    assert env(d)["LIVERELAY_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "control-auth", "key": "admin-token"}
    volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["secret"]["secretName"] == "liverelay-control-webhooks"
    settings = yaml.safe_load(secret_data(docs, "liverelay-control-webhooks", "liverelay.yaml"))
    hooks = settings["control"]["webhooks"]
    generated = secret_data(docs, "liverelay-control-webhooks", "webhook-0-secret")
    assert len(generated) == 40
    assert hooks[0] == {
        "url": "https://backend.platform/liverelay/events",
        "events": ["stream.started", "stream.ended"],
        "secret": generated,
    }
    assert hooks[1] == {"url": "http://audit.platform/hook", "secret": "given-signing-key", "max_attempts": 3}
    assert secret_data(docs, "liverelay-control-webhooks", "webhook-1-secret") == "given-signing-key"
    # Everything else as in the ConfigMap.
    shared = yaml.safe_load(of_kind(docs, "ConfigMap")["liverelay-config"]["data"]["liverelay.yaml"])
    assert {k: v for k, v in settings.items() if k != "control"} == shared
    hook = hook_pods(VARIANTS["webhooks"])["liverelay-test-control"]
    ref = {x["name"]: x for x in hook["spec"]["containers"][0]["env"]}["ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "control-auth", "key": "admin-token"}


def test_helm_test_hook_checks_the_control_api():
    pod = hook_pods()["liverelay-test-control"]
    c = pod["spec"]["containers"][0]
    assert c["image"] == hook_pods()["liverelay-test-readyz"]["spec"]["containers"][0]["image"]
    e = {x["name"]: x for x in c["env"]}
    assert e["CONTROL"]["value"] == "http://liverelay-control:8080"
    assert e["ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "liverelay-control", "key": "admin-token"}
    script = c["command"][-1]
    assert '"$CONTROL/readyz"' in script and '"$CONTROL/v1/keys"' in script
    assert "Authorization: Bearer $ADMIN_TOKEN" in script
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def run_settings(binary, role, config, environ, tmp_path):
    path = tmp_path / f"{role}.yaml"
    path.write_text(config)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIVERELAY")}
    out = subprocess.run(
        [str(binary), role, f"--config={path}", "--print-config"],
        capture_output=True,
        text=True,
        check=True,
        env=clean | environ,
    )
    return json.loads(out.stdout)


POD_FIELDS = {"metadata.name": "liverelay-x-1", "metadata.namespace": "liverelay", "status.podIP": "127.0.0.1"}


def test_rendered_control_wiring_is_read_by_the_binary(tmp_path):
    """Each role's rendered settings and environment, loaded by the real binary."""
    docs = objects(render(VARIANTS["stream-keys-play-tokens"]))
    deployments = of_kind(docs, "Deployment")
    config = of_kind(docs, "ConfigMap")["liverelay-config"]["data"]["liverelay.yaml"]
    ingest = run_settings(BINARY, "ingest", config, process_env(deployments["liverelay-ingest"], docs, **POD_FIELDS), tmp_path)
    assert ingest["auth"]["control_url"] == "http://liverelay-control:50051"
    assert ingest["auth"]["publish"] == "key"
    assert ingest["auth"]["play"] == "token"
    assert ingest["auth"]["on_control_unavailable"] == "allow"
    assert ingest["auth"]["cache_secs"] == 2
    assert ingest["notify"][0]["timeout_ms"] == 3000
    edge = run_settings(BINARY, "edge", config, process_env(deployments["liverelay-edge"], docs, **POD_FIELDS), tmp_path)
    assert edge["auth"]["play"] == "token"
    assert edge["auth"]["control_url"] is None
    assert edge["cluster"]["public_rtmp_url"] == "rtmp://liverelay-x-1.edge.example.com:1935"
    assert edge["cluster"]["report_interval_secs"] == 5
    default = objects(render())
    ingest = run_settings(
        BINARY, "ingest", config, process_env(of_kind(default, "Deployment")["liverelay-ingest"], default, **POD_FIELDS), tmp_path
    )
    assert ingest["auth"]["publish"] == "open"
    docs = objects(render(VARIANTS["webhooks"] | {"control": VARIANTS["webhooks"]["control"] | {"existingSecret": ""}}))
    control = run_settings(
        BINARY,
        "control",
        secret_data(docs, "liverelay-control-webhooks", "liverelay.yaml"),
        process_env(of_kind(docs, "Deployment")["liverelay-control"], docs, **POD_FIELDS),
        tmp_path,
    )
    assert [(w["url"], w["events"], w["max_attempts"]) for w in control["control"]["webhooks"]] == [
        ("https://backend.platform/liverelay/events", ["stream.started", "stream.ended"], 6),
        ("http://audit.platform/hook", [], 3),
    ]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class FakeKubeApi:
    """Stands in for the API server control's Relay reconciler talks to: an empty RelayList,
    watches held open; records the paths asked for. (No real API server runs here.)"""

    def __init__(self):
        self.paths = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                api.paths.append(self.path)
                if "watch=true" in self.path:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.flush()
                    time.sleep(2)  # a quiet watch; the client asks again when it ends
                    return
                body = json.dumps(
                    {"apiVersion": "liverelay.io/v1alpha1", "kind": "RelayList", "metadata": {"resourceVersion": "1"}, "items": []}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kubeconfig(self, path, namespace):
        """A kubeconfig pointing at it, with the namespace in-cluster config would give."""
        url = f"http://127.0.0.1:{self.server.server_address[1]}"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": url}}],
                    "users": [{"name": "control", "user": {"token": "service-account-token"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "control", "namespace": namespace}}],
                    "current-context": "fake",
                }
            )
        )
        return str(path)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_helm_test_hook_script_against_a_real_control(tmp_path):
    """The `helm test` pod's script, run against `liverelay control` started with the
    Deployment's rendered arguments, settings, Secrets and environment (addresses made local;
    the Kubernetes API a local stand-in), passes, and fails with a wrong admin token."""
    wget = shutil.which("busybox") or shutil.which("wget")
    if not wget or not shutil.which("redis-server"):
        # A missing tool is a failure, never a skip: a skipped check would pass unnoticed.
        pytest.fail("needs wget (or busybox) and redis-server: `make test-deps` installs them")
    docs = objects(render())
    deployment = of_kind(docs, "Deployment")["liverelay-control"]
    hook = hook_pods()["liverelay-test-control"]["spec"]["containers"][0]
    http, grpc, redis_port = free_port(), free_port(), free_port()
    config = tmp_path / "liverelay.yaml"
    config.write_text(of_kind(docs, "ConfigMap")["liverelay-config"]["data"]["liverelay.yaml"])
    args = [
        a.replace("/etc/liverelay/config/liverelay.yaml", str(config))
        .replace("0.0.0.0:8080", f"127.0.0.1:{http}")
        .replace("0.0.0.0:50051", f"127.0.0.1:{grpc}")
        for a in container(deployment)["args"]
    ]
    environ = process_env(deployment, docs, **POD_FIELDS)
    environ["LIVERELAY_REDIS__URL"] = f"redis://127.0.0.1:{redis_port}"
    assert environ["LIVERELAY_CONTROL__RELAY_RESOURCES"] == "true"
    kube_api = FakeKubeApi()
    environ["KUBECONFIG"] = kube_api.kubeconfig(tmp_path / "kubeconfig", POD_FIELDS["metadata.namespace"])
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIVERELAY") and k != "KUBECONFIG"}
    # busybox: a directory with `wget` -> busybox first in PATH, as in the busybox image.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "wget").symlink_to(wget)
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for(lambda: socket.create_connection(("127.0.0.1", redis_port), timeout=1).close() or True, "redis")
        log = open(tmp_path / "control.log", "w")
        procs.append(subprocess.Popen([str(BINARY), *args], env=clean | environ, stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{http}"
        wait_for(lambda: urllib.request.urlopen(f"{url}/readyz", timeout=1).status == 200, "control /readyz")

        def run_hook(token):
            hook_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CONTROL": url, "ADMIN_TOKEN": token}
            return subprocess.run(hook["command"], env=hook_env, capture_output=True, text=True, timeout=60)

        ok = run_hook(secret_data(docs, "liverelay-control", "admin-token"))
        assert ok.returncode == 0, (ok.stdout, ok.stderr, (tmp_path / "control.log").read_text())
        assert "control API up" in ok.stdout
        wrong = run_hook("not-the-admin-token")
        assert wrong.returncode != 0
        assert "/v1/keys with the admin token failed" in wrong.stdout
        # Control watches Relay resources in its own namespace, and only there.
        relays = "/apis/liverelay.io/v1alpha1/namespaces/liverelay/relays"
        wait_for(lambda: any(p.startswith(relays) for p in kube_api.paths), "control to list Relay resources", 10)
        assert all(p.startswith(relays) for p in kube_api.paths), kube_api.paths
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=10)
        kube_api.close()


# --- relays: config.relays on ingests, Relay resources reconciled by control ---------------

CRD_PATH = CHART / "crds" / "relay.yaml"
RELAY_RULES = [
    {"apiGroups": ["liverelay.io"], "resources": ["relays"], "verbs": ["get", "list", "watch", "patch", "update"]},
    {"apiGroups": ["liverelay.io"], "resources": ["relays/status"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": ["liverelay.io"], "resources": ["relays/finalizers"], "verbs": ["update"]},
]
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def relay_crd():
    return yaml.safe_load(CRD_PATH.read_text())


def pod_specs(docs):
    """Every pod template (and pod) of a render, by kind/name."""
    out = {}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            out[f'{d["kind"]}/{d["metadata"]["name"]}'] = d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            out[f'Pod/{d["metadata"]["name"]}'] = d["spec"]
    return out


def test_relay_crd_is_shipped_with_the_expected_names():
    text = CRD_PATH.read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert len(docs) == 1
    crd = docs[0]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1" and crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "relays.liverelay.io"
    spec = crd["spec"]
    assert spec["group"] == "liverelay.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "Relay" and spec["names"]["plural"] == "relays"
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = [(c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Kind", ".spec.kind"),
        ("Stream", ".spec.stream"),
        ("State", ".status.state"),
        ("Owner", ".status.owner"),
        ("Attempts", ".status.attempts"),
    ]
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    assert set(schema["spec"]["required"]) == {"kind", "url", "stream"}
    assert set(schema["status"]["properties"]) >= {
        "relayId", "state", "owner", "lastError", "attempts", "bytesIn", "bytesOut", "observedGeneration",
    }
    kubernetes_validate.validate(crd, KUBE_VERSION, strict=True)
    # What Helm installs from crds/ (a render leaves it out) is this file.
    assert [name for name, _ in crds()] == ["crds/relay.yaml"]
    assert yaml.safe_load(crds()[0][1]) == crd


def test_k8s_base_includes_the_crd_and_the_rbac():
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["crds.yaml", "liverelay.yaml"], "the CRD before the objects"
    docs = [d for d in yaml.safe_load_all((K8S / "base" / "crds.yaml").read_text()) if d]
    assert docs == [relay_crd()]
    base = [d for d in yaml.safe_load_all((K8S / "base" / "liverelay.yaml").read_text()) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in base}
    assert {("ServiceAccount", "liverelay-control"), ("Role", "liverelay-control"), ("RoleBinding", "liverelay-control")} <= kinds
    control = of_kind(base, "Deployment")["liverelay-control"]
    assert control["spec"]["template"]["spec"]["serviceAccountName"] == "liverelay-control"
    assert env(control)["LIVERELAY_CONTROL__RELAY_RESOURCES"]["value"] == "true"


def test_relay_resources_rbac_is_namespaced_and_exact():
    docs = objects(render(namespace="media"))
    assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")
    assert set(of_kind(docs, "ServiceAccount")) == {"liverelay-control"}
    assert of_kind(docs, "ServiceAccount")["liverelay-control"]["automountServiceAccountToken"] is False
    role = of_kind(docs, "Role")
    assert set(role) == {"liverelay-control"}
    assert role["liverelay-control"]["rules"] == RELAY_RULES
    binding = of_kind(docs, "RoleBinding")
    assert set(binding) == {"liverelay-control"}
    assert binding["liverelay-control"]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "liverelay-control",
    }
    assert binding["liverelay-control"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "liverelay-control", "namespace": "media"}
    ]
    # Only the control pod uses the account and gets a token; every other pod has none.
    for name, pod in pod_specs(docs).items():
        if name == "Deployment/liverelay-control":
            assert pod["serviceAccountName"] == "liverelay-control"
            assert pod["automountServiceAccountToken"] is True
        else:
            assert "serviceAccountName" not in pod, name
            assert pod["automountServiceAccountToken"] is False, name
    e = env(of_kind(docs, "Deployment")["liverelay-control"])
    assert e["LIVERELAY_CONTROL__RELAY_RESOURCES"]["value"] == "true"


@pytest.mark.parametrize("variant", ["relay-resources-disabled", "control-disabled", "play-tokens-without-control"])
def test_no_rbac_without_relay_resources(variant):
    docs = objects(render(VARIANTS[variant]))
    assert not [d for d in docs if d["kind"] in RBAC_KINDS]
    for name, pod in pod_specs(docs).items():
        assert "serviceAccountName" not in pod, name
        assert pod["automountServiceAccountToken"] is False, name
    for d in of_kind(docs, "Deployment").values():
        assert "LIVERELAY_CONTROL__RELAY_RESOURCES" not in env(d)


def test_control_reaches_the_api_server():
    """The chart's NetworkPolicies restrict ingress only: control's egress to the API server
    (and everyone's to Redis, upstreams and push targets) stays open."""
    for values in ({}, VARIANTS["stream-keys-play-tokens"]):
        for policy in of_kind(objects(render(values)), "NetworkPolicy").values():
            assert policy["spec"]["policyTypes"] == ["Ingress"], policy["metadata"]["name"]
            assert "egress" not in policy["spec"]


def test_relay_resources_setting_is_read_by_the_binary(tmp_path):
    docs = objects(render())
    control = of_kind(docs, "Deployment")["liverelay-control"]
    config = of_kind(docs, "ConfigMap")["liverelay-config"]["data"]["liverelay.yaml"]
    settings = run_settings(BINARY, "control", config, process_env(control, docs, **POD_FIELDS), tmp_path)
    assert settings["control"]["relay_resources"] is True
    docs = objects(render(VARIANTS["relay-resources-disabled"]))
    control = of_kind(docs, "Deployment")["liverelay-control"]
    settings = run_settings(BINARY, "control", config, process_env(control, docs, **POD_FIELDS), tmp_path)
    assert settings["control"]["relay_resources"] is False
    # With webhooks the settings come from a Secret; the environment still turns it on.
    values = VARIANTS["webhooks"] | {"control": VARIANTS["webhooks"]["control"] | {"existingSecret": ""}}
    docs = objects(render(values))
    control = of_kind(docs, "Deployment")["liverelay-control"]
    settings = run_settings(
        BINARY,
        "control",
        secret_data(docs, "liverelay-control-webhooks", "liverelay.yaml"),
        process_env(control, docs, **POD_FIELDS),
        tmp_path,
    )
    assert settings["control"]["relay_resources"] is True
    assert len(settings["control"]["webhooks"]) == 2


def test_config_relays_render_into_the_ingest_settings(tmp_path):
    docs = objects(render(VARIANTS["relays"]))
    config = of_kind(docs, "ConfigMap")["liverelay-config"]["data"]["liverelay.yaml"]
    assert yaml.safe_load(config)["relays"] == VARIANTS["relays"]["config"]["relays"]
    ingest = of_kind(docs, "Deployment")["liverelay-ingest"]
    assert ingest["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == "liverelay-config"
    settings = run_settings(BINARY, "ingest", config, process_env(ingest, docs, **POD_FIELDS), tmp_path)
    pull, push = settings["relays"]
    assert pull == VARIANTS["relays"]["config"]["relays"][0]
    # --print-config shows a push target as the relay's logs do: the stream key cut short.
    assert (push["kind"], push["url"], push["stream"], push["mode"]) == (
        "push", "rtmp://a.rtmp.youtube.com:1935/live2/STRE…", "live/foo", "static",
    )
    # Only ingests run them: a change rolls ingests, not edges or control.
    default = {d["metadata"]["name"]: d for d in of_kind(objects(render()), "Deployment").values()}
    changed = of_kind(docs, "Deployment")

    def checksum(d):
        return d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(changed["liverelay-ingest"]) != checksum(default["liverelay-ingest"])
    assert checksum(changed["liverelay-edge"]) == checksum(default["liverelay-edge"])
    assert checksum(changed["liverelay-control"]) == checksum(default["liverelay-control"])
    # Empty: the settings file carries no `relays` at all (as before the list existed).
    assert "relays" not in yaml.safe_load(of_kind(objects(render()), "ConfigMap")["liverelay-config"]["data"]["liverelay.yaml"])
    # Control's webhook settings leave them out (control does not run relays).
    values = copy.deepcopy(VARIANTS["relays"]) | {"control": {"webhooks": [{"url": "https://x/hook"}]}}
    docs = objects(render(values))
    assert "relays" not in yaml.safe_load(secret_data(docs, "liverelay-control-webhooks", "liverelay.yaml"))


def test_values_schema_rejects_bad_relays():
    good = {"kind": "pull", "url": "rtmp://upstream/app/name", "stream": "live/foo"}
    url_pattern = "does not match pattern '^rtmp://[^/?#]+/[^/?#]+/[^?#].*$'"
    with Chart.load(str(CHART)) as chart:
        chart.validate_schema(VARIANTS["relays"])
        chart.validate_schema({"config": {"relays": [good]}})
        bad_entries = [
            ({"url": "rtmp://upstream/app/name", "stream": "live/foo"}, "", "missing property 'kind'"),
            (good | {"kind": "mirror"}, "/kind", "value must be one of 'pull', 'push'"),
            (good | {"url": "http://upstream/app/name"}, "/url", f"'http://upstream/app/name' {url_pattern}"),
            (good | {"url": "rtmp://upstream/app"}, "/url", f"'rtmp://upstream/app' {url_pattern}"),  # no stream name
            (good | {"stream": "foo"}, "/stream", "'foo' does not match pattern '^[^/]+/.+$'"),  # not app/name
            (good | {"mode": "sometimes"}, "/mode", "value must be one of 'static', 'on-demand'"),
            (good | {"kind": "push", "mode": "on-demand"}, "/mode", "value must be 'static'"),  # pulls only
            (good | {"initial_backoff_ms": 0}, "/initial_backoff_ms", "minimum: got 0, want 1"),
            (good | {"stall_timeout_ms": 50}, "/stall_timeout_ms", "minimum: got 50, want 100"),
            (good | {"max_attempts": "ten"}, "/max_attempts", "got string, want integer"),
            (good | {"lingerSecs": 10}, "", "additional properties 'lingerSecs' not allowed"),  # camelCase: resources only
            ({k: v for k, v in good.items() if k != "stream"}, "", "missing property 'stream'"),
        ]
        for entry, at, problem in bad_entries:
            rejects(chart, {"config": {"relays": [entry]}}, f"/config/relays/0{at}", problem)
        rejects(chart, {"config": {"relays": good}}, "/config/relays", "got object, want array")


def crd_json_schema(node):
    """The CRD's structural schema as JSON Schema, as strict as `kubectl apply` (server-side
    field validation): nullable fields take null, unknown fields are errors."""
    node = {k: v for k, v in node.items() if k not in ("format", "description", "title", "default")}
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    if "properties" in node:
        node["properties"] = {k: crd_json_schema(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
    if "items" in node:
        node["items"] = crd_json_schema(node["items"])
    return node


def example_relays():
    return [d for d in yaml.safe_load_all((K8S / "examples" / "relay.yaml").read_text()) if d]


def test_example_relays_match_the_crd():
    crd = relay_crd()
    [version] = crd["spec"]["versions"]
    schema = crd_json_schema(version["schema"]["openAPIV3Schema"])
    schema["properties"] |= {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    validator = jsonschema.Draft7Validator(schema)
    relays = example_relays()
    assert [r["metadata"]["name"] for r in relays] == ["camera", "camera-to-youtube"]
    for relay in relays:
        assert relay["apiVersion"] == f'{crd["spec"]["group"]}/{version["name"]}'
        assert relay["kind"] == crd["spec"]["names"]["kind"]
        assert set(relay["metadata"]) == {"name"}, "namespaced: applied with -n"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", relay["metadata"]["name"])
        errors = [e.message for e in validator.iter_errors(relay)]
        assert errors == [], (relay["metadata"]["name"], errors)
    # The check itself refuses what the API server would.
    wrong = copy.deepcopy(relays[0])
    wrong["spec"]["reconnect"]["maxAttempt"] = 3
    del wrong["spec"]["url"]
    wrong["spec"]["kind"] = "mirror"
    assert len(list(validator.iter_errors(wrong))) == 3


def test_example_relays_are_accepted_by_the_binary(tmp_path):
    """The examples' specs, as the config entries control declares them (snake_case, reconnect
    flattened), pass the binary's relay checks: they would not end up `invalid`."""
    entries = []
    for relay in example_relays():
        spec = copy.deepcopy(relay["spec"])
        reconnect = spec.pop("reconnect", {})
        flat = spec | reconnect
        entries.append({re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), k): v for k, v in flat.items()})
    config = tmp_path / "relays.yaml"
    config.write_text(yaml.safe_dump({"relays": entries}))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIVERELAY")}
    out = subprocess.run(
        [str(BINARY), "ingest", f"--config={config}", "--print-config"], capture_output=True, text=True, env=clean
    )
    assert out.returncode == 0, out.stderr
    relays = json.loads(out.stdout)["relays"]
    assert [(r["kind"], r["stream"], r["mode"]) for r in relays] == [("pull", "live/foo", "static"), ("push", "live/foo", "static")]
    assert relays[0]["max_attempts"] == 10 and relays[0]["stall_timeout_ms"] == 10000
