//! A real nginx with Debian's `libnginx-mod-rtmp` on a free port, as the external RTMP server
//! relays pull from and push to: its own prefix directory and pid file, no root needed, one
//! process (`master_process off`) so killing it stops everything.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{ChildGuard, TempDir, free_port, spawn_logged};

const MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

pub struct Nginx {
    child: Option<ChildGuard>,
    pub port: u16,
    dir: TempDir,
    /// Extra directives of the `live` application.
    live_directives: String,
}

/// Runs one nginx process in the foreground with `module` loaded and the configuration `body`
/// (events and server blocks), its pid file and logs in `dir`; returns once it listens on
/// `port`, and panics with its logs if it does not.
pub fn run(dir: &TempDir, module: &str, body: &str, port: u16) -> ChildGuard {
    assert!(
        std::path::Path::new(module).exists(),
        "{module} missing: `make test-deps` installs nginx's modules"
    );
    let prefix = dir.path("");
    let conf = dir.path("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "load_module {module};\ndaemon off;\nmaster_process off;\nworker_processes 1;\n\
             pid {p}/nginx.pid;\nerror_log {p}/error.log info;\n{body}",
            p = prefix.display(),
        ),
    )
    .unwrap();
    let child = spawn_logged(
        Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(dir.path("error.log")),
        &dir.path("stderr.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start on port {port}: {}",
            logs(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn logs(dir: &TempDir) -> String {
    ["stderr.log", "error.log"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.path(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Nginx {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts it with extra directives in the `live` application (e.g.
    /// `drop_idle_publisher 1s;`).
    pub fn start_with(live_directives: &str) -> Self {
        let mut nginx = Self {
            child: None,
            port: free_port(),
            dir: TempDir::new("nginx"),
            live_directives: live_directives.to_owned(),
        };
        nginx.restart();
        nginx
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{path}", self.port)
    }

    /// SIGKILL: the upstream disappears without a goodbye.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Starts it (again) on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let body = format!(
            "events {{ worker_connections 256; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
               application live {{ live on; {live} }} }} }}\n",
            port = self.port,
            live = self.live_directives,
        );
        self.child = Some(run(&self.dir, MODULE, &body, self.port));
    }

    /// Publish requests nginx received for stream `name` (its `info` log has one line each,
    /// accepted or not).
    pub fn publishes(&self, name: &str) -> usize {
        self.log()
            .matches(&format!("publish: name='{name}'"))
            .count()
    }

    /// Publishes nginx refused because the stream already had a publisher.
    pub fn already_publishing(&self) -> usize {
        self.log().matches("live: already publishing").count()
    }

    pub fn log(&self) -> String {
        logs(&self.dir)
    }
}
