//! `Relay` resources reconciled by `liverelay control` with kube-runtime, against a stand-in
//! Kubernetes API server (no real one runs here; `support::kube_api` speaks its HTTP and, like a
//! real one, keeps objects per namespace and takes status only through `/status`), with a real
//! redis-server and a real ingest that runs the declared relay.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::kube_api::FakeApi;
use support::redis::RedisServer;
use support::*;

const TOKEN: &str = "test-cluster-token";
/// Control's namespace (its kubeconfig's).
const NS: &str = "default";

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

/// The first status control wrote through `{NS}/{name}/status` that satisfies `want`. What the
/// object shows is not enough: only a write to the status subresource reaches a real server.
fn wait_status_write(
    api: &FakeApi,
    name: &str,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = api.status_writes(NS, name).into_iter().find(|s| want(s)) {
            return status;
        }
        let writes: Vec<String> = api
            .writes()
            .iter()
            .map(|w| {
                format!(
                    "{}/{}{} (status dropped: {}) -> {}",
                    w.namespace,
                    w.name,
                    if w.status_subresource { "/status" } else { "" },
                    w.status_dropped,
                    w.object["status"]
                )
            })
            .collect();
        assert!(
            Instant::now() < deadline,
            "no status write of {name} through /status shows {what}; writes:\n{}",
            writes.join("\n")
        );
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

    // The same name in another namespace: not control's, so never reconciled nor declared.
    let elsewhere = free_port();
    api.apply(
        "other",
        "camera",
        json!({"kind": "pull", "url": format!("rtmp://127.0.0.1:{elsewhere}/app/src"), "stream": "live/other"}),
    );

    // A pull from a server that is not there: it runs on the ingest and keeps retrying.
    let closed = free_port();
    api.apply(
        NS,
        "camera",
        json!({
            "kind": "pull",
            "url": format!("rtmp://127.0.0.1:{closed}/app/src"),
            "stream": "live/k8s",
            "reconnect": {"initialBackoffMs": 200, "maxBackoffMs": 500},
        }),
    );
    let status = wait_status_write(&api, "camera", "the running pod", |s| {
        s["owner"] == "ingest-a" && s["attempts"].as_u64() >= Some(2)
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
    let object = api.object(NS, "camera").unwrap();
    assert_eq!(
        object["metadata"]["finalizers"],
        json!(["liverelay.io/relay"])
    );
    // Control's relay list shows the same relay, held by the ingest.
    let (code, body) = http_request(control.http, "GET", "/v1/relays", Some("admin"), "");
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
        NS,
        "broken",
        json!({"kind": "push", "url": "http://not-rtmp/x", "stream": "live/k8s"}),
    );
    let status = wait_status_write(&api, "broken", "state invalid", |s| s["state"] == "invalid");
    assert!(
        status["lastError"].as_str().unwrap().contains("rtmp"),
        "{status}"
    );
    // `spec.tls` reaches the pod that runs the relay, which reads the files at each attempt:
    // here a CA file that is not there, named in the relay's error.
    let missing_ca = "/nonexistent/liverelay-test-ca.pem";
    api.apply(
        NS,
        "secure",
        json!({
            "kind": "pull",
            "url": format!("rtmps://127.0.0.1:{closed}/app/src"),
            "stream": "live/k8s-tls",
            "tls": {"ca": missing_ca},
            "reconnect": {"initialBackoffMs": 200, "maxBackoffMs": 500},
        }),
    );
    let status = wait_status_write(&api, "secure", "the CA file's error", |s| {
        s["lastError"]
            .as_str()
            .is_some_and(|e| e.starts_with("tls: ") && e.contains(missing_ca))
    });
    assert_eq!(status["owner"], "ingest-a", "{status}");

    let declared = redis
        .cli(&["HKEYS", "liverelay:relays:declared"])
        .unwrap_or_default();
    assert!(
        declared.contains("k8s/default/camera") && !declared.contains("broken"),
        "{declared}"
    );
    // Control reconciled two resources after the other namespace's one was applied: that one
    // was never touched.
    assert!(!declared.contains("k8s/other/"), "{declared}");
    assert!(
        api.writes().iter().all(|w| w.namespace == NS),
        "control wrote outside its namespace"
    );
    let other = api.object("other", "camera").unwrap();
    assert!(
        other["metadata"]["finalizers"].is_null() && other.get("status").is_none(),
        "{other}"
    );
    // Control never asked for a status on the object itself (a real server would drop it).
    let dropped: Vec<Value> = api
        .writes()
        .into_iter()
        .filter(|w| w.status_dropped)
        .map(|w| w.object)
        .collect();
    assert!(
        dropped.is_empty(),
        "status written to the object: {dropped:?}"
    );

    // Deleting the resource stops the relay; the finalizer lets the object go afterwards.
    api.delete(NS, "camera");
    wait(Duration::from_secs(10), "the object to go", || {
        api.object(NS, "camera").is_none().then_some(())
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
    assert!(
        api.object("other", "camera").is_some(),
        "the other namespace's camera is another object"
    );
    drop(runtime);
}

/// The stand-in refuses what a real API server refuses, so the test above cannot pass with a
/// controller that writes status to the object or to another namespace.
#[test]
fn the_stand_in_keeps_status_to_its_subresource_and_objects_to_their_namespace() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = runtime.block_on(FakeApi::start(
        "liverelay.io",
        "v1alpha1",
        "Relay",
        "relays",
    ));
    let spec = json!({"kind": "pull", "url": "rtmp://up/app/src", "stream": "live/a"});
    api.apply(NS, "camera", spec.clone());
    let path =
        |ns: &str, tail: &str| format!("/apis/liverelay.io/v1alpha1/namespaces/{ns}/relays{tail}");
    let send = |method: &str, path: &str, body: Value| {
        http_request(api.addr, method, path, None, &body.to_string())
    };

    // Status on the object: kept out (the label change goes in).
    let (code, body) = send(
        "PATCH",
        &path(NS, "/camera"),
        json!({"metadata": {"labels": {"a": "b"}}, "status": {"state": "forged"}}),
    );
    assert_eq!(code, 200, "{body}");
    let object = api.object(NS, "camera").unwrap();
    assert!(object.get("status").is_none(), "{object}");
    assert_eq!(object["metadata"]["labels"]["a"], "b");
    assert!(api.writes()[0].status_dropped);
    assert!(api.status_writes(NS, "camera").is_empty());

    // Through /status: only the status changes.
    let (code, body) = send(
        "PATCH",
        &path(NS, "/camera/status"),
        json!({"spec": {"stream": "live/b"}, "status": {"state": "live"}}),
    );
    assert_eq!(code, 200, "{body}");
    let object = api.object(NS, "camera").unwrap();
    assert_eq!(object["status"]["state"], "live");
    assert_eq!(object["spec"], spec);
    assert_eq!(api.status_writes(NS, "camera"), [json!({"state": "live"})]);

    // A replacement from an old version is a conflict.
    let mut stale = object.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let (code, body) = send("PUT", &path(NS, "/camera/status"), stale);
    assert_eq!(code, 409, "{body}");

    // Another namespace: not found, and not listed.
    for (method, tail) in [
        ("GET", "/camera"),
        ("PATCH", "/camera"),
        ("PATCH", "/camera/status"),
    ] {
        let (code, body) = send(
            method,
            &path("other", tail),
            json!({"status": {"state": "x"}}),
        );
        assert_eq!(code, 404, "{method} {tail}: {body}");
    }
    let (_, list) = send("GET", &path("other", ""), Value::Null);
    assert_eq!(
        serde_json::from_str::<Value>(&list).unwrap()["items"],
        json!([]),
        "{list}"
    );
    assert_eq!(api.writes().len(), 2, "nothing else was written");
    drop(runtime);
}
