//! A `redis-server` of a test's own, for tests of this crate and of crates built on it (feature
//! `testing`): on a Unix socket in a temporary directory, so there is no port to race for;
//! killed and removed on drop. Every wait is for a condition, under a timeout.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::{RedisConfig, RedisConn, RedisMetrics};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long the server may take to start.
const START: Duration = Duration::from_secs(10);

pub struct LocalRedis {
    _child: tokio::process::Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl LocalRedis {
    /// Starts one; `name` tells its directory from other tests'.
    pub async fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "liverelay-redis-{name}-{}-{}",
            std::process::id(),
            liverelay_types::unix_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("redis.sock");
        let mut child = tokio::process::Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (make test-deps)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.to_lowercase().contains("ready to accept connections") {
                    return;
                }
            }
            panic!("redis-server exited before it was ready");
        };
        tokio::time::timeout(START, ready)
            .await
            .expect("redis-server ready within the wait");
        // Keep reading its output so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            _child: child,
            dir,
            socket,
        }
    }

    /// A connection with key prefix `test`.
    pub async fn conn(&self) -> RedisConn {
        let config = RedisConfig {
            urls: vec![format!("redis+unix://{}", self.socket.display())],
            cluster: false,
            key_prefix: "test".into(),
            op_timeout: Duration::from_secs(2),
            tls: Default::default(),
            webhook_queue_len: 100,
        };
        RedisConn::connect(&config, RedisMetrics::default())
            .await
            .unwrap()
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
