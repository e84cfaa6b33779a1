//! The durable queue of webhook events: a Redis Stream (`{prefix}:webhook-events`) every pod
//! appends to (`XADD ... MAXLEN ~`), read by control's replicas through one consumer group, so
//! an event raised while no control runs waits for the next one. Delivery is at least once: an
//! entry leaves the group's pending list (`XACK`) only after delivery, and entries a dead
//! replica held are taken over (`XAUTOCLAIM`) once idle long enough.
//!
//! Each entry names its subject (the stream `app/name`, or the key id): entries of one subject
//! are delivered in order because a replica delivers an entry only when no earlier entry of the
//! same subject is still pending in the group, whoever holds it. `XREADGROUP` hands out entries
//! in id order, so every earlier entry is either pending or acknowledged by then.

use std::collections::HashSet;
use std::time::Duration;

use redis::Value;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use serde::{Deserialize, Serialize};

use crate::{RedisConn, RedisError};

/// One event as webhook endpoints receive it (the request body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Stable per occurrence: a receiver dedupes redeliveries by it.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds, when it happened (not when it was delivered).
    pub created_at: u64,
    pub data: serde_json::Value,
}

impl WebhookEvent {
    pub fn new(kind: &str, id: String, data: serde_json::Value) -> Self {
        Self {
            id,
            kind: kind.to_owned(),
            created_at: liverelay_types::unix_secs(),
            data,
        }
    }
}

/// An event read from the queue, with what the consumer needs to order and acknowledge it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEvent {
    /// The stream entry id.
    pub entry: String,
    /// Events of one subject are delivered in order.
    pub subject: String,
    pub event: WebhookEvent,
}

const SUBJECT: &str = "subject";
const EVENT: &str = "event";

/// The queue's writing side, for every pod.
#[derive(Clone)]
pub struct WebhookQueue {
    conn: RedisConn,
    key: String,
}

impl WebhookQueue {
    /// `{prefix}:webhook-events`.
    pub fn new(conn: RedisConn) -> Self {
        Self {
            key: format!("{}:webhook-events", conn.key_prefix()),
            conn,
        }
    }

    /// Appends an event; the oldest entries go beyond about `redis.webhook_queue_len`.
    pub async fn append(&self, subject: &str, event: &WebhookEvent) -> Result<(), RedisError> {
        let json = serde_json::to_string(event).expect("events serialize");
        self.conn
            .query::<Value>(
                "webhook_enqueue",
                redis::cmd("XADD")
                    .arg(&self.key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.conn.webhook_queue_len())
                    .arg("*")
                    .arg(SUBJECT)
                    .arg(subject)
                    .arg(EVENT)
                    .arg(json),
            )
            .await
            .map(drop)
    }

    /// Joins (creating it if needed) the consumer group `group` as `consumer`. A new group
    /// starts at the oldest entry kept: events from before any control ran are delivered too.
    pub async fn consumer(&self, group: &str, consumer: &str) -> Result<QueueConsumer, RedisError> {
        let created = self
            .conn
            .query::<Value>(
                "webhook_group",
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&self.key)
                    .arg(group)
                    .arg("0")
                    .arg("MKSTREAM"),
            )
            .await;
        match created {
            Err(RedisError::Unavailable(why)) if why.contains("BUSYGROUP") => {}
            other => {
                other?;
            }
        }
        Ok(QueueConsumer {
            queue: self.clone(),
            group: group.to_owned(),
            name: consumer.to_owned(),
        })
    }
}

/// One control replica's membership of the group.
pub struct QueueConsumer {
    queue: WebhookQueue,
    group: String,
    name: String,
}

impl QueueConsumer {
    fn conn(&self) -> &RedisConn {
        &self.queue.conn
    }

    fn key(&self) -> &str {
        &self.queue.key
    }

    /// Up to `count` entries never handed to any consumer, oldest first (no blocking: a
    /// blocking read would hold the shared connection).
    pub async fn read_new(&self, count: usize) -> Result<Vec<QueuedEvent>, RedisError> {
        self.read(">", count).await
    }

    /// Entries this consumer name was handed and did not acknowledge (a replica restarted
    /// under the same pod id picks up where it stopped).
    pub async fn read_own_pending(&self, count: usize) -> Result<Vec<QueuedEvent>, RedisError> {
        self.read("0", count).await
    }

    async fn read(&self, from: &str, count: usize) -> Result<Vec<QueuedEvent>, RedisError> {
        let reply: Option<StreamReadReply> = self
            .conn()
            .query(
                "webhook_read",
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(&self.group)
                    .arg(&self.name)
                    .arg("COUNT")
                    .arg(count)
                    .arg("STREAMS")
                    .arg(self.key())
                    .arg(from),
            )
            .await?;
        self.parse_all(reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids))
            .await
    }

    /// Entries as events. One that does not parse could never be delivered and would hold up
    /// its subject: it is logged and acknowledged.
    async fn parse_all(
        &self,
        entries: impl Iterator<Item = StreamId>,
    ) -> Result<Vec<QueuedEvent>, RedisError> {
        let mut events = Vec::new();
        for entry in entries {
            match parse(&entry) {
                Ok(event) => events.push(event),
                Err(why) => {
                    tracing::warn!(
                        entry = entry.id,
                        "dropping a malformed webhook event: {why}"
                    );
                    self.ack(&entry.id).await?;
                }
            }
        }
        Ok(events)
    }

    /// Takes over up to `count` entries another consumer has held for longer than `min_idle`
    /// (a replica that died mid-delivery). Entries trimmed meanwhile leave the pending list.
    pub async fn claim_stale(
        &self,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<QueuedEvent>, RedisError> {
        let reply: StreamAutoClaimReply = self
            .conn()
            .query(
                "webhook_claim",
                redis::cmd("XAUTOCLAIM")
                    .arg(self.key())
                    .arg(&self.group)
                    .arg(&self.name)
                    .arg(min_idle.as_millis() as u64)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        self.parse_all(reply.claimed.into_iter()).await
    }

    /// Resets the idle time of entries still being delivered (retries can outlast the
    /// takeover threshold), so no other replica takes them over from a live one.
    pub async fn keep(&self, entries: &[String]) -> Result<(), RedisError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.conn()
            .query::<Value>(
                "webhook_keep",
                redis::cmd("XCLAIM")
                    .arg(self.key())
                    .arg(&self.group)
                    .arg(&self.name)
                    .arg(0)
                    .arg(entries)
                    .arg("JUSTID"),
            )
            .await
            .map(drop)
    }

    /// Done with an entry (delivered, or given up on).
    pub async fn ack(&self, entry: &str) -> Result<(), RedisError> {
        self.conn()
            .query::<i64>(
                "webhook_ack",
                redis::cmd("XACK")
                    .arg(self.key())
                    .arg(&self.group)
                    .arg(entry),
            )
            .await
            .map(drop)
    }

    /// Whether an entry older than `event` about the same subject is still pending in the
    /// group (being delivered by this or another replica): then `event` must wait.
    pub async fn earlier_pending(&self, event: &QueuedEvent) -> Result<bool, RedisError> {
        let pending: StreamPendingCountReply = self
            .conn()
            .query(
                "webhook_pending",
                redis::cmd("XPENDING")
                    .arg(self.key())
                    .arg(&self.group)
                    .arg("-")
                    .arg(format!("({}", event.entry))
                    .arg(256),
            )
            .await?;
        let ids: HashSet<String> = pending.ids.into_iter().map(|p| p.id).collect();
        let Some(oldest) = ids
            .iter()
            .min_by(|a, b| entry_order(a).cmp(&entry_order(b)))
        else {
            return Ok(false);
        };
        // One range read covers every earlier pending entry (few: only those in flight).
        let earlier: redis::streams::StreamRangeReply = self
            .conn()
            .query(
                "webhook_pending",
                redis::cmd("XRANGE")
                    .arg(self.key())
                    .arg(oldest)
                    .arg(format!("({}", event.entry)),
            )
            .await?;
        Ok(earlier
            .ids
            .iter()
            .filter(|e| ids.contains(&e.id))
            .any(|e| e.get::<String>(SUBJECT).as_deref() == Some(event.subject.as_str())))
    }
}

/// `ms-seq` as numbers, for ordering entry ids.
fn entry_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn parse(entry: &StreamId) -> Result<QueuedEvent, String> {
    let subject = entry.get::<String>(SUBJECT).ok_or("no subject")?;
    let json = entry.get::<String>(EVENT).ok_or("no event")?;
    let event = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    Ok(QueuedEvent {
        entry: entry.id.clone(),
        subject,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_webhook_body_shape() {
        let mut e = WebhookEvent::new(
            "stream.started",
            "stream.started:live/cam:3".into(),
            serde_json::json!({"app": "live"}),
        );
        e.created_at = 7;
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"id":"stream.started:live/cam:3","type":"stream.started","created_at":7,"data":{"app":"live"}}"#
        );
        assert!(entry_order("10-2") > entry_order("9-5"));
        assert!(entry_order("10-10") > entry_order("10-9"));
    }
}
