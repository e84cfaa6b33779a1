//! Orders control gives every pod: end the publishes of a revoked stream key, drop a stream's
//! publisher or viewers. Each pod applies what matches its own sessions, so control need not
//! know who holds them.
//!
//! A command is appended to a Redis Stream (`{prefix}:commands:log`, about the last
//! [`LOG_LEN`] kept) and announced on pub/sub (`{prefix}:commands`). A pod reads the log from
//! where it stood when it started listening, woken by the announcement and at least every
//! [`POLL_EVERY`]: a pod whose subscription was reconnecting, half-open or lagging when a
//! command was sent still gets it, in order, from the log. Pub/sub alone is fire and forget.

use std::time::Duration;

use liverelay_types::AbortOnDrop;
pub use liverelay_types::DropTarget;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::{RedisConn, RedisError};

/// Commands the log keeps (`XADD MAXLEN ~`): far more than pods apply between two polls.
pub const LOG_LEN: usize = 10_000;

/// How often a pod reads the log without being woken.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Log entries read at a time.
const READ_BATCH: usize = 100;

/// The log entry's field holding the command's JSON.
const FIELD: &str = "command";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ClusterCommand {
    /// A stream key was revoked or rotated: its live publishes end.
    KeyRevoked { key_id: String },
    /// nginx-rtmp's `control/drop`: ends sessions of one stream (one client when `client_id`
    /// and `pod` are given).
    Drop {
        app: String,
        name: String,
        target: DropTarget,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pod: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<u64>,
    },
}

/// The commands log and its announcements.
pub struct CommandBus {
    conn: RedisConn,
    channel: String,
    log: String,
}

impl CommandBus {
    /// `{prefix}:commands` (announcements) and `{prefix}:commands:log`.
    pub fn new(conn: RedisConn) -> Self {
        Self {
            channel: format!("{}:commands", conn.key_prefix()),
            log: format!("{}:commands:log", conn.key_prefix()),
            conn,
        }
    }

    /// Appends a command to the log, then announces it; returns how many pods heard the
    /// announcement (the others read it from the log within [`POLL_EVERY`]).
    pub async fn send(&self, command: &ClusterCommand) -> Result<u64, RedisError> {
        let json = serde_json::to_string(command).expect("commands serialize");
        self.conn
            .query::<String>(
                "command_log",
                redis::cmd("XADD")
                    .arg(&self.log)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(LOG_LEN)
                    .arg("*")
                    .arg(FIELD)
                    .arg(&json),
            )
            .await?;
        self.conn
            .query(
                "command",
                redis::cmd("PUBLISH").arg(&self.channel).arg(json),
            )
            .await
    }

    /// Follows the log from its current end until the task is aborted: every command
    /// appended after this call comes out once, in order.
    pub fn listen(&self) -> (broadcast::Receiver<ClusterCommand>, JoinHandle<()>) {
        let (sink, commands) = broadcast::channel(256);
        // The announcements only wake the reader; the log is what it reads.
        let (wake, woken) = broadcast::channel::<serde_json::Value>(16);
        let announcements = self.conn.subscribe(self.channel.clone(), wake);
        let reader = LogReader {
            conn: self.conn.clone(),
            log: self.log.clone(),
        };
        let task = tokio::spawn(async move {
            let _announcements = AbortOnDrop::new(&announcements);
            reader.follow(woken, sink).await;
        });
        (commands, task)
    }
}

struct LogReader {
    conn: RedisConn,
    log: String,
}

impl LogReader {
    async fn follow(
        &self,
        mut woken: broadcast::Receiver<serde_json::Value>,
        sink: broadcast::Sender<ClusterCommand>,
    ) {
        let mut last = loop {
            match self.end().await {
                Ok(id) => break id,
                Err(e) => {
                    warn!(error = %e, "cannot read the commands log; retrying");
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
        };
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = poll.tick() => {}
                // Lagged or not, an announcement means: read the log.
                _ = woken.recv() => {}
            }
            loop {
                let entries = match self.after(&last).await {
                    Ok(entries) => entries,
                    Err(e) => {
                        warn!(error = %e, "cannot read the commands log; retrying");
                        break;
                    }
                };
                let full = entries.len() == READ_BATCH;
                for entry in entries {
                    match parse(&entry) {
                        Ok(command) => {
                            let _ = sink.send(command);
                        }
                        Err(why) => warn!(entry = entry.id, "ignoring a malformed command: {why}"),
                    }
                    last = entry.id;
                }
                if !full {
                    break;
                }
            }
        }
    }

    /// The newest entry's id: where a new listener starts (`0-0` for an empty log).
    async fn end(&self) -> Result<String, RedisError> {
        let reply: StreamRangeReply = self
            .conn
            .query(
                "command_log_end",
                redis::cmd("XREVRANGE")
                    .arg(&self.log)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |e| e.id))
    }

    /// Entries after `last`, oldest first (no blocking: that would hold the shared connection).
    async fn after(&self, last: &str) -> Result<Vec<StreamId>, RedisError> {
        let reply: Option<StreamReadReply> = self
            .conn
            .query(
                "command_log_read",
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(READ_BATCH)
                    .arg("STREAMS")
                    .arg(&self.log)
                    .arg(last),
            )
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect())
    }
}

fn parse(entry: &StreamId) -> Result<ClusterCommand, String> {
    let json: String = entry
        .get(FIELD)
        .ok_or_else(|| format!("no {FIELD} field"))?;
    serde_json::from_str(&json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_have_a_stable_json_shape() {
        let c = ClusterCommand::Drop {
            app: "live".into(),
            name: "cam".into(),
            target: DropTarget::Viewers,
            pod: None,
            client_id: None,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"command":"drop","app":"live","name":"cam","target":"viewers"}"#
        );
        let k: ClusterCommand =
            serde_json::from_str(r#"{"command":"key_revoked","key_id":"k1"}"#).unwrap();
        assert_eq!(
            k,
            ClusterCommand::KeyRevoked {
                key_id: "k1".into()
            }
        );
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;
    use crate::testing::LocalRedis;

    fn drop_of(name: String) -> ClusterCommand {
        ClusterCommand::Drop {
            app: "live".into(),
            name,
            target: DropTarget::All,
            pod: None,
            client_id: None,
        }
    }

    /// The next command that is not a greeting (see below).
    async fn next(commands: &mut broadcast::Receiver<ClusterCommand>) -> ClusterCommand {
        loop {
            let command = tokio::time::timeout(Duration::from_secs(10), commands.recv())
                .await
                .expect("a command within the wait")
                .unwrap();
            if command != drop_of("hello".into()) {
                return command;
            }
        }
    }

    /// A command whose announcement a pod missed (its subscription was reconnecting, or the
    /// announcement was lost) still reaches it from the log; commands come once, in order,
    /// beyond one read's batch; commands from before the pod listened do not.
    #[tokio::test]
    async fn commands_reach_a_pod_that_missed_their_announcement() {
        let redis = LocalRedis::start("commands").await;
        let bus = CommandBus::new(redis.conn().await);
        bus.send(&drop_of("before".into())).await.unwrap();
        let (mut commands, task) = bus.listen();
        let _stop = AbortOnDrop::new(&task);
        // The listener starts where the log ends when it has looked: once it heard one of
        // these, it reads everything that follows.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            bus.send(&drop_of("hello".into())).await.unwrap();
            let heard = tokio::time::timeout(Duration::from_millis(200), commands.recv()).await;
            if heard.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the listener hears nothing"
            );
        }
        // Appended without an announcement, as if the pod's subscription was down.
        let unannounced = serde_json::to_string(&drop_of("unannounced".into())).unwrap();
        bus.conn
            .query::<String>(
                "test",
                redis::cmd("XADD")
                    .arg(&bus.log)
                    .arg("*")
                    .arg(FIELD)
                    .arg(unannounced),
            )
            .await
            .unwrap();
        assert_eq!(next(&mut commands).await, drop_of("unannounced".into()));
        for i in 0..250 {
            bus.send(&drop_of(format!("s{i}"))).await.unwrap();
        }
        for i in 0..250 {
            assert_eq!(next(&mut commands).await, drop_of(format!("s{i}")));
        }
        assert!(commands.try_recv().is_err(), "each command once");
    }
}
