//! A real `redis-server` on a free port, for cluster tests, and `redis-cli` to look inside.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{ChildGuard, TempDir, free_port};

pub struct RedisServer {
    child: Option<ChildGuard>,
    pub port: u16,
    dir: TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
            dir: TempDir::new("redis"),
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: what a crashed or evicted Redis looks like).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Starts it again on the same port, empty (no persistence, as a restarted cache).
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.path("redis.log")).unwrap();
        let child = ChildGuard::spawn(
            Command::new("redis-server")
                .args([
                    "--port",
                    &self.port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one command with redis-cli; `None` if Redis does not answer.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The registry record of `app/name`, parsed.
    pub fn record(&self, app: &str, name: &str) -> Option<serde_json::Value> {
        Self::record_at(&self.url(), app, name)
    }

    /// The same, for a server given by URL (usable from another thread).
    pub fn record_at(url: &str, app: &str, name: &str) -> Option<serde_json::Value> {
        let out = Command::new("redis-cli")
            .args([
                "-u",
                url,
                "GET",
                &format!("liverelay:stream:{{{app}/{name}}}"),
            ])
            .output()
            .ok()?;
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).ok()
    }

    /// All keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cli(&["KEYS", "*"])
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        keys.retain(|k| !k.is_empty());
        keys.sort();
        keys
    }
}
