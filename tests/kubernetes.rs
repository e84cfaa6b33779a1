//! `Relay` resources reconciled by `liverelay control` with kube-runtime, against a stand-in
//! Kubernetes API server (no real one runs here; `support::kube_api` speaks its HTTP), with a
//! real redis-server and a real ingest that runs the declared relay.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::kube_api::FakeApi;
use support::redis::RedisServer;
use support::*;

const TOKEN: &str = "test-cluster-token";

fn wait<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn relay_resources_start_report_and_stop_relays() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = runtime.block_on(FakeApi::start(
        "liverelay.io",
        "v1alpha1",
        "Relay",
        "relays",
    ));
    let dir = TempDir::new("kube");
    let kubeconfig = dir.path("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let redis = RedisServer::start();
    let url = redis.url();
    let control = Server::start_role(
        "control",
        &["--redis-url", &url],
        &[
            ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
            ("LIVERELAY_ADMIN_TOKEN", "admin"),
            ("LIVERELAY_CONTROL__RELAY_RESOURCES", "true"),
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ],
    );
    let ingest = Server::start_role(
        "ingest",
        &["--redis-url", &url],
        &[("LIVERELAY_CLUSTER_TOKEN", TOKEN), ("POD_NAME", "ingest-a")],
    );
    wait(Duration::from_secs(10), "the controller's watch", || {
        (api.watchers() > 0).then_some(())
    });

    // A pull from a server that is not there: it runs on the ingest and keeps retrying.
    let closed = free_port();
    api.apply(
        "camera",
        json!({
            "kind": "pull",
            "url": format!("rtmp://127.0.0.1:{closed}/app/src"),
            "stream": "live/k8s",
            "reconnect": {"initialBackoffMs": 200, "maxBackoffMs": 500},
        }),
    );
    let status = wait(Duration::from_secs(20), "the running pod's status", || {
        let object = api.object("camera")?;
        let status = object["status"].clone();
        (status["owner"] == "ingest-a" && status["attempts"].as_u64() >= Some(2)).then_some(status)
    });
    assert!(
        ["connecting", "backing_off"].contains(&status["state"].as_str().unwrap()),
        "{status}"
    );
    assert!(
        status["lastError"].as_str().is_some_and(|e| !e.is_empty()),
        "{status}"
    );
    assert_eq!(status["observedGeneration"], 1);
    let relay_id = status["relayId"].as_str().unwrap().to_string();
    let object = api.object("camera").unwrap();
    assert_eq!(
        object["metadata"]["finalizers"],
        json!(["liverelay.io/relay"])
    );
    // Control's relay list shows the same relay, held by the ingest.
    let (code, body) = control.http_get("/v1/relays").unwrap();
    assert_eq!(code, 200, "{body}");
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        rows["relays"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == relay_id.as_str() && r["owner"] == "ingest-a"),
        "{rows}"
    );

    // An invalid resource is reported as such and declares nothing.
    api.apply(
        "broken",
        json!({"kind": "push", "url": "http://not-rtmp/x", "stream": "live/k8s"}),
    );
    let status = wait(Duration::from_secs(10), "the invalid status", || {
        let status = api.object("broken")?["status"].clone();
        (status["state"] == "invalid").then_some(status)
    });
    assert!(
        status["lastError"].as_str().unwrap().contains("rtmp"),
        "{status}"
    );
    let declared = redis
        .cli(&["HKEYS", "liverelay:relays:declared"])
        .unwrap_or_default();
    assert!(
        declared.contains("k8s/default/camera") && !declared.contains("broken"),
        "{declared}"
    );

    // Deleting the resource stops the relay; the finalizer lets the object go afterwards.
    api.delete("camera");
    wait(Duration::from_secs(10), "the object to go", || {
        api.object("camera").is_none().then_some(())
    });
    let declared = redis
        .cli(&["HKEYS", "liverelay:relays:declared"])
        .unwrap_or_default();
    assert!(!declared.contains("camera"), "{declared}");
    assert!(
        ingest.wait_log(
            "relay no longer declared; stopping it",
            Duration::from_secs(10)
        ),
        "{}",
        ingest.log()
    );
    drop(runtime);
}
