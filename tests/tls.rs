//! RTMPS and TLS with real clients: ffmpeg and GStreamer over `rtmps://`, `openssl s_client`
//! for the certificate a new connection gets, certificates made by the test with `openssl`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// A throwaway PKI in the test's own directory, made with the `openssl` command.
struct Pki {
    dir: TempDir,
}

/// A CA: its certificate and key files.
struct Ca {
    cert: PathBuf,
    key: PathBuf,
}

/// A certificate (for `localhost` and 127.0.0.1, server and client use) and its key.
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Self {
        Self {
            dir: TempDir::new(tag),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path(name)
    }

    fn ca(&self, name: &str) -> Ca {
        let (cert, key) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            s(&key),
            "-out",
            s(&cert),
        ]);
        Ca { cert, key }
    }

    /// A certificate with common name `cn`, signed by `ca`.
    fn leaf(&self, ca: &Ca, cn: &str) -> Leaf {
        let (cert, key) = (
            self.path(&format!("{cn}.pem")),
            self.path(&format!("{cn}.key")),
        );
        let csr = self.path(&format!("{cn}.csr"));
        let ext = self.path(&format!("{cn}.ext"));
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            s(&key),
            "-out",
            s(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&ca.cert),
            "-CAkey",
            s(&ca.key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            s(&ext),
            "-out",
            s(&cert),
        ]);
        Leaf { cert, key }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed (make test-deps)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A standalone with an RTMPS listener on a free port besides its plain one; returns it and
/// the RTMPS address.
fn rtmps_server(leaf: &Leaf, extra: &[(&str, &str)]) -> (Server, SocketAddr) {
    rtmps_node("standalone", &[], leaf, extra)
}

/// `liverelay ROLE ARGS` with an RTMPS listener on a free port (certificate `leaf`) and `extra`
/// settings; returns it and the RTMPS address.
fn rtmps_node(
    role: &str,
    args: &[&str],
    leaf: &Leaf,
    extra: &[(&str, &str)],
) -> (Server, SocketAddr) {
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tls_text = tls.to_string();
    let mut env = vec![
        ("LIVERELAY_RTMP__TLS_LISTEN", tls_text.as_str()),
        ("LIVERELAY_RTMP__TLS_CERT", s(&leaf.cert)),
        ("LIVERELAY_RTMP__TLS_KEY", s(&leaf.key)),
    ];
    env.extend_from_slice(extra);
    (Server::start_role(role, args, &env), tls)
}

/// The subject of the certificate a new TLS connection to `addr` is shown, as `openssl
/// s_client` prints it; `None` if the handshake fails.
fn presented_subject(addr: SocketAddr) -> Option<String> {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("subject="))
        .map(str::to_owned)
}

/// Puts `leaf`'s key and certificate in the files `cert` and `key` as cert-manager would: each
/// written under a temporary name then renamed, so no reader sees half a file.
fn install(leaf: &Leaf, cert: &Path, key: &Path) {
    for (from, to) in [(&leaf.key, key), (&leaf.cert, cert)] {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
}

fn counts(packets: &[Packet]) -> (usize, usize) {
    let video = packets.iter().filter(|p| p.video).count();
    (video, packets.len() - video)
}

/// ffmpeg publishes over rtmps://; a player over rtmps:// and one over plain rtmp:// each
/// receive every audio and video frame, decodable.
#[test]
fn ffmpeg_publishes_and_plays_over_rtmps_frame_exact() {
    let pki = Pki::new("tls-pki");
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "localhost");
    let (server, tls) = rtmps_server(&leaf, &[]);
    let dir = TempDir::new("rtmps");
    let secure = format!("rtmps://{tls}/live/secure");
    let mut viewers: Vec<_> = [secure.clone(), server.url("live/secure")]
        .into_iter()
        .enumerate()
        .map(|(i, url)| {
            let out = dir.path(&format!("view{i}.flv"));
            (
                ffmpeg_record(&url, &out, &dir.path(&format!("view{i}.log"))),
                out,
            )
        })
        .collect();
    server.wait_viewers("live", "secure", 2, Duration::from_secs(15));

    let sent = probe_packets(s(sample_flv()));
    let mut publisher = ffmpeg_publish(sample_flv(), &secure, &dir.path("pub.log"));
    wait_success(
        &mut publisher,
        Duration::from_secs(30),
        &dir.path("pub.log"),
    );
    for (i, (viewer, out)) in viewers.iter_mut().enumerate() {
        wait_success(
            viewer,
            Duration::from_secs(15),
            &dir.path(&format!("view{i}.log")),
        );
        let got = probe_packets(s(out));
        assert_eq!(counts(&got), counts(&sent), "viewer {i} got every frame");
        assert_eq!(decode_errors(out), "", "viewer {i} decodes cleanly");
    }
    let log = server.log();
    assert!(
        log.contains("tls=true") && log.contains("publish started"),
        "the publish came over TLS:\n{log}"
    );
}

/// A plain RTMP client on the RTMPS port and a TLS client on the plain port are each closed
/// with a reason that says what happened; with `rtmp.tls_only` the plain port is not opened.
#[test]
fn wrong_protocol_on_either_port_is_closed_with_a_reason() {
    let pki = Pki::new("tls-pki");
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "localhost");
    let (server, tls) = rtmps_server(&leaf, &[]);
    let dir = TempDir::new("wrong-proto");

    // ffmpeg speaking plain RTMP to the TLS port.
    let mut ff = ffmpeg_publish(
        sample_flv(),
        &format!("rtmp://{tls}/live/x"),
        &dir.path("plain.log"),
    );
    let status = ff
        .wait_timeout(Duration::from_secs(15))
        .expect("ffmpeg gives up");
    assert!(!status.success(), "plain RTMP on the RTMPS port must fail");
    assert!(
        server.wait_log(
            "wrong protocol: plain RTMP client on the RTMPS port",
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
    // A TLS client on the plain port.
    assert_eq!(
        presented_subject(server.rtmp),
        None,
        "no TLS on the plain port"
    );
    assert!(
        server.wait_log(
            "wrong protocol: TLS client on the plain RTMP port",
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
    assert_eq!(
        server.metric("liverelay_handshake_failures_total{reason=\"wrong_protocol\"}"),
        Some(2.0)
    );

    // TLS only: nothing listens on the plain port; RTMPS works.
    let (only, tls) = rtmps_server(&leaf, &[("LIVERELAY_RTMP__TLS_ONLY", "true")]);
    assert!(
        std::net::TcpStream::connect(only.rtmp).is_err(),
        "plain port closed"
    );
    assert!(presented_subject(tls).is_some_and(|s| s.contains("localhost")));
}

/// Replacing the certificate files: a new connection is shown the new certificate while a
/// publish that started before keeps flowing on its connection.
#[test]
fn certificate_rotates_without_a_restart() {
    let pki = Pki::new("tls-pki");
    let ca = pki.ca("test-ca");
    let old = pki.leaf(&ca, "localhost");
    let new = pki.leaf(&ca, "rotated");
    // The server reads copies, which the test then overwrites as cert-manager would.
    let (cert, key) = (pki.path("live.pem"), pki.path("live.key"));
    install(&old, &cert, &key);
    let (server, tls) = rtmps_server(
        &Leaf {
            cert: cert.clone(),
            key: key.clone(),
        },
        &[],
    );
    let subject = presented_subject(tls).expect("TLS handshake");
    assert!(subject.contains("CN = localhost"), "{subject}");

    let dir = TempDir::new("rotation");
    let mut publisher = looping_publisher(&format!("rtmps://{tls}/live/rot"), &dir.path("pub.log"));
    server.wait_live("live", "rot", Duration::from_secs(15));

    install(&new, &cert, &key);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let subject = presented_subject(tls).expect("TLS handshake");
        if subject.contains("CN = rotated") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still presenting {subject}; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.log().contains("TLS certificate reloaded"));
    let frames = |server: &Server| {
        server.stream_info("live", "rot").unwrap()["frames_in"]
            .as_u64()
            .unwrap()
    };
    let before = frames(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while frames(&server) < before + 50 {
        assert!(
            Instant::now() < deadline,
            "publish stopped flowing after rotation"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        publisher.is_running(),
        "the publisher's connection survived"
    );
    assert_eq!(
        server.log().matches("publish started").count(),
        1,
        "one publish, never restarted"
    );
}

/// `rtmp.max_connections` is one limit for both listeners: with 2, a connection on the plain
/// port and one on the RTMPS port fill it, and a third on the plain port is closed at accept.
#[test]
fn max_connections_counts_plain_and_rtmps_connections_together() {
    use std::io::Read;
    use std::net::TcpStream;

    let pki = Pki::new("tls-pki");
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "localhost");
    // Idle connections hold their slot through a long handshake timeout.
    let (server, tls) = rtmps_server(
        &leaf,
        &[
            ("LIVERELAY_RTMP__MAX_CONNECTIONS", "2"),
            ("LIVERELAY_RTMP__HANDSHAKE_TIMEOUT_SECS", "120"),
        ],
    );
    let _plain = TcpStream::connect(server.rtmp).unwrap();
    let _rtmps = TcpStream::connect(tls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("liverelay_connections_open") != Some(2.0) {
        assert!(Instant::now() < deadline, "two connections never open");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut third = TcpStream::connect(server.rtmp).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let read = third.read(&mut [0u8; 16]);
    assert!(
        matches!(read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the third connection was left open: {read:?}"
    );
    assert!(
        server.wait_log("connection refused: limit reached", Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

/// nginx's `stream` module terminating TLS in front of another nginx's RTMP module: a real
/// RTMPS server, as the platforms run (RTMP behind a TLS proxy).
struct TlsProxy {
    _child: ChildGuard,
    port: u16,
    _dir: TempDir,
}

impl TlsProxy {
    fn start(leaf: &Leaf, upstream: u16) -> Self {
        Self::start_checking_clients(leaf, upstream, None)
    }

    /// With `client_ca`, the proxy requires a client certificate signed by it.
    fn start_checking_clients(leaf: &Leaf, upstream: u16, client_ca: Option<&Ca>) -> Self {
        let dir = TempDir::new("tls-proxy");
        let port = free_port();
        let verify = client_ca.map_or_else(String::new, |ca| {
            format!(
                "ssl_verify_client on; ssl_client_certificate {};",
                ca.cert.display()
            )
        });
        let body = format!(
            "events {{ worker_connections 64; }}\n\
             stream {{ server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; \
             ssl_certificate_key {key}; {verify} proxy_pass 127.0.0.1:{upstream}; }} }}\n",
            cert = leaf.cert.display(),
            key = leaf.key.display(),
        );
        let child = support::nginx::run(
            &dir,
            "/usr/lib/nginx/modules/ngx_stream_module.so",
            &body,
            port,
        );
        Self {
            _child: child,
            port,
            _dir: dir,
        }
    }

    /// `rtmps://localhost:PORT/path`: by name, so SNI is sent and the name is verified.
    fn url(&self, path: &str) -> String {
        format!("rtmps://localhost:{}/{path}", self.port)
    }
}

/// A `[[relays]]` entry with short retries.
fn relay(kind: &str, url: &str, stream: &str, extra: &str) -> String {
    format!(
        "[[relays]]\nkind = \"{kind}\"\nurl = \"{url}\"\nstream = \"{stream}\"\n\
         initial_backoff_ms = 200\nmax_backoff_ms = 1000\n{extra}\n"
    )
}

/// The `GET /v1/relays` row of the relay on `stream` of `kind`, once `ok` holds for it.
fn wait_relay_row(
    server: &Server,
    kind: &str,
    stream: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http_request(server.http, "GET", "/v1/relays", Some("admin"), "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let row = v["relays"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind && r["stream"] == stream)
            .cloned();
        if let Some(row) = row.filter(|r| ok(r)) {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "{kind} relay of {stream}: {body}\nlog:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// ffmpeg plays `url` until it has decoded `frames` video frames.
fn plays(url: &str, frames: u32, log: &Path) {
    let mut ff = spawn_logged(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-i", url])
            .args(["-frames:v", &frames.to_string(), "-f", "null", "-"]),
        log,
    );
    wait_success(&mut ff, Duration::from_secs(20), log);
}

/// Static relays over RTMPS to and from a real RTMPS server, its certificate verified against
/// the configured CA by name (SNI); a relay trusting another CA is refused with the reason.
#[test]
fn push_and_pull_relays_to_a_real_rtmps_server() {
    let pki = Pki::new("tls-pki");
    let ca = pki.ca("test-ca");
    let other = pki.ca("other-ca");
    let leaf = pki.leaf(&ca, "localhost");
    let nginx = support::nginx::Nginx::start();
    let proxy = TlsProxy::start(&leaf, nginx.port);
    let dir = TempDir::new("rtmps-relays");
    let _upstream = looping_publisher(&nginx.url("live/src"), &dir.path("up.log"));

    let good = format!("tls_ca = \"{}\"", ca.cert.display());
    let wrong = format!("tls_ca = \"{}\"\nmax_attempts = 1", other.cert.display());
    let conf = dir.path("liverelay.toml");
    std::fs::write(
        &conf,
        [
            relay("pull", &proxy.url("live/src"), "live/pulled", &good),
            relay("push", &proxy.url("live/pushed"), "live/local", &good),
            relay("pull", &proxy.url("live/src"), "live/untrusted", &wrong),
        ]
        .concat(),
    )
    .unwrap();
    let server = Server::start_role(
        "standalone",
        &["--config", s(&conf)],
        &[("LIVERELAY_ADMIN_TOKEN", "admin")],
    );

    // Pull: the stream nginx has, through TLS, plays from liverelay.
    server.wait_live("live", "pulled", Duration::from_secs(20));
    plays(&server.url("live/pulled"), 10, &dir.path("play-pulled.log"));
    // Push: what is published here reaches nginx through TLS.
    let _local = looping_publisher(&server.url("live/local"), &dir.path("local.log"));
    wait_relay_row(&server, "push", "live/local", |r| r["state"] == "live");
    plays(&nginx.url("live/pushed"), 10, &dir.path("play-pushed.log"));

    // The wrong CA: refused for what it is, and no media flowed.
    let row = wait_relay_row(&server, "pull", "live/untrusted", |r| {
        r["state"] == "stopped" && r["attempts"] == 1
    });
    let error = row["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("tls: ") && error.contains("invalid peer certificate: UnknownIssuer"),
        "{row}"
    );
    assert!(server.stream_info("live", "untrusted").is_none());
}

/// An RTMPS server that requires a client certificate (nginx's `ssl_verify_client`): a pull
/// showing `tls_client_cert`/`tls_client_key` gets the stream; one without is refused by the
/// server and never goes live.
#[test]
fn relays_show_a_client_certificate_to_servers_that_require_one() {
    let pki = Pki::new("tls-pki");
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "localhost");
    let client = pki.leaf(&ca, "relay-client");
    let nginx = support::nginx::Nginx::start();
    let proxy = TlsProxy::start_checking_clients(&leaf, nginx.port, Some(&ca));
    let dir = TempDir::new("rtmps-client-cert");
    let _upstream = looping_publisher(&nginx.url("live/src"), &dir.path("up.log"));

    let ca_line = format!("tls_ca = \"{}\"", ca.cert.display());
    let with_cert = format!(
        "{ca_line}\ntls_client_cert = \"{}\"\ntls_client_key = \"{}\"",
        client.cert.display(),
        client.key.display()
    );
    let conf = dir.path("liverelay.toml");
    std::fs::write(
        &conf,
        [
            relay("pull", &proxy.url("live/src"), "live/shown", &with_cert),
            relay(
                "pull",
                &proxy.url("live/src"),
                "live/anonymous",
                &format!("{ca_line}\nmax_attempts = 1"),
            ),
        ]
        .concat(),
    )
    .unwrap();
    let server = Server::start_role(
        "standalone",
        &["--config", s(&conf)],
        &[("LIVERELAY_ADMIN_TOKEN", "admin")],
    );

    server.wait_live("live", "shown", Duration::from_secs(20));
    plays(&server.url("live/shown"), 10, &dir.path("play-shown.log"));
    let row = wait_relay_row(&server, "pull", "live/anonymous", |r| {
        r["state"] == "stopped" && r["attempts"] == 1
    });
    assert!(
        row["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{row}"
    );
    assert!(server.stream_info("live", "anonymous").is_none(), "{row}");
}

const TOKEN: &str = "test-cluster-token";

/// The `cluster.*` TLS settings of a pod: trust `ca`, check servers by the name `localhost`,
/// and show `client` when asked.
fn cluster_tls_env<'a>(ca: &'a Ca, client: Option<&'a Leaf>) -> Vec<(&'static str, &'a str)> {
    let mut env = vec![
        ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
        ("LIVERELAY_CLUSTER__TLS_CA", s(&ca.cert)),
        ("LIVERELAY_CLUSTER__TLS_DOMAIN", "localhost"),
    ];
    if let Some(leaf) = client {
        env.push(("LIVERELAY_CLUSTER__TLS_CLIENT_CERT", s(&leaf.cert)));
        env.push(("LIVERELAY_CLUSTER__TLS_CLIENT_KEY", s(&leaf.key)));
    }
    env
}

/// The settings of a gRPC server with mutual TLS: its certificate, and the CA client
/// certificates must come from.
fn mutual_tls_server_env<'a>(leaf: &'a Leaf, client_ca: &'a Ca) -> [(&'static str, &'a str); 3] {
    [
        ("LIVERELAY_CLUSTER__TLS_CERT", s(&leaf.cert)),
        ("LIVERELAY_CLUSTER__TLS_KEY", s(&leaf.key)),
        ("LIVERELAY_CLUSTER__TLS_CLIENT_CA", s(&client_ca.cert)),
    ]
}

/// The relay with mutual TLS: an edge with a certificate from the cluster's CA plays; an edge
/// without a certificate, or with one from another CA, is refused by the ingest's TLS.
#[test]
fn relay_with_mutual_tls_refuses_edges_without_a_valid_client_certificate() {
    let pki = Pki::new("tls-pki");
    let ca = pki.ca("cluster-ca");
    let other = pki.ca("other-ca");
    let server_cert = pki.leaf(&ca, "localhost");
    let edge_cert = pki.leaf(&ca, "edge");
    let rogue_cert = pki.leaf(&other, "rogue");
    let redis = support::redis::RedisServer::start();
    let url = redis.url();
    let dir = TempDir::new("mtls-relay");

    let mut env = cluster_tls_env(&ca, None);
    env.push(("POD_NAME", "ingest-a"));
    env.extend(mutual_tls_server_env(&server_cert, &ca));
    let ingest = Server::start_role("ingest", &["--redis-url", &url], &env);
    let _publisher = looping_publisher(&ingest.url("live/m"), &dir.path("pub.log"));
    ingest.wait_live("live", "m", Duration::from_secs(15));
    let log = ingest.log();
    assert!(
        log.contains(r#""message":"relay serves TLS","mutual":true"#),
        "{log}"
    );

    let edge = |pod: &str, client: Option<&Leaf>| {
        let mut env = cluster_tls_env(&ca, client);
        env.push(("POD_NAME", pod));
        Server::start_role("edge", &["--redis-url", &url], &env)
    };
    let good = edge("edge-good", Some(&edge_cert));
    plays(&good.url("live/m"), 10, &dir.path("play-good.log"));

    for (pod, client, reason) in [
        ("edge-none", None, "peer sent no certificates"),
        (
            "edge-rogue",
            Some(&rogue_cert),
            "invalid peer certificate: UnknownIssuer",
        ),
    ] {
        let mark = ingest.log_mark();
        let refused = edge(pod, client);
        // A player makes the edge subscribe; it never gets the stream.
        let _player = ffmpeg_record(
            &refused.url("live/m"),
            &dir.path(&format!("{pod}.flv")),
            &dir.path(&format!("{pod}.log")),
        );
        assert!(
            ingest.wait_log_since(mark, reason, Duration::from_secs(15)),
            "{pod}: the ingest names the refusal ({reason}):\n{}",
            ingest.log_since(mark)
        );
        assert!(
            ingest
                .log_since(mark)
                .contains("relay gRPC: TLS handshake failed")
        );
        assert_eq!(
            refused
                .stream_info("live", "m")
                .map(|s| s["frames_in"].clone()),
            Some(serde_json::json!(0)),
            "{pod} got no media"
        );
    }
}

/// A control serving gRPC with mutual TLS (certificate for `localhost` from the cluster's CA),
/// a stream key `live/keyed`, and certificates for its clients: one from the cluster's CA and
/// one from another CA.
struct MutualTlsControl {
    pki: Pki,
    ca: Ca,
    node_cert: Leaf,
    rogue_cert: Leaf,
    control: Server,
    _redis: support::redis::RedisServer,
    secret: String,
    dir: TempDir,
}

impl MutualTlsControl {
    fn start(tag: &str) -> Self {
        let pki = Pki::new("tls-pki");
        let ca = pki.ca("cluster-ca");
        let other = pki.ca("other-ca");
        let server_cert = pki.leaf(&ca, "localhost");
        let node_cert = pki.leaf(&ca, "node");
        let rogue_cert = pki.leaf(&other, "rogue");
        let redis = support::redis::RedisServer::start();
        let mut env = vec![
            ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
            ("LIVERELAY_ADMIN_TOKEN", "admin"),
            ("POD_NAME", "control-0"),
        ];
        env.extend(mutual_tls_server_env(&server_cert, &ca));
        let control = Server::start_role("control", &["--redis-url", &redis.url()], &env);
        let log = control.log();
        assert!(
            log.contains(r#""message":"control gRPC serves TLS","mutual":true"#),
            "{log}"
        );
        let secret = create_stream_key(control.http, "admin", "live", "keyed");
        Self {
            pki,
            ca,
            node_cert,
            rogue_cert,
            control,
            _redis: redis,
            secret,
            dir: TempDir::new(tag),
        }
    }

    /// A standalone checking stream keys with this control, showing `client` when asked.
    fn node(&self, client: Option<&Leaf>) -> Server {
        let control_url = format!("https://localhost:{}", self.control.grpc.port());
        Server::start_role(
            "standalone",
            &["--control-url", &control_url],
            &cluster_tls_env(&self.ca, client),
        )
    }

    /// The publish URL of the stream key on `node`.
    fn keyed_url(&self, node: &Server) -> String {
        node.url(&format!("live/{}", self.secret))
    }

    /// A publish with the key on `node` is refused, and control logged `reason` after `mark`.
    fn publish_refused(&self, node: &Server, mark: usize, name: &str, reason: &str) {
        let log = self.dir.path(&format!("pub-{name}.log"));
        let mut publisher = ffmpeg_publish(sample_flv(), &self.keyed_url(node), &log);
        let status = publisher
            .wait_timeout(Duration::from_secs(20))
            .expect("publish refused");
        assert!(!status.success(), "{name}: publish must be refused");
        assert!(
            self.control
                .wait_log_since(mark, reason, Duration::from_secs(5)),
            "{name}: control names the refusal ({reason}):\n{}",
            self.control.log_since(mark)
        );
        assert!(node.stream_info("live", "keyed").is_none());
    }
}

/// Control's gRPC with mutual TLS: a pod with a certificate from the cluster's CA has a stream
/// key checked and publishes; one without a certificate, or with one from another CA, is
/// refused by control's TLS and its publish denied.
#[test]
fn control_grpc_with_mutual_tls() {
    let c = MutualTlsControl::start("mtls-control");
    let good = c.node(Some(&c.node_cert));
    let _publisher = looping_publisher(&c.keyed_url(&good), &c.dir.path("pub.log"));
    good.wait_live("live", "keyed", Duration::from_secs(15));

    for (name, client, reason) in [
        ("none", None, "peer sent no certificates"),
        (
            "rogue",
            Some(&c.rogue_cert),
            "invalid peer certificate: UnknownIssuer",
        ),
    ] {
        let mark = c.control.log_mark();
        let refused = c.node(client);
        c.publish_refused(&refused, mark, name, reason);
    }
}

/// The control client reads its certificate at each connection: a pod whose files hold a
/// certificate from another CA is refused by control; once they hold one from the cluster's
/// CA, its next connection shows it and the keyed publish goes through, without a restart.
#[test]
fn control_client_certificate_is_read_at_each_connection() {
    let c = MutualTlsControl::start("mtls-control-rotation");
    // The pod's files start with the rogue certificate.
    let live = Leaf {
        cert: c.pki.path("client-live.pem"),
        key: c.pki.path("client-live.key"),
    };
    install(&c.rogue_cert, &live.cert, &live.key);
    let mark = c.control.log_mark();
    let node = c.node(Some(&live));
    c.publish_refused(
        &node,
        mark,
        "rogue",
        "invalid peer certificate: UnknownIssuer",
    );

    // Renewed in place: the next connection to control shows the cluster CA's certificate.
    install(&c.node_cert, &live.cert, &live.key);
    let _publisher = looping_publisher(&c.keyed_url(&node), &c.dir.path("pub.log"));
    node.wait_live("live", "keyed", Duration::from_secs(20));
}

/// GStreamer's own RTMP stack over TLS (GIO): `rtmp2sink` publishes over rtmps://, `rtmp2src`
/// waiting before the publish plays over rtmps:// and records every picture. GIO reads its CAs
/// only from the system store (no file or variable to point it at the test's CA), so both
/// validate everything but the issuer: the name (`localhost`), dates and signature are checked.
#[test]
fn gstreamer_rtmp2_over_rtmps() {
    const FRAMES: usize = 75;
    const ALL_BUT_UNKNOWN_CA: &str =
        "bad-identity+not-activated+expired+revoked+insecure+generic-error";
    let pki = Pki::new("tls-pki");
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "localhost");
    let (server, tls) = rtmps_server(&leaf, &[]);
    let dir = TempDir::new("gst-rtmps");
    let url = format!("rtmps://localhost:{}/live/gst", tls.port());
    let recording = dir.path("view.flv");
    let view_log = dir.path("view.log");
    let mut viewer = spawn_logged(
        Command::new("gst-launch-1.0").args(["-q", "-e"]).args(
            format!(
                "rtmp2src location={url} tls-validation-flags={ALL_BUT_UNKNOWN_CA} \
                 ! filesink location={}",
                recording.display()
            )
            .split_whitespace(),
        ),
        &view_log,
    );
    // A plain-RTMP ffmpeg viewer of the same stream: it shows what the server delivered.
    let plain_rec = dir.path("plain.flv");
    let mut plain = ffmpeg_record(&server.url("live/gst"), &plain_rec, &dir.path("plain.log"));
    server.wait_viewers("live", "gst", 2, Duration::from_secs(15));
    let pub_log = dir.path("pub.log");
    let mut publisher = spawn_logged(
        Command::new("gst-launch-1.0").args(["-q", "-e"]).args(
            format!(
                "videotestsrc is-live=true num-buffers={FRAMES} \
                 ! video/x-raw,format=I420,width=320,height=240,framerate=25/1 \
                 ! x264enc speed-preset=superfast key-int-max=50 ! h264parse \
                 ! flvmux streamable=true \
                 ! rtmp2sink location={url} tls-validation-flags={ALL_BUT_UNKNOWN_CA}"
            )
            .split_whitespace(),
        ),
        &pub_log,
    );
    wait_success(&mut publisher, Duration::from_secs(30), &pub_log);
    wait_success(&mut viewer, Duration::from_secs(15), &view_log);
    plain
        .wait_timeout(Duration::from_secs(15))
        .expect("the plain viewer ends with the stream");
    assert_eq!(
        counts(&probe_packets(s(&plain_rec))),
        (FRAMES, 0),
        "the server delivered every picture"
    );
    // rtmp2src over TLS sometimes records all but the last picture (1 run in 3 to 1 in 18 on
    // 2026-11-30, before and after that day's changes) while the plain viewer above, in the
    // same run, gets all 75: the server received and sent every picture. Likely (not proven)
    // cause: over TLS the last picture and the end-of-stream notice arrive in one read, and
    // rtmp2src stops before pushing the picture.
    let (pictures, other) = counts(&probe_packets(s(&recording)));
    assert!(
        (FRAMES - 1..=FRAMES).contains(&pictures) && other == 0,
        "rtmp2src got every picture (at most the last missing): {pictures} of {FRAMES}, \
         {other} other packets"
    );
    assert_eq!(decode_errors(&recording), "");
    assert!(server.log().contains("tls=true"));
}

/// Every hop encrypted: ffmpeg publishes over rtmps:// to an ingest, the relay to the edge runs
/// over mutual TLS, and ffmpeg plays over rtmps:// from the edge: every audio and video frame.
#[test]
fn publish_to_an_ingest_and_play_from_an_edge_over_rtmps() {
    let pki = Pki::new("tls-pki");
    let ca = pki.ca("cluster-ca");
    let leaf = pki.leaf(&ca, "localhost");
    let redis = support::redis::RedisServer::start();
    let url = redis.url();
    let dir = TempDir::new("rtmps-cluster");
    let mut ingest_env = cluster_tls_env(&ca, None);
    ingest_env.push(("POD_NAME", "ingest-a"));
    ingest_env.extend(mutual_tls_server_env(&leaf, &ca));
    let (ingest, ingest_tls) = rtmps_node("ingest", &["--redis-url", &url], &leaf, &ingest_env);
    let mut edge_env = cluster_tls_env(&ca, Some(&leaf));
    edge_env.push(("POD_NAME", "edge-a"));
    let (edge, edge_tls) = rtmps_node("edge", &["--redis-url", &url], &leaf, &edge_env);

    let recording = dir.path("view.flv");
    let mut viewer = ffmpeg_record(
        &format!("rtmps://{edge_tls}/live/all"),
        &recording,
        &dir.path("view.log"),
    );
    edge.wait_viewers("live", "all", 1, Duration::from_secs(15));
    let sent = probe_packets(s(sample_flv()));
    let pub_log = dir.path("pub.log");
    let mut publisher = ffmpeg_publish(
        sample_flv(),
        &format!("rtmps://{ingest_tls}/live/all"),
        &pub_log,
    );
    wait_success(&mut publisher, Duration::from_secs(30), &pub_log);
    wait_success(&mut viewer, Duration::from_secs(20), &dir.path("view.log"));
    let got = probe_packets(s(&recording));
    assert_eq!(
        counts(&got),
        counts(&sent),
        "the edge's player got every frame"
    );
    assert_eq!(decode_errors(&recording), "");
    assert!(ingest.log().contains(r#""tls":true"#), "published over TLS");
}

/// `http.tls_cert`/`tls_key`: health, readiness and metrics are served over HTTPS (checked by
/// curl against the test's CA), and plain HTTP on that port gets no answer. A slowloris client
/// over TLS is closed at the header-read timeout as on plain HTTP.
#[test]
fn http_endpoints_over_https() {
    let pki = Pki::new("tls-pki");
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "localhost");
    let dir = TempDir::new("https");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let rtmp = format!("127.0.0.1:{}", free_port());
    let log = dir.path("liverelay.log");
    let _server = spawn_logged(
        Command::new(env!("CARGO_BIN_EXE_liverelay"))
            .args([
                "standalone",
                "--rtmp-listen",
                &rtmp,
                "--http-listen",
                &http.to_string(),
            ])
            .env("LIVERELAY_HTTP__TLS_CERT", &leaf.cert)
            .env("LIVERELAY_HTTP__TLS_KEY", &leaf.key)
            .env("LIVERELAY_HTTP__HEADER_READ_TIMEOUT_SECS", "2"),
        &log,
    );
    let get = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "3", "--cacert", s(&ca.cert)])
            .arg(format!("https://localhost:{}{path}", http.port()))
            .output()
            .expect("curl runs");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while get("/readyz").as_deref() != Some("ready\n") {
        assert!(
            Instant::now() < deadline,
            "no HTTPS readiness; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(get("/metrics").is_some_and(|m| m.contains("liverelay_connections_open")));
    assert_eq!(
        try_http_request(http, "GET", "/readyz", None, ""),
        None,
        "no plain HTTP"
    );

    // Headers trickled over TLS, a byte every 100 ms: openssl exits when the server closes.
    let mut slow = ChildGuard::spawn(
        Command::new("openssl")
            .args(["s_client", "-quiet", "-CAfile", s(&ca.cert)])
            .args(["-connect", &http.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut input = slow.stdin().expect("openssl's stdin");
    let start = Instant::now();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    for b in request.iter().chain(std::iter::repeat(&b'a')).take(150) {
        if !slow.is_running() || std::io::Write::write_all(&mut input, &[*b]).is_err() {
            break;
        }
        let _ = std::io::Write::flush(&mut input);
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = start.elapsed();
    assert!(
        slow.wait_timeout(Duration::from_secs(1)).is_some(),
        "a TLS client trickling headers for {took:?} was never closed"
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "closed after {took:?}, expected about the 2 s header-read timeout"
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("request headers not received within 2s"),
        "no log line with the reason:\n{logged}"
    );
}

/// With `http.tls_cert`/`tls_key` both HTTP listeners (private and public) speak HTTPS, and
/// HTTP/2 by ALPN to a client that offers it, as browsers do: an LL-HLS playlist comes over
/// HTTP/2 from each (curl `--http2`), and over HTTP/1.1 to a client that offers only that. The
/// public listener answers `/metrics` with 404 over HTTPS too.
#[test]
fn playback_over_https_speaks_http2_by_alpn() {
    let pki = Pki::new("h2-pki");
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "localhost");
    let dir = TempDir::new("https-h2");
    let port = || format!("127.0.0.1:{}", free_port());
    let (rtmp, http, public) = (port(), port(), port());
    let log = dir.path("liverelay.log");
    let _server = spawn_logged(
        Command::new(env!("CARGO_BIN_EXE_liverelay"))
            .args(["standalone", "--rtmp-listen", &rtmp, "--http-listen", &http])
            .args(["--public-http-listen", &public])
            .env("LIVERELAY_HTTP__TLS_CERT", &leaf.cert)
            .env("LIVERELAY_HTTP__TLS_KEY", &leaf.key),
        &log,
    );
    let get = |addr: &str, path: &str, version: &str| {
        let port = addr.rsplit(':').next().unwrap();
        let url = format!("https://localhost:{port}{path}");
        let got = support::curl::get(&["--cacert", s(&ca.cert), version], &url);
        (got.status, got.version.clone(), got.text())
    };
    let wait_for = |what: &str, path: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while get(&http, path, "--http2").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "{what} never came; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("HTTPS readiness", "/readyz");
    let _publisher = looping_publisher(&format!("rtmp://{rtmp}/live/h2"), &dir.path("pub.log"));
    let playlist = "/hls/live/h2/index.m3u8";
    wait_for("the HLS playlist", playlist);

    for addr in [&http, &public] {
        let (status, version, body) = get(addr, playlist, "--http2");
        assert_eq!(
            (status, version.as_str()),
            (200, "2"),
            "HTTP/2 by ALPN on {addr}"
        );
        assert!(body.starts_with("#EXTM3U"), "{body}");
        let (status, version, _) = get(addr, playlist, "--http1.1");
        assert_eq!(
            (status, version.as_str()),
            (200, "1.1"),
            "HTTP/1.1 on {addr}"
        );
    }
    assert_eq!(get(&http, "/metrics", "--http2").0, 200);
    assert_eq!(
        get(&public, "/metrics", "--http2").0,
        404,
        "no metrics on the public listener"
    );
}

/// The environment of an ingest that reaches the cluster's Redis over `rediss://`, trusting
/// `ca` (and showing `client`, when given).
fn redis_tls_env<'a>(
    pod: &'a str,
    ca: &'a Ca,
    client: Option<&'a Leaf>,
) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("LIVERELAY_CLUSTER_TOKEN", "redis-tls-token"),
        ("POD_NAME", pod),
        ("LIVERELAY_REDIS__TLS_CA", s(&ca.cert)),
    ];
    if let Some(client) = client {
        env.push(("LIVERELAY_REDIS__TLS_CLIENT_CERT", s(&client.cert)));
        env.push(("LIVERELAY_REDIS__TLS_CLIENT_KEY", s(&client.key)));
    }
    env
}

/// Waits until `lookup` finds the stream's registry record; returns it.
fn wait_record(lookup: impl Fn() -> Option<String>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(record) = lookup() {
            return record;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The cluster's Redis over TLS with client certificates required: an ingest trusting the
/// server's CA and showing a certificate registers its stream over `rediss://`; an ingest
/// given another CA refuses the server and says why in its log.
#[test]
fn ingest_registers_streams_over_rediss() {
    use support::redis::{RedisServer, RedisTls};
    let pki = Pki::new("redis-tls");
    let ca = pki.ca("redis-ca");
    let server_cert = pki.leaf(&ca, "redis-server");
    let client = pki.leaf(&ca, "redis-client");
    let redis = RedisServer::start_tls(&RedisTls {
        cert: &server_cert.cert,
        key: &server_cert.key,
        ca: &ca.cert,
        require_client_cert: true,
    });
    let url = redis.tls_url();
    let ingest = Server::start_role(
        "ingest",
        &["--redis-url", &url],
        &redis_tls_env("ingest-tls", &ca, Some(&client)),
    );
    let dir = TempDir::new("redis-tls");
    let log = dir.path("pub.log");
    let mut publisher = ffmpeg_publish(sample_flv(), &ingest.url("live/tls"), &log);
    let record = wait_record(
        || redis.record("live", "tls").map(|r| r.to_string()),
        "the stream registered over rediss://",
    );
    assert!(record.contains("\"owner\":\"ingest-tls\""), "{record}");
    wait_success(&mut publisher, Duration::from_secs(30), &log);

    let other = pki.ca("other-ca");
    let untrusting = Server::start_role(
        "ingest",
        &["--redis-url", &url],
        &redis_tls_env("ingest-wrong-ca", &other, Some(&client)),
    );
    assert!(
        untrusting.wait_log("cannot reach Redis", Duration::from_secs(15)),
        "no log line about the refused Redis:\n{}",
        untrusting.log()
    );
    let logged = untrusting.log();
    assert!(
        logged.contains("invalid peer certificate: UnknownIssuer"),
        "the log does not name the certificate problem:\n{logged}"
    );
}

/// Redis Cluster over TLS (`--tls-cluster`): the cluster client reaches every node through
/// the TLS ports the seeds announce, and the stream is registered in the cluster.
#[test]
fn ingest_registers_streams_in_a_redis_cluster_over_rediss() {
    use support::redis::{RedisCluster, RedisTls};
    let pki = Pki::new("redis-cluster-tls");
    let ca = pki.ca("redis-ca");
    let server_cert = pki.leaf(&ca, "redis-node");
    let redis = RedisCluster::start_tls(&RedisTls {
        cert: &server_cert.cert,
        key: &server_cert.key,
        ca: &ca.cert,
        require_client_cert: false,
    });
    let mut env = redis_tls_env("ingest-cluster-tls", &ca, None);
    env.push(("LIVERELAY_REDIS__CLUSTER", "true"));
    let ingest = Server::start_role("ingest", &["--redis-url", &redis.tls_urls()], &env);
    let dir = TempDir::new("redis-cluster-tls");
    let log = dir.path("pub.log");
    let mut publisher = ffmpeg_publish(sample_flv(), &ingest.url("live/ctls"), &log);
    let record = wait_record(
        || redis.get("liverelay:stream:{live/ctls}"),
        "the stream registered in the cluster over rediss://",
    );
    assert!(
        record.contains("\"owner\":\"ingest-cluster-tls\""),
        "{record}"
    );
    wait_success(&mut publisher, Duration::from_secs(30), &log);
}
