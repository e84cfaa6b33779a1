"""The chart's TLS values (README "TLS"): RTMPS listeners and Service ports, TLS and mutual TLS
between pods (relay and control gRPC), the Secrets mounted where each pod needs them, and
cert-manager Certificates; rendered with the real Helm engine and validated like the rest."""

import re

import kubernetes_validate
import pytest
from helm_python.chart import Chart, lint
from helm_python.errors import HelmRenderError, HelmValuesError

from render import CHART, objects, render
from test_chart import CRD_KINDS, KUBE_VERSION, container, env, hook_pods, of_kind

ISSUER = {"name": "letsencrypt", "kind": "ClusterIssuer"}
VARIANTS = {
    "rtmps": {"rtmps": {"enabled": True, "existingSecret": "rtmps-cert"}},
    "rtmps-only-cert-manager": {
        "rtmps": {
            "enabled": True,
            "only": True,
            "servicePort": 1936,
            "certManager": {"enabled": True, "issuerRef": ISSUER, "dnsNames": ["live.example.com"]},
        }
    },
    "https": {
        "httpTls": {
            "enabled": True,
            "existingSecret": "http-cert",
            "serviceMonitorTlsConfig": {"serverName": "liverelay-http"},
        },
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
    "upstream-tls-files": {
        "extraVolumes": [{"name": "upstream-tls", "secret": {"secretName": "upstream-tls"}}],
        "extraVolumeMounts": [{"name": "upstream-tls", "mountPath": "/etc/liverelay/upstream", "readOnly": True}],
    },
    "mutual-tls-cert-manager": {
        "relayTls": {
            "enabled": True,
            "serverName": "liverelay.cluster.internal",
            "mutual": True,
            "certManager": {"enabled": True, "issuerRef": {"name": "cluster-ca", "kind": "Issuer"}},
        }
    },
}


def ports(obj, spec_path):
    spec = obj["spec"]
    for key in spec_path:
        spec = spec[key]
    return {p["name"]: p for p in spec}


@pytest.mark.parametrize("variant", VARIANTS)
def test_tls_variants_lint_and_validate(variant):
    report = lint(str(CHART), VARIANTS[variant], strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    for doc in objects(render(VARIANTS[variant])):
        if doc["kind"] == "Certificate" or doc["kind"] in CRD_KINDS:
            continue  # kinds from CRDs (cert-manager, Prometheus Operator); checked field by field below
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_rtmps_listener_service_port_and_secret():
    docs = objects(render(VARIANTS["rtmps"]))
    for role in ("ingest", "edge"):
        d = of_kind(docs, "Deployment")[f"liverelay-{role}"]
        e = env(d)
        assert e["LIVERELAY_RTMP__TLS_LISTEN"]["value"] == "0.0.0.0:1936"
        assert e["LIVERELAY_RTMP__TLS_CERT"]["value"] == "/etc/liverelay/rtmps/tls.crt"
        assert e["LIVERELAY_RTMP__TLS_KEY"]["value"] == "/etc/liverelay/rtmps/tls.key"
        assert "LIVERELAY_RTMP__TLS_ONLY" not in e
        assert {p["name"] for p in container(d)["ports"]} >= {"rtmp", "rtmps"}
        mounts = {m["name"]: m for m in container(d)["volumeMounts"]}
        assert mounts["rtmps-tls"]["mountPath"] == "/etc/liverelay/rtmps"
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        assert volumes["rtmps-tls"]["secret"]["secretName"] == "rtmps-cert"
        svc = ports(of_kind(docs, "Service")[f"liverelay-{role}"], ["ports"])
        assert (svc["rtmp"]["port"], svc["rtmps"]["port"], svc["rtmps"]["targetPort"]) == (1935, 443, "rtmps")
        policy = of_kind(docs, "NetworkPolicy")[f"liverelay-{role}"]
        assert {"port": "rtmps", "protocol": "TCP"} in policy["spec"]["ingress"][0]["ports"]
    assert "Certificate" not in {d["kind"] for d in docs}


def test_rtmps_only_closes_the_plain_port_and_cert_manager_issues_the_secret():
    docs = objects(render(VARIANTS["rtmps-only-cert-manager"]))
    cert = of_kind(docs, "Certificate")["liverelay-rtmps-tls"]
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["spec"]["secretName"] == "liverelay-rtmps-tls"
    assert cert["spec"]["dnsNames"] == ["live.example.com"]
    assert cert["spec"]["issuerRef"] == {"name": "letsencrypt", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    for role in ("ingest", "edge"):
        d = of_kind(docs, "Deployment")[f"liverelay-{role}"]
        assert env(d)["LIVERELAY_RTMP__TLS_ONLY"]["value"] == "true"
        assert {p["name"] for p in container(d)["ports"]} == {"rtmps", "http"} | ({"grpc"} if role == "ingest" else {"public-http"})
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        assert volumes["rtmps-tls"]["secret"]["secretName"] == "liverelay-rtmps-tls"
        svc = ports(of_kind(docs, "Service")[f"liverelay-{role}"], ["ports"])
        assert set(svc) - {"public-http"} == {"rtmps"} and svc["rtmps"]["port"] == 1936
        policy = of_kind(docs, "NetworkPolicy")[f"liverelay-{role}"]
        assert {"port": "rtmp", "protocol": "TCP"} not in policy["spec"]["ingress"][0]["ports"]


def test_https_on_the_http_port_and_probes_that_speak_it():
    docs = objects(render(VARIANTS["https"]))
    for name, d in of_kind(docs, "Deployment").items():
        c = container(d)
        for probe, path in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
            assert c[probe]["httpGet"] == {"path": path, "port": "http", "scheme": "HTTPS"}, (name, probe)
        e = env(d)
        assert e["LIVERELAY_HTTP__TLS_CERT"]["value"] == "/etc/liverelay/https/tls.crt", name
        assert e["LIVERELAY_HTTP__TLS_KEY"]["value"] == "/etc/liverelay/https/tls.key", name
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        assert mounts["http-tls"]["mountPath"] == "/etc/liverelay/https", name
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        assert volumes["http-tls"]["secret"]["secretName"] == "http-cert", name
    monitor = of_kind(docs, "ServiceMonitor")["liverelay"]["spec"]["endpoints"][0]
    assert (monitor["scheme"], monitor["tlsConfig"]) == ("https", {"serverName": "liverelay-http"})
    hooks = hook_pods(VARIANTS["https"])
    assert hooks["liverelay-test-readyz"]["spec"]["containers"][0]["command"][-1] == "https://liverelay-http:8080/readyz"
    control_env = {e["name"]: e for e in hooks["liverelay-test-control"]["spec"]["containers"][0]["env"]}
    assert control_env["CONTROL"]["value"] == "https://liverelay-control:8080"
    # Without httpTls: plain HTTP probes (the kubelet's default scheme) and no certificate.
    for name, d in of_kind(objects(render()), "Deployment").items():
        c = container(d)
        assert "scheme" not in c["readinessProbe"]["httpGet"], name
        assert not any(k.startswith("LIVERELAY_HTTP__TLS") for k in env(d)), name


def test_extra_volumes_bring_relay_tls_files_to_every_pod():
    """The files a Relay's spec.tls (or a relay's tls_ca, tls_client_cert) names by path."""
    docs = objects(render(VARIANTS["upstream-tls-files"]))
    for name, d in of_kind(docs, "Deployment").items():
        mounts = {m["name"]: m for m in container(d)["volumeMounts"]}
        assert mounts["upstream-tls"] == {"name": "upstream-tls", "mountPath": "/etc/liverelay/upstream", "readOnly": True}, name
        assert "config" in mounts, name
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        assert volumes["upstream-tls"]["secret"]["secretName"] == "upstream-tls", name
        assert "config" in volumes, name


def test_mutual_tls_between_pods_with_cert_manager():
    docs = objects(render(VARIANTS["mutual-tls-cert-manager"]))
    cert = of_kind(docs, "Certificate")["liverelay-cluster-tls"]
    assert cert["spec"]["dnsNames"] == ["liverelay.cluster.internal"]
    assert {"server auth", "client auth"} <= set(cert["spec"]["usages"])
    assert cert["spec"]["issuerRef"]["kind"] == "Issuer"
    deployments = of_kind(docs, "Deployment")
    ingest, edge, control = (deployments[f"liverelay-{r}"] for r in ("ingest", "edge", "control"))
    tls = "/etc/liverelay/tls/"
    # Ingest: serves the relay with client certificates required; calls control over TLS.
    assert {k: v["value"] for k, v in env(ingest).items() if "TLS" in k} == {
        "LIVERELAY_CLUSTER__TLS_CERT": tls + "tls.crt",
        "LIVERELAY_CLUSTER__TLS_KEY": tls + "tls.key",
        "LIVERELAY_CLUSTER__TLS_CLIENT_CA": tls + "ca.crt",
        "LIVERELAY_CLUSTER__TLS_CA": tls + "ca.crt",
        "LIVERELAY_CLUSTER__TLS_DOMAIN": "liverelay.cluster.internal",
        "LIVERELAY_CLUSTER__TLS_CLIENT_CERT": tls + "tls.crt",
        "LIVERELAY_CLUSTER__TLS_CLIENT_KEY": tls + "tls.key",
    }
    assert env(ingest)["LIVERELAY_AUTH__CONTROL_URL"]["value"] == "https://liverelay-control:50051"
    # Edge: a relay client showing its certificate.
    assert {k: v["value"] for k, v in env(edge).items() if "TLS" in k} == {
        "LIVERELAY_CLUSTER__TLS_CA": tls + "ca.crt",
        "LIVERELAY_CLUSTER__TLS_DOMAIN": "liverelay.cluster.internal",
        "LIVERELAY_CLUSTER__TLS_CLIENT_CERT": tls + "tls.crt",
        "LIVERELAY_CLUSTER__TLS_CLIENT_KEY": tls + "tls.key",
    }
    # Control: serves gRPC over TLS, client certificates required.
    assert {k: v["value"] for k, v in env(control).items() if "TLS" in k} == {
        "LIVERELAY_CLUSTER__TLS_CERT": tls + "tls.crt",
        "LIVERELAY_CLUSTER__TLS_KEY": tls + "tls.key",
        "LIVERELAY_CLUSTER__TLS_CLIENT_CA": tls + "ca.crt",
    }
    for d in (ingest, edge, control):
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        assert volumes["relay-tls"]["secret"]["secretName"] == "liverelay-cluster-tls"
        mounts = {m["name"]: m for m in container(d)["volumeMounts"]}
        assert mounts["relay-tls"]["mountPath"] == "/etc/liverelay/tls"
    grpc = ports(of_kind(docs, "Service")["liverelay-control"], ["ports"])["grpc"]
    assert grpc["appProtocol"] == "kubernetes.io/h2"


def test_tls_values_are_checked():
    with Chart.load(str(CHART)) as chart:
        for values, at, problem in [
            ({"rtmps": {"servicePort": 0}}, "/rtmps/servicePort", "minimum: got 0, want 1"),
            ({"rtmps": {"tls": True}}, "/rtmps", "additional properties 'tls' not allowed"),
            ({"extraVolumeMounts": [{"name": "x"}]}, "/extraVolumeMounts/0", "missing property 'mountPath'"),
            (
                {"relayTls": {"certManager": {"issuerRef": {"name": "x", "kind": "Vault"}}}},
                "/relayTls/certManager/issuerRef/kind",
                "value must be one of 'Issuer', 'ClusterIssuer'",
            ),
        ]:
            with pytest.raises(HelmValuesError, match=re.escape(f"- at '{at}': {problem}\n")):
                chart.validate_schema(values)
    for values, message in [
        ({"rtmps": {"enabled": True}}, "rtmps.existingSecret is required"),
        ({"rtmps": {"enabled": True, "certManager": {"enabled": True, "issuerRef": ISSUER}}}, "rtmps.certManager.dnsNames is required"),
        ({"relayTls": {"enabled": True, "certManager": {"enabled": True, "issuerRef": ISSUER}}}, "relayTls.serverName is required"),
        ({"httpTls": {"enabled": True}}, "httpTls.existingSecret is required"),
    ]:
        with pytest.raises(HelmRenderError, match=re.escape(message)):
            render(values)
