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
        wait_until(
            || self.cli(&["PING"]).as_deref() == Some("PONG"),
            "redis-server starts",
        );
    }

    /// Runs one command with redis-cli; `None` if Redis does not answer.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        cli(self.port, args)
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

/// A three-node Redis Cluster (no replicas) on free ports.
pub struct RedisCluster {
    nodes: Vec<ChildGuard>,
    pub ports: Vec<u16>,
    _dir: TempDir,
}

impl RedisCluster {
    pub fn start() -> Self {
        let dir = TempDir::new("redis-cluster");
        let ports: Vec<u16> = (0..3).map(|_| cluster_port()).collect();
        let nodes = ports
            .iter()
            .map(|port| {
                let log = std::fs::File::create(dir.path(&format!("node-{port}.log"))).unwrap();
                ChildGuard::spawn(
                    Command::new("redis-server")
                        .current_dir(dir.path(""))
                        .args([
                            "--port",
                            &port.to_string(),
                            "--bind",
                            "127.0.0.1",
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                        ])
                        .args([
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            &format!("nodes-{port}.conf"),
                        ])
                        .stdin(Stdio::null())
                        .stdout(log.try_clone().unwrap())
                        .stderr(log),
                )
            })
            .collect();
        let cluster = Self {
            nodes,
            ports,
            _dir: dir,
        };
        for port in &cluster.ports {
            wait_until(
                || cli(*port, &["PING"]).as_deref() == Some("PONG"),
                "cluster node starts",
            );
        }
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        for port in &cluster.ports {
            wait_until(
                || cli(*port, &["CLUSTER", "INFO"]).is_some_and(|i| i.contains("cluster_state:ok")),
                "cluster state ok",
            );
        }
        cluster
    }

    /// Seed URLs, comma-separated, as `--redis-url` takes them.
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `GET key` following cluster redirects.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &self.ports[0].to_string(), "GET", key])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!text.is_empty()).then_some(text)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn wait_until(mut ok: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
