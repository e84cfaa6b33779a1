//! A stand-in for the Kubernetes API server, enough for a controller of one namespaced custom
//! resource: list, watch (a stream of events), JSON and merge patches of objects and of their
//! status, and deletion held back by finalizers. No real API server runs here; this one speaks
//! the same HTTP so the real kube client and kube-runtime controller run against it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

#[derive(Default)]
struct Store {
    objects: BTreeMap<String, Value>,
    revision: u64,
    watchers: Vec<mpsc::UnboundedSender<Value>>,
    /// Every status written, in order.
    statuses: Vec<Value>,
}

impl Store {
    fn bump(&mut self, object: &mut Value) {
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
    }

    fn emit(&mut self, kind: &str, object: &Value) {
        let event = json!({ "type": kind, "object": object });
        self.watchers.retain(|w| w.send(event.clone()).is_ok());
    }
}

#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

impl FakeApi {
    /// Serves `/apis/{group}/{version}/namespaces/{ns}/{plural}` on a free port.
    pub async fn start(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &str,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = Self {
            addr: listener.local_addr().unwrap(),
            store: Arc::default(),
            group,
            version,
            kind,
        };
        let base = format!("/apis/{group}/{version}/namespaces/{{ns}}/{plural}");
        let router = axum::Router::new()
            .route(&base, get(list_or_watch))
            .route(
                &format!("{base}/{{name}}"),
                get(get_one).patch(patch_object),
            )
            .route(
                &format!("{base}/{{name}}/status"),
                axum::routing::patch(patch_status),
            )
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        api
    }

    /// A kubeconfig pointing at this server (plain HTTP, no credentials).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.addr
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap()
    }

    pub fn watchers(&self) -> usize {
        let mut store = self.lock();
        store.watchers.retain(|w| !w.is_closed());
        store.watchers.len()
    }

    /// `kubectl apply`: creates the object (or replaces its spec, bumping the generation).
    pub fn apply(&self, name: &str, spec: Value) {
        let mut store = self.lock();
        let (kind, mut object) = match store.objects.get(name).cloned() {
            Some(mut o) => {
                let generation = o["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                o["metadata"]["generation"] = json!(generation);
                o["spec"] = spec;
                ("MODIFIED", o)
            }
            None => (
                "ADDED",
                json!({
                    "apiVersion": format!("{}/{}", self.group, self.version),
                    "kind": self.kind,
                    "metadata": {
                        "name": name,
                        "namespace": "default",
                        "uid": format!("uid-{name}"),
                        "generation": 1,
                        "finalizers": null,
                    },
                    "spec": spec,
                }),
            ),
        };
        store.bump(&mut object);
        store.objects.insert(name.to_string(), object.clone());
        store.emit(kind, &object);
    }

    /// `kubectl delete`: gone at once without finalizers, else marked and held until they go.
    pub fn delete(&self, name: &str) {
        let mut store = self.lock();
        let Some(mut object) = store.objects.get(name).cloned() else {
            return;
        };
        object["metadata"]["deletionTimestamp"] = json!("2026-11-22T00:00:00Z");
        store.bump(&mut object);
        finish(&mut store, name, object);
    }

    pub fn object(&self, name: &str) -> Option<Value> {
        self.lock().objects.get(name).cloned()
    }

    pub fn statuses(&self) -> Vec<Value> {
        self.lock().statuses.clone()
    }
}

/// Stores `object`, or removes it when deletion is due and no finalizer holds it.
fn finish(store: &mut Store, name: &str, object: Value) {
    let deleting = !object["metadata"]["deletionTimestamp"].is_null();
    let held = object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if deleting && !held {
        store.objects.remove(name);
        store.emit("DELETED", &object);
    } else {
        store.objects.insert(name.to_string(), object.clone());
        store.emit("MODIFIED", &object);
    }
}

async fn list_or_watch(
    State(api): State<FakeApi>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let (tx, rx) = mpsc::unbounded_channel::<Value>();
        api.lock().watchers.push(tx);
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
            .map(|e| Ok::<_, Infallible>(Bytes::from(format!("{e}\n"))));
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let store = api.lock();
    let list = json!({
        "apiVersion": format!("{}/{}", api.group, api.version),
        "kind": format!("{}List", api.kind),
        "metadata": { "resourceVersion": store.revision.to_string() },
        "items": store.objects.values().cloned().collect::<Vec<_>>(),
    });
    axum::Json(list).into_response()
}

async fn get_one(
    State(api): State<FakeApi>,
    Path((_ns, name)): Path<(String, String)>,
) -> Response {
    match api.object(&name) {
        Some(o) => axum::Json(o).into_response(),
        None => failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{name} not found"),
        ),
    }
}

fn failure(code: StatusCode, reason: &str, message: String) -> Response {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code.as_u16(), "message": message});
    (code, axum::Json(status)).into_response()
}

fn apply_patch(object: &mut Value, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let patch: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if kind.starts_with("application/json-patch+json") {
        let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| e.to_string())?;
        json_patch::patch(object, &patch).map_err(|e| e.to_string())
    } else {
        json_patch::merge(object, &patch);
        Ok(())
    }
}

/// A PATCH of the object (`status: false`) or of its status subresource, which changes only
/// the status.
fn patch(api: &FakeApi, name: &str, headers: &HeaderMap, body: &[u8], status: bool) -> Response {
    let mut store = api.lock();
    let Some(mut object) = store.objects.get(name).cloned() else {
        return failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{name} not found"),
        );
    };
    let spec = object["spec"].clone();
    if let Err(e) = apply_patch(&mut object, headers, body) {
        return failure(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e);
    }
    store.bump(&mut object);
    if status {
        object["spec"] = spec;
        store.statuses.push(object["status"].clone());
    }
    finish(&mut store, name, object.clone());
    axum::Json(object).into_response()
}

async fn patch_object(
    State(api): State<FakeApi>,
    Path((_ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    patch(&api, &name, &headers, &body, false)
}

async fn patch_status(
    State(api): State<FakeApi>,
    Path((_ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    patch(&api, &name, &headers, &body, true)
}
