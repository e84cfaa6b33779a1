use liverelay_redis::WebhookEvent;
use liverelay_types::StreamId;
use serde::{Deserialize, Serialize};

/// A live stream as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord {
    pub app: String,
    pub name: String,
    /// Pod id of the ingest that owns the stream.
    pub owner: String,
    /// Where edges subscribe to it (host:port of the owner's relay gRPC server).
    pub grpc_addr: String,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Fencing number: set by the registry on every claim, strictly increasing per stream.
    #[serde(default)]
    pub generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_codec: Option<String>,
    /// Which run of the owner's process made the claim (set by the Redis registry): a claim
    /// elsewhere may take the stream over once that run no longer says it is alive
    /// ([`crate::Presence`]), also when a restarted process came back under the same pod id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
}

impl StreamRecord {
    pub fn key(&self) -> StreamId {
        StreamId::new(self.app.clone(), self.name.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum RegistryEvent {
    Published {
        app: String,
        name: String,
        owner: String,
        generation: u64,
    },
    Unpublished {
        app: String,
        name: String,
        owner: String,
        generation: u64,
    },
    /// A viewer asked for a stream that is live nowhere: whoever can bring it in (an on-demand
    /// static pull) should start. Repeated while the viewer waits.
    Wanted { app: String, name: String },
}

impl RegistryEvent {
    pub fn key(&self) -> StreamId {
        match self {
            Self::Published { app, name, .. }
            | Self::Unpublished { app, name, .. }
            | Self::Wanted { app, name } => StreamId::new(app.clone(), name.clone()),
        }
    }

    /// The `stream.started` / `stream.ended` webhook event of a publish or unpublish: its id
    /// is stable per occurrence (`type:app/name:generation`), so receivers dedupe redeliveries.
    pub fn webhook_event(&self) -> Option<WebhookEvent> {
        let (kind, app, name, owner, generation) = match self {
            Self::Published {
                app,
                name,
                owner,
                generation,
            } => ("stream.started", app, name, owner, generation),
            Self::Unpublished {
                app,
                name,
                owner,
                generation,
            } => ("stream.ended", app, name, owner, generation),
            Self::Wanted { .. } => return None,
        };
        Some(WebhookEvent::new(
            kind,
            format!("{kind}:{app}/{name}:{generation}"),
            serde_json::json!({ "app": app, "stream": name, "ingest": owner, "generation": generation }),
        ))
    }

    pub(crate) fn published(r: &StreamRecord) -> Self {
        Self::Published {
            app: r.app.clone(),
            name: r.name.clone(),
            owner: r.owner.clone(),
            generation: r.generation,
        }
    }

    pub(crate) fn wanted(key: &StreamId) -> Self {
        Self::Wanted {
            app: key.app.clone(),
            name: key.name.clone(),
        }
    }

    pub(crate) fn unpublished(r: &StreamRecord) -> Self {
        Self::Unpublished {
            app: r.app.clone(),
            name: r.name.clone(),
            owner: r.owner.clone(),
            generation: r.generation,
        }
    }
}
