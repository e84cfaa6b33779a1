//! A stand-in for the Kubernetes API server, enough for a controller of one namespaced custom
//! resource with the status subresource: list, watch (a stream of events), JSON and merge
//! patches and replacements of objects and of their status, and deletion held back by
//! finalizers. No real API server runs here; this one speaks the same HTTP so the real kube
//! client and kube-runtime controller run against it, and it refuses what a real one refuses:
//! - objects live in their namespace: a name asked for in another namespace is not found, and a
//!   list or watch sees only its own namespace;
//! - a write to the object never changes its status (the server keeps the old status, as for
//!   a CRD with `subresources: status`), and a write to `/status` changes only the status;
//! - a replacement with a stale `resourceVersion` is a conflict, and one naming another
//!   namespace or name is a bad request.
//!
//! Every accepted write is recorded (`writes`), so a test can assert where a controller wrote.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

/// A write the server accepted (a PATCH or PUT of an object or of its status subresource).
#[derive(Clone, Debug)]
pub struct Write {
    pub namespace: String,
    pub name: String,
    /// To `/status` rather than to the object itself.
    pub status_subresource: bool,
    /// The write asked for a status other than the stored one on the object itself; the server
    /// kept the stored status (a controller doing this never reports anything).
    pub status_dropped: bool,
    /// The object as stored after the write.
    pub object: Value,
}

type Key = (String, String);

#[derive(Default)]
struct Store {
    /// By (namespace, name).
    objects: BTreeMap<Key, Value>,
    revision: u64,
    /// Watches, each of one namespace.
    watchers: Vec<(String, mpsc::UnboundedSender<Value>)>,
    writes: Vec<Write>,
}

impl Store {
    fn bump(&mut self, object: &mut Value) {
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
    }

    fn emit(&mut self, kind: &str, object: &Value) {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let event = json!({ "type": kind, "object": object });
        self.watchers
            .retain(|(ns, w)| ns != namespace || w.send(event.clone()).is_ok());
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
                get(get_one).patch(write_object).put(write_object),
            )
            .route(
                &format!("{base}/{{name}}/status"),
                get(get_one).patch(write_status).put(write_status),
            )
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        api
    }

    /// A kubeconfig pointing at this server (plain HTTP, no credentials), in namespace `default`.
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
        store.watchers.retain(|(_, w)| !w.is_closed());
        store.watchers.len()
    }

    /// `kubectl -n {namespace} apply`: creates the object (or replaces its spec, bumping the
    /// generation).
    pub fn apply(&self, namespace: &str, name: &str, spec: Value) {
        let mut store = self.lock();
        let key = (namespace.to_string(), name.to_string());
        let (kind, mut object) = match store.objects.get(&key).cloned() {
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
                        "namespace": namespace,
                        "uid": format!("uid-{namespace}-{name}"),
                        "generation": 1,
                        "finalizers": null,
                    },
                    "spec": spec,
                }),
            ),
        };
        store.bump(&mut object);
        store.objects.insert(key, object.clone());
        store.emit(kind, &object);
    }

    /// `kubectl -n {namespace} delete`: gone at once without finalizers, else marked and held
    /// until they go.
    pub fn delete(&self, namespace: &str, name: &str) {
        let mut store = self.lock();
        let key = (namespace.to_string(), name.to_string());
        let Some(mut object) = store.objects.get(&key).cloned() else {
            return;
        };
        object["metadata"]["deletionTimestamp"] = json!("2026-11-22T00:00:00Z");
        store.bump(&mut object);
        finish(&mut store, key, object);
    }

    pub fn object(&self, namespace: &str, name: &str) -> Option<Value> {
        let key = (namespace.to_string(), name.to_string());
        self.lock().objects.get(&key).cloned()
    }

    /// Every write accepted so far, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.lock().writes.clone()
    }

    /// The statuses written through `{namespace}/{name}/status`, in order.
    pub fn status_writes(&self, namespace: &str, name: &str) -> Vec<Value> {
        self.writes()
            .into_iter()
            .filter(|w| w.status_subresource && w.namespace == namespace && w.name == name)
            .map(|w| w.object["status"].clone())
            .collect()
    }
}

/// Stores `object`, or removes it when deletion is due and no finalizer holds it.
fn finish(store: &mut Store, key: Key, object: Value) {
    let deleting = !object["metadata"]["deletionTimestamp"].is_null();
    let held = object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if deleting && !held {
        store.objects.remove(&key);
        store.emit("DELETED", &object);
    } else {
        store.objects.insert(key, object.clone());
        store.emit("MODIFIED", &object);
    }
}

async fn list_or_watch(
    State(api): State<FakeApi>,
    Path(namespace): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let (tx, rx) = mpsc::unbounded_channel::<Value>();
        api.lock().watchers.push((namespace, tx));
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
            .map(|e| Ok::<_, Infallible>(Bytes::from(format!("{e}\n"))));
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let store = api.lock();
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|((ns, _), _)| *ns == namespace)
        .map(|(_, o)| o.clone())
        .collect();
    let list = json!({
        "apiVersion": format!("{}/{}", api.group, api.version),
        "kind": format!("{}List", api.kind),
        "metadata": { "resourceVersion": store.revision.to_string() },
        "items": items,
    });
    axum::Json(list).into_response()
}

async fn get_one(
    State(api): State<FakeApi>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match api.object(&namespace, &name) {
        Some(o) => axum::Json(o).into_response(),
        None => not_found(&namespace, &name),
    }
}

fn not_found(namespace: &str, name: &str) -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{name} not found in namespace {namespace}"),
    )
}

fn failure(code: StatusCode, reason: &str, message: String) -> Response {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code.as_u16(), "message": message});
    (code, axum::Json(status)).into_response()
}

/// Why a write is refused: the HTTP status, the reason and the message of a `Status`.
type Refusal = (StatusCode, &'static str, String);

/// The object a PATCH (JSON or merge patch, by content type) or PUT asks for.
fn requested(
    current: &Value,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, Refusal> {
    let invalid = |e: String| (StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e);
    let body: Value = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    if method == Method::PUT {
        let metadata = &body["metadata"];
        for field in ["namespace", "name"] {
            if !metadata[field].is_null() && metadata[field] != current["metadata"][field] {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("the {field} of the object does not match the request"),
                ));
            }
        }
        let version = &metadata["resourceVersion"];
        if !version.is_null() && *version != current["metadata"]["resourceVersion"] {
            return Err((
                StatusCode::CONFLICT,
                "Conflict",
                "the object has been modified; apply your changes to the latest version".into(),
            ));
        }
        // Server-managed metadata stays; what a client may set is replaced.
        let mut kept = current["metadata"].clone();
        for field in ["labels", "annotations", "finalizers"] {
            kept[field] = metadata[field].clone();
        }
        let mut object = body;
        object["metadata"] = kept;
        return Ok(object);
    }
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut object = current.clone();
    if kind.starts_with("application/json-patch+json") {
        let patch: json_patch::Patch =
            serde_json::from_value(body).map_err(|e| invalid(e.to_string()))?;
        json_patch::patch(&mut object, &patch).map_err(|e| invalid(e.to_string()))?;
    } else {
        json_patch::merge(&mut object, &body);
    }
    Ok(object)
}

/// A PATCH or PUT of the object (`status_subresource: false`) or of its status. As a real
/// server does for a CRD with the status subresource: the object's write keeps the stored
/// status (and bumps the generation when the spec changes), the status write keeps everything
/// but the status; a write that changes nothing is not a new version.
fn write(
    api: &FakeApi,
    (namespace, name): Key,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    status_subresource: bool,
) -> Response {
    let mut store = api.lock();
    let key = (namespace.clone(), name.clone());
    let Some(current) = store.objects.get(&key).cloned() else {
        return not_found(&namespace, &name);
    };
    let asked = match requested(&current, method, headers, body) {
        Ok(object) => object,
        Err((code, reason, message)) => return failure(code, reason, message),
    };
    let mut object = current.clone();
    let status_dropped = if status_subresource {
        object["status"] = asked["status"].clone();
        false
    } else {
        let dropped = !asked["status"].is_null() && asked["status"] != current["status"];
        object = asked;
        object["status"] = current["status"].clone();
        if object["spec"] != current["spec"] {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            object["metadata"]["generation"] = json!(generation);
        }
        dropped
    };
    if object.get("status").is_some_and(Value::is_null) {
        object.as_object_mut().unwrap().remove("status");
    }
    if object != current {
        store.bump(&mut object);
        finish(&mut store, key, object.clone());
    }
    store.writes.push(Write {
        namespace,
        name,
        status_subresource,
        status_dropped,
        object: object.clone(),
    });
    axum::Json(object).into_response()
}

async fn write_object(
    State(api): State<FakeApi>,
    Path(key): Path<Key>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write(&api, key, &method, &headers, &body, false)
}

async fn write_status(
    State(api): State<FakeApi>,
    Path(key): Path<Key>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write(&api, key, &method, &headers, &body, true)
}
