//! Orders control gives every pod through Redis pub/sub: end the publishes of a revoked stream
//! key, drop a stream's publisher or viewers. Each pod applies what matches its own sessions,
//! so control need not know who holds them.

pub use liverelay_types::DropTarget;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::{RedisConn, RedisError};

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

/// The commands channel.
pub struct CommandBus {
    conn: RedisConn,
    channel: String,
}

impl CommandBus {
    /// `{prefix}:commands`.
    pub fn new(conn: RedisConn) -> Self {
        Self {
            channel: format!("{}:commands", conn.key_prefix()),
            conn,
        }
    }

    /// Sends a command; returns how many pods were listening.
    pub async fn send(&self, command: &ClusterCommand) -> Result<u64, RedisError> {
        let json = serde_json::to_string(command).expect("commands serialize");
        self.conn
            .query(
                "command",
                redis::cmd("PUBLISH").arg(&self.channel).arg(json),
            )
            .await
    }

    /// Follows the channel until the task is aborted.
    pub fn listen(&self) -> (broadcast::Receiver<ClusterCommand>, JoinHandle<()>) {
        let (sink, commands) = broadcast::channel(256);
        (commands, self.conn.subscribe(self.channel.clone(), sink))
    }
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
