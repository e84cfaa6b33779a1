//! What the whole-process tests share: free ports, child processes that are always cleaned up,
//! a running `liverelay standalone`, real ffmpeg/ffprobe, and the product's RTMP client (as
//! [`rtmp::TestClient`]) for checks that need to see individual messages.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod curl;
pub mod hooks;
pub mod kube_api;
pub mod netns;
pub mod nginx;
pub mod proxy;
pub mod redis;
pub mod rtmp;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped, and killed by the kernel if the test
/// process itself dies first.
pub struct ChildGuard {
    child: Child,
    name: String,
}

impl ChildGuard {
    pub fn spawn(cmd: &mut Command) -> Self {
        let name = format!("{:?}", cmd.get_program());
        // SAFETY: prctl is async-signal-safe and only affects the child being set up.
        #[allow(
            unsafe_code,
            reason = "pre_exec is unsafe: children die with the test process (PR_SET_PDEATHSIG)"
        )]
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {name}: {e} (run `make test`, which installs it)")
        });
        Self { child, name }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child's stdin, once, if it was spawned with `Stdio::piped()`.
    pub fn stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Waits for the process to exit by itself; `None` if it is still running at `limit`.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process hangs (a stalled node, a frozen encoder) with its sockets open.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    #[allow(
        unsafe_code,
        reason = "std sends only SIGKILL; the tests also stop, resume and terminate children"
    )]
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: sends a signal to our own child process.
        let sent = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(sent, 0, "signal {signal} to {}", self.name);
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where a test server runs: on this host's loopback (the default), or inside a network
/// namespace on that namespace's address ([`netns::Host::place`]).
#[derive(Clone, Debug, Default)]
pub struct Place {
    pub netns: Option<String>,
    pub ip: Option<IpAddr>,
}

impl Place {
    /// The address servers here listen on.
    pub fn ip(&self) -> IpAddr {
        self.ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// `program`, started in this place (`ip netns exec NS program` in a namespace).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }
}

/// A scratch directory for one test, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "liverelay-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `liverelay` process (standalone by default) on free ports.
pub struct Server {
    child: ChildGuard,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    /// The relay gRPC address (ingest role only).
    pub grpc: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the server with extra `LIVERELAY_*` environment settings.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        Self::start_role("standalone", &[], env)
    }

    /// Starts `liverelay ROLE ARGS...` with extra environment, on fresh ports.
    pub fn start_role(role: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_at(&Place::default(), role, args, env)
    }

    /// [`Server::start_role`] in `place` (e.g. a network namespace), listening on its address.
    pub fn start_at(place: &Place, role: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::try_start(place, role, args, env) {
                return server;
            }
        }
        panic!("liverelay {role} did not become ready");
    }

    fn try_start(place: &Place, role: &str, args: &[&str], env: &[(&str, &str)]) -> Option<Self> {
        let dir = TempDir::new("server");
        let log = dir.path("liverelay.log");
        let rtmp = SocketAddr::new(place.ip(), free_port());
        let http = SocketAddr::new(place.ip(), free_port());
        let grpc = SocketAddr::new(place.ip(), free_port());
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = place.command(env!("CARGO_BIN_EXE_liverelay"));
        cmd.args([
            role,
            "--rtmp-listen",
            &rtmp.to_string(),
            "--http-listen",
            &http.to_string(),
        ]);
        if role == "ingest" || role == "control" {
            cmd.args(["--grpc-listen", &grpc.to_string()]);
        }
        cmd.args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut server = Self {
            child: ChildGuard::spawn(&mut cmd),
            rtmp,
            http,
            grpc,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !server.child.is_running() {
                // Most likely a port taken between free_port() and bind: try other ports.
                return None;
            }
            if try_http_request(server.http, "GET", "/readyz", None, "").map(|(s, _)| s)
                == Some(200)
            {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{path}", self.rtmp)
    }

    /// `GET path` over HTTP/1.0: (status, body). Panics if the server does not answer.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }

    /// One sample of `/metrics` (classic text format), by its exact series text; `None` if the
    /// series is not exported. Panics if `/metrics` cannot be read.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let body = self.get_ok("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map(|v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{series}: sample {v:?} is no number ({e})"))
            })
    }

    /// The body of `GET path`, which must answer 200.
    fn get_ok(&self, path: &str) -> String {
        let (status, body) = self.http_get(path);
        assert_eq!(status, 200, "GET {path} on {}: {body}", self.http);
        body
    }
}

/// `GET path` over HTTP/1.0 to `addr`: (status, body). Panics if nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, None, "")
}

/// One HTTP/1.0 request with an optional bearer token and a JSON body: (status, body).
/// Panics if the request fails (refused, no answer, not HTTP): a check that reads an answer
/// must never take a failed call for an empty one.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (u16, String) {
    try_http_request(addr, method, path, bearer, body)
        .unwrap_or_else(|| panic!("{method} http://{addr}{path}: no HTTP answer"))
}

/// The same, `None` if there is no answer: for polling a server that may not be up yet.
pub fn try_http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

impl Server {
    /// The stream's entry in `GET /v1/streams`; `None` if it is not listed. Panics if the
    /// list cannot be read.
    pub fn stream_info(&self, app: &str, name: &str) -> Option<serde_json::Value> {
        let body = self.get_ok("/v1/streams");
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/v1/streams is no JSON ({e}): {body}"));
        v["streams"]
            .as_array()
            .unwrap_or_else(|| panic!("/v1/streams has no list: {body}"))
            .iter()
            .find(|s| s["app"] == app && s["name"] == name)
            .cloned()
    }

    /// Waits until `app/name` has a live publisher.
    pub fn wait_live(&self, app: &str, name: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .stream_info(app, name)
                .is_some_and(|s| s["live"] == true)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{app}/{name} did not go live; server log:\n{}", self.log());
    }

    /// Waits until `app/name` has exactly `n` viewers.
    pub fn wait_viewers(&self, app: &str, name: &str, n: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .stream_info(app, name)
                .is_some_and(|s| s["viewers"].as_u64() == Some(n))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{app}/{name} did not reach {n} viewers; server log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `text` (lines written after a socket closed may lag).
    pub fn wait_log(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.log().contains(text) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Where the log ends now: a mark for [`Server::wait_log_since`].
    pub fn log_mark(&self) -> usize {
        self.log().len()
    }

    /// Waits until `text` appears in what the log got after `mark`: a line an earlier event
    /// already wrote does not count for the action under test.
    pub fn wait_log_since(&self, mark: usize, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.log().get(mark..).unwrap_or("").contains(text) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// SIGKILL, as when a pod or node dies.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// SIGSTOP: the pod hangs with its connections open (its leases run out meanwhile).
    pub fn pause(&self) {
        self.child.pause();
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        self.child.resume();
    }

    /// What the log got after `mark` (a [`Server::log_mark`]).
    pub fn log_since(&self, mark: usize) -> String {
        let log = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(log.get(mark..).unwrap_or_default()).into_owned()
    }

    /// SIGTERM, as Kubernetes sends before stopping a pod.
    #[allow(unsafe_code, reason = "std cannot send SIGTERM: one libc::kill")]
    pub fn terminate(&self) {
        // SAFETY: sends a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.child.wait_timeout(limit)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- liverelay log ----\n{}", self.log());
        }
    }
}

/// Seconds of media in [`sample_flv`].
pub const SAMPLE_SECONDS: u32 = 6;
pub const SAMPLE_FPS: u32 = 25;

/// An FLV file made once per test run with ffmpeg: 320x240 H.264 at 25 fps with a keyframe
/// every 2 s, and 44.1 kHz AAC; the same thing a publisher sends with `-c copy`.
pub fn sample_flv() -> &'static Path {
    static SAMPLE: OnceLock<PathBuf> = OnceLock::new();
    SAMPLE.get_or_init(|| encode_sample("sample", 2 * SAMPLE_FPS))
}

/// [`sample_flv`] with a keyframe every second, as low-latency live streams are encoded.
pub fn sample_flv_1s_gop() -> &'static Path {
    static SAMPLE: OnceLock<PathBuf> = OnceLock::new();
    SAMPLE.get_or_init(|| encode_sample("sample-gop1s", SAMPLE_FPS))
}

/// Encodes the sample with a keyframe every `gop` pictures.
fn encode_sample(tag: &str, gop: u32) -> PathBuf {
    let path = std::env::temp_dir().join(format!("liverelay-{tag}-{}.flv", std::process::id()));
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc=size=320x240:rate={SAMPLE_FPS}"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args([
            "-g",
            &gop.to_string(),
            "-keyint_min",
            &gop.to_string(),
            "-sc_threshold",
            "0",
        ])
        .args([
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-t",
            &SAMPLE_SECONDS.to_string(),
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg is installed (make test installs it)");
    assert!(status.success(), "generating the sample FLV failed");
    path
}

/// `token=` as the play-token check reads it: `<expires>.<hex HMAC-SHA256>` of the versioned,
/// length-prefixed app and stream and the expiry (see liverelay_auth::play_token).
pub fn play_token(secret: &str, app: &str, stream: &str) -> String {
    let expires = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600)
        .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(b"liverelay-play-token-v2\n");
    for field in [app, stream] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    mac.update(expires.as_bytes());
    format!("{expires}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// Writes `out`: lossless H.264 (yuv444p, `-qp 0`) of random noise, so that every picture is
/// as large as its size makes it; `frames` pictures of `size` (`WxH`) at `rate` fps, a keyframe
/// every `gop`.
pub fn noise_flv(out: &Path, size: &str, rate: u32, frames: u32, gop: u32, log: &Path) {
    let mut encode = spawn_logged(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!(
                "nullsrc=s={size}:r={rate},geq=lum='random(1)*255':cb='random(2)*255':\
                 cr='random(3)*255',format=yuv444p"
            ))
            .args(["-frames:v", &frames.to_string()])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0"])
            .args(["-g", &gop.to_string(), "-pix_fmt", "yuv444p", "-f", "flv"])
            .arg(out),
        log,
    );
    wait_success(&mut encode, Duration::from_secs(60), log);
}

/// Starts `cmd` with no standard input and its standard output and error both written to `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> ChildGuard {
    let out = std::fs::File::create(log).unwrap();
    ChildGuard::spawn(
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out),
    )
}

/// Waits for a child to exit by itself and asserts it succeeded; panics with its log otherwise.
pub fn wait_success(child: &mut ChildGuard, limit: Duration, log: &Path) {
    let name = child.name().to_owned();
    let text = || std::fs::read_to_string(log).unwrap_or_default();
    let status = child.wait_timeout(limit).unwrap_or_else(|| {
        panic!(
            "{name} still running after {limit:?}; its output:\n{}",
            text()
        )
    });
    assert!(
        status.success(),
        "{name} failed ({status}); its output:\n{}",
        text()
    );
}

/// `ffmpeg -re -i FILE -c copy -f flv URL`, the publisher every user starts with.
pub fn ffmpeg_publish(file: &Path, url: &str, log: &Path) -> ChildGuard {
    let out = std::fs::File::create(log).unwrap();
    ChildGuard::spawn(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
            .arg(file)
            .args(["-c", "copy", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out),
    )
}

/// ffmpeg publishing the sample in a loop: a live source that runs until stopped.
pub fn looping_publisher(url: &str, log: &Path) -> ChildGuard {
    looping_publisher_of(sample_flv(), url, log)
}

/// ffmpeg publishing `file` in a loop, paced, copied as it is.
pub fn looping_publisher_of(file: &Path, url: &str, log: &Path) -> ChildGuard {
    spawn_logged(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-stream_loop", "-1"])
            .args(["-re", "-i"])
            .arg(file)
            .args(["-c", "copy", "-f", "flv", url]),
        log,
    )
}

/// `ffmpeg -i URL -c copy OUT.flv`: a player that records exactly what it received.
pub fn ffmpeg_record(url: &str, out: &Path, log: &Path) -> ChildGuard {
    ffmpeg_record_with(url, out, &[], log)
}

/// [`ffmpeg_record`] with more output options (e.g. `-frames:v 10` to stop after 10 pictures).
pub fn ffmpeg_record_with(url: &str, out: &Path, options: &[&str], log: &Path) -> ChildGuard {
    spawn_logged(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i", url])
            .args(options)
            .args(["-c", "copy", "-f", "flv"])
            .arg(out),
        log,
    )
}

/// One packet as ffprobe reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub video: bool,
    pub keyframe: bool,
    pub dts_ms: i64,
}

/// Packets of a media file or URL, in file order.
pub fn probe_packets(input: &str) -> Vec<Packet> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,flags,dts_time",
            "-of",
            "csv=p=0",
            input,
        ])
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Packet {
                video: f[0] == "video",
                dts_ms: (f[1].parse::<f64>().unwrap_or(0.0) * 1000.0).round() as i64,
                keyframe: f[2].starts_with('K'),
            }
        })
        .collect()
}

/// `codec_name,width,height` of each stream, as ffprobe reports them.
pub fn probe_streams(input: &str) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
            input,
        ])
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An HLS input also has a program: its line is empty, and it lists the streams again.
    let mut streams: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_end_matches(',').to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    streams.sort();
    streams.dedup();
    streams
}

/// Decodes a whole file; returns ffmpeg's error output (empty when decoding was clean).
pub fn decode_errors(file: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "decoding {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Creates a stream key for `app/stream` through control's HTTP API (`admin` is its admin
/// token); returns the secret a publisher uses.
pub fn create_stream_key(control: SocketAddr, admin: &str, app: &str, stream: &str) -> String {
    let body = serde_json::json!({ "app": app, "stream": stream }).to_string();
    let (status, created) = http_request(control, "POST", "/v1/keys", Some(admin), &body);
    assert_eq!(status, 201, "creating a key for {app}/{stream}: {created}");
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    created["key"]
        .as_str()
        .expect("the key's secret")
        .to_owned()
}

/// A stream that must not notice an attack: a recorder waits on `live/{name}` before the
/// sample is published to it, so [`Bystander::assert_every_frame`] can compare frame by frame.
pub struct Bystander {
    recorder: ChildGuard,
    publisher: ChildGuard,
    out: PathBuf,
    logs: [PathBuf; 2],
}

impl Bystander {
    pub fn start(server: &Server, name: &str, dir: &TempDir) -> Self {
        let url = server.url(&format!("live/{name}"));
        let out = dir.path(&format!("{name}.flv"));
        let logs = [
            dir.path(&format!("{name}-record.log")),
            dir.path(&format!("{name}-publish.log")),
        ];
        let recorder = ffmpeg_record(&url, &out, &logs[0]);
        server.wait_viewers("live", name, 1, Duration::from_secs(10));
        let publisher = ffmpeg_publish(sample_flv(), &url, &logs[1]);
        Self {
            recorder,
            publisher,
            out,
            logs,
        }
    }

    /// Waits for the sample to end and asserts the recorder got every audio and video frame.
    pub fn assert_every_frame(mut self) {
        wait_success(&mut self.publisher, Duration::from_secs(30), &self.logs[1]);
        wait_success(&mut self.recorder, Duration::from_secs(15), &self.logs[0]);
        let sent = probe_packets(sample_flv().to_str().unwrap());
        let got = probe_packets(self.out.to_str().unwrap());
        let video = |p: &[Packet]| p.iter().filter(|p| p.video).count();
        assert_eq!(
            (video(&got), got.len()),
            (video(&sent), sent.len()),
            "the bystander stream lost frames (video, all)"
        );
    }
}

/// TCP connections in the ESTABLISHED state towards local port `port` (from this host's
/// socket table), counted from the connecting side.
pub fn established_connections_to(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let remote_port = fields
                        .get(2)
                        .and_then(|addr| addr.rsplit(':').next())
                        .and_then(|hex| u16::from_str_radix(hex, 16).ok());
                    remote_port == Some(port) && fields.get(3) == Some(&"01")
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .count()
}

/// Asserts that `got` (a recording's pictures) is a run of the looping `source`'s pictures,
/// in order, without a gap, starting on a keyframe.
pub fn assert_follows_source(got: &[(bool, usize, String)], source: &[(bool, usize, String)]) {
    assert!(!got.is_empty(), "nothing recorded");
    let start = source
        .iter()
        .position(|p| p.2 == got[0].2)
        .expect("the first recorded picture is one of the source's");
    assert!(source[start].0, "the recording starts on a keyframe");
    for (i, picture) in got.iter().enumerate() {
        let expected = &source[(start + i) % source.len()];
        assert_eq!(
            (picture.1, &picture.2),
            (expected.1, &expected.2),
            "picture {i} differs from the source's"
        );
    }
}

/// A file's video pictures, in order: (keyframe, size, MD5 of the data), per ffprobe.
pub fn packet_hashes(file: &Path) -> Vec<(bool, usize, String)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_data_hash",
            "md5",
        ])
        .args([
            "-show_entries",
            "packet=flags,size,data_hash",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',');
            let size = fields.next()?.parse().ok()?;
            let flags = fields.next()?;
            let hash = fields.next()?.to_owned();
            Some((flags.starts_with('K'), size, hash))
        })
        .collect()
}
