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
        let dir = self.dir.path("");
        let conf = self.dir.path("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "load_module {MODULE};\n\
                 daemon off;\nmaster_process off;\nworker_processes 1;\n\
                 pid {dir}/nginx.pid;\nerror_log {dir}/error.log info;\n\
                 events {{ worker_connections 256; }}\n\
                 rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
                   application live {{ live on; {live} }} }} }}\n",
                dir = dir.display(),
                port = self.port,
                live = self.live_directives,
            ),
        )
        .unwrap();
        let child = spawn_logged(
            Command::new("nginx")
                .arg("-c")
                .arg(&conf)
                .arg("-p")
                .arg(&dir)
                .arg("-e")
                .arg(self.dir.path("error.log")),
            &self.dir.path("stderr.log"),
        );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start (is libnginx-mod-rtmp installed? `make test-deps`): {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
        ["stderr.log", "error.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}
