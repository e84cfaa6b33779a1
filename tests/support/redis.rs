//! A real `redis-server` on a free port, for cluster tests, and `redis-cli` to look inside.
//!
//! Every lookup here fails the test when `redis-cli` cannot ask (no connection, an error
//! reply): "not there" is only ever Redis saying nil, never a lookup that went wrong.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{ChildGuard, Place, TempDir, free_port};

/// PEM files for a Redis that also serves TLS (`--tls-port`) beside its plain port (which the
/// lookups here keep using).
pub struct RedisTls<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    /// CA of the client certificates Redis checks, and of its cluster peers.
    pub ca: &'a Path,
    /// Clients must show a certificate signed by `ca` (`--tls-auth-clients yes`).
    pub require_client_cert: bool,
}

impl RedisTls<'_> {
    fn args(&self, tls_port: u16) -> Vec<String> {
        let path = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
        let auth = if self.require_client_cert {
            "yes"
        } else {
            "no"
        };
        [
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &path(self.cert),
            "--tls-key-file",
            &path(self.key),
            "--tls-ca-cert-file",
            &path(self.ca),
            "--tls-auth-clients",
            auth,
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

pub struct RedisServer {
    child: Option<ChildGuard>,
    pub port: u16,
    /// The TLS port, when started with [`RedisServer::start_tls`].
    pub tls_port: Option<u16>,
    extra_args: Vec<String>,
    /// Where it runs (this host's loopback unless started with [`RedisServer::start_at`]).
    place: Place,
    dir: TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
            tls_port: None,
            extra_args: Vec::new(),
            place: Place::default(),
            dir: TempDir::new("redis"),
        };
        redis.restart();
        redis
    }

    /// A server with more `redis-server` arguments (e.g. `--appendonly yes`); anything it
    /// writes goes to its own temporary directory.
    pub fn start_with(args: &[&str]) -> Self {
        Self::start_at(Place::default(), args)
    }

    /// [`RedisServer::start_with`] in `place` (e.g. a network namespace), on its address.
    pub fn start_at(place: Place, args: &[&str]) -> Self {
        let dir = TempDir::new("redis-args");
        let mut extra_args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        extra_args.extend([
            "--dir".to_owned(),
            dir.path("").to_str().unwrap().to_owned(),
        ]);
        let mut redis = Self {
            child: None,
            port: free_port(),
            tls_port: None,
            extra_args,
            place,
            dir,
        };
        redis.restart();
        redis
    }

    /// A server that also serves TLS on a port of its own.
    pub fn start_tls(tls: &RedisTls) -> Self {
        let tls_port = free_port();
        let mut redis = Self {
            child: None,
            port: free_port(),
            tls_port: Some(tls_port),
            extra_args: tls.args(tls_port),
            place: Place::default(),
            dir: TempDir::new("redis-tls"),
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://{}:{}", self.place.ip(), self.port)
    }

    /// `rediss://127.0.0.1:<tls port>`.
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started with start_tls");
        format!("rediss://127.0.0.1:{port}")
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
            self.place
                .command("redis-server")
                .args([
                    "--port",
                    &self.port.to_string(),
                    "--bind",
                    &self.place.ip().to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(&self.extra_args)
                // Reached from other namespaces, not over loopback (the lab is its own network).
                .args(
                    self.place
                        .netns
                        .iter()
                        .flat_map(|_| ["--protected-mode", "no"]),
                )
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        self.child = Some(child);
        wait_until(
            || self.try_query(&["PING"]).is_ok_and(|v| v == "PONG"),
            "redis-server starts",
        );
    }

    /// `redis-cli` arguments that reach this server.
    fn connection(&self) -> [String; 4] {
        let (host, port) = (self.place.ip().to_string(), self.port.to_string());
        ["-h".into(), host, "-p".into(), port]
    }

    /// Runs one command: its reply as JSON (`null` for nil). Panics if Redis cannot be asked
    /// or answers with an error.
    pub fn query(&self, args: &[&str]) -> serde_json::Value {
        let connection = self.connection();
        query(&connection.each_ref().map(String::as_str), args)
    }

    /// Runs one command: its reply as JSON, or why there is none (an error reply included).
    pub fn try_query(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let connection = self.connection();
        try_query(&connection.each_ref().map(String::as_str), args)
    }

    /// Runs one command: `None` for a nil reply, else the reply as text (an array one element
    /// a line). Panics if Redis cannot be asked or answers with an error.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        as_text(self.query(args))
    }

    /// The registry record of `app/name`, parsed; `None` only if Redis has no such key.
    pub fn record(&self, app: &str, name: &str) -> Option<serde_json::Value> {
        Self::record_at(&self.url(), app, name)
    }

    /// The same, for a server given by URL (usable from another thread).
    pub fn record_at(url: &str, app: &str, name: &str) -> Option<serde_json::Value> {
        let key = format!("liverelay:stream:{{{app}/{name}}}");
        let text = as_text(query(&["-u", url], &["GET", &key]))?;
        Some(
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{key} holds no JSON record ({e}): {text}")),
        )
    }

    /// All keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = match self.query(&["KEYS", "*"]) {
            serde_json::Value::Array(keys) => keys.into_iter().filter_map(as_text).collect(),
            other => panic!("KEYS answered {other}"),
        };
        keys.sort();
        keys
    }

    /// Keys whose name or value holds `needle`, looking into every element of strings,
    /// hashes, lists, sets, sorted sets and streams.
    pub fn keys_holding(&self, needle: &str) -> Vec<String> {
        self.keys()
            .into_iter()
            .filter(|key| key.contains(needle) || self.value(key).to_string().contains(needle))
            .collect()
    }

    /// A key's whole value, read with the command for its type.
    fn value(&self, key: &str) -> serde_json::Value {
        let kind = self.query(&["TYPE", key]);
        let read: &[&str] = match kind.as_str() {
            Some("string") => &["GET"],
            Some("hash") => &["HGETALL"],
            Some("list") => &["LRANGE", key, "0", "-1"],
            Some("set") => &["SMEMBERS"],
            Some("zset") => &["ZRANGE", key, "0", "-1", "WITHSCORES"],
            Some("stream") => &["XRANGE", key, "-", "+"],
            // Expired between KEYS and TYPE.
            Some("none") => return serde_json::Value::Null,
            _ => panic!("{key}: a value of type {kind} this check cannot read"),
        };
        match read {
            [command] => self.query(&[command, key]),
            _ => self.query(read),
        }
    }
}

/// `redis-cli CONNECTION... --json ARGS...`: the reply, or why there is none.
fn try_query(connection: &[&str], args: &[&str]) -> Result<serde_json::Value, String> {
    let out = Command::new("redis-cli")
        .args(connection)
        .arg("--json")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "redis-cli failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Error replies exit 0 and print `error:"..."`.
    if text.starts_with("error:") {
        return Err(text.trim().to_owned());
    }
    // Verbatim strings (`CLUSTER INFO`, `INFO`) are printed as they are, not as JSON.
    Ok(serde_json::from_str(text.trim())
        .unwrap_or_else(|_| serde_json::Value::String(text.into_owned())))
}

fn query(connection: &[&str], args: &[&str]) -> serde_json::Value {
    try_query(connection, args)
        .unwrap_or_else(|e| panic!("redis-cli {connection:?} {args:?}: lookup failed: {e}"))
}

/// A reply as `redis-cli` prints it raw: `None` for nil.
fn as_text(reply: serde_json::Value) -> Option<String> {
    match reply {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Array(items) => Some(
            items
                .into_iter()
                .map(|i| as_text(i).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        other => Some(other.to_string()),
    }
}

/// A three-node Redis Cluster (no replicas) on free ports.
pub struct RedisCluster {
    nodes: Vec<ChildGuard>,
    pub ports: Vec<u16>,
    /// The nodes' TLS ports, when started with [`RedisCluster::start_tls`].
    pub tls_ports: Vec<u16>,
    _dir: TempDir,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A cluster whose nodes also serve TLS, to clients and to each other (`--tls-cluster`):
    /// a client that connects over TLS is given the TLS ports of the other nodes.
    pub fn start_tls(tls: &RedisTls) -> Self {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<&RedisTls>) -> Self {
        let dir = TempDir::new("redis-cluster");
        let ports: Vec<u16> = (0..3).map(|_| cluster_port()).collect();
        let tls_ports: Vec<u16> = match tls {
            Some(_) => (0..3).map(|_| free_port()).collect(),
            None => Vec::new(),
        };
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let tls_args = match tls {
                    Some(tls) => [
                        tls.args(tls_ports[i]),
                        vec!["--tls-cluster".into(), "yes".into()],
                    ]
                    .concat(),
                    None => Vec::new(),
                };
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
                        .args(&tls_args)
                        .stdin(Stdio::null())
                        .stdout(log.try_clone().unwrap())
                        .stderr(log),
                )
            })
            .collect();
        let cluster = Self {
            nodes,
            ports,
            tls_ports,
            _dir: dir,
        };
        for port in &cluster.ports {
            wait_until(
                || try_query(&["-p", &port.to_string()], &["PING"]).is_ok_and(|v| v == "PONG"),
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
                || {
                    try_query(&["-p", &port.to_string()], &["CLUSTER", "INFO"])
                        .is_ok_and(|i| i.as_str().is_some_and(|i| i.contains("cluster_state:ok")))
                },
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

    /// TLS seed URLs, comma-separated.
    pub fn tls_urls(&self) -> String {
        self.tls_ports
            .iter()
            .map(|p| format!("rediss://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `GET key` following cluster redirects: `None` only for nil.
    pub fn get(&self, key: &str) -> Option<String> {
        as_text(query(
            &["-c", "-p", &self.ports[0].to_string()],
            &["GET", key],
        ))
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

fn wait_until(mut ok: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
