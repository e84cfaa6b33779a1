//! Hostile RTMP clients before authentication, against a real `liverelay standalone`: names
//! that are too long or hold control characters, peers that never `connect` or never publish,
//! oversized and unfinished messages, an AMF reference bomb, plays on made-up message stream
//! ids, connections beyond the per-address limit, refused clients that keep talking. Each
//! attack costs the attacker its connection, with a log line saying why, and a bystander stream
//! on the same server keeps every frame.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use liverelay_rtmp::amf::{self, Amf0Value};
use liverelay_rtmp::chunk::encode_message;
use liverelay_rtmp::command::encode_command;
use liverelay_rtmp::message::{RawMessage, type_id};
use liverelay_rtmp::session::ClientEvent;
use support::hooks::{HookServer, Reply};
use support::rtmp::TestClient;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects from `local` (any port) and runs a simple handshake; the socket is then where a
/// client would send `connect`.
async fn handshaken_from(server: SocketAddr, local: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let mut socket = socket.connect(server).await.expect("connect");
    let mut c0c1 = vec![3u8];
    c0c1.resize(1 + 1536, 0);
    socket.write_all(&c0c1).await.unwrap();
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    socket.read_exact(&mut s0s1s2).await.expect("S0 S1 S2");
    socket.write_all(&s0s1s2[1..1 + 1536]).await.unwrap();
    socket
}

async fn handshaken(server: SocketAddr) -> TcpStream {
    handshaken_from(server, "127.0.0.1").await
}

/// A command message on message stream `stream_id`, chunked at the initial 128 bytes on chunk
/// stream 3.
fn command(stream_id: u32, name: &str, txn: f64, values: &[Amf0Value]) -> Bytes {
    command_body(stream_id, encode_command(name, txn, values))
}

fn command_body(stream_id: u32, payload: Bytes) -> Bytes {
    let msg = RawMessage {
        timestamp: 0,
        type_id: type_id::COMMAND_AMF0,
        stream_id,
        payload,
    };
    encode_message(3, &msg, 128)
}

fn connect_command(app: &str) -> Bytes {
    let object = Amf0Value::object([
        ("app", Amf0Value::String(app.into())),
        (
            "tcUrl",
            Amf0Value::String(format!("rtmp://127.0.0.1/{app}")),
        ),
    ]);
    command(0, "connect", 1.0, &[object])
}

/// Reads until the server closes the socket; how long that took from `since`, or `None` if it
/// was still open at `limit`.
async fn closed_after(socket: &mut TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = limit.saturating_sub(since.elapsed());
        match tokio::time::timeout(left, socket.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

async fn assert_closed(socket: &mut TcpStream, what: &str) {
    assert!(
        closed_after(socket, Instant::now(), Duration::from_secs(5))
            .await
            .is_some(),
        "{what}: the server kept the connection open"
    );
}

/// Waits for the log to show `text` after `mark`, failing with the log.
fn assert_logged(server: &Server, mark: usize, text: &str) {
    assert!(
        server.wait_log_since(mark, text, Duration::from_secs(5)),
        "no log line with {text:?}:\n{}",
        server.log_since(mark)
    );
}

/// The first status (`onStatus` or `_error` code) the client gets, reading until the
/// connection closes.
async fn first_status(client: &mut TestClient) -> Option<String> {
    match client
        .expect(Duration::from_secs(5), |e| {
            matches!(e, ClientEvent::Status { .. })
        })
        .await
    {
        Some(ClientEvent::Status { code, .. }) => Some(code),
        _ => None,
    }
}

/// Too long, or with control characters: refused with the BadName status of the command (or
/// Connect.Rejected for the app) before anything sees the name; the log gives only its length.
/// A `play` on a message stream the connection never created is refused as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_unknown_stream_ids_are_refused_before_anything_sees_them() {
    let dir = TempDir::new("hostile-names");
    let server = Server::start();
    let bystander = Bystander::start(&server, "cam", &dir);
    // A marker that must never reach the log: each bad name carries it.
    let marker = "zqxmarker";
    let long = format!("{marker}{}", "n".repeat(300));

    let mark = server.log_mark();
    let (_, answer) = TestClient::try_connect(server.rtmp, &long).await;
    let Some(ClientEvent::ConnectFailed { info }) = answer else {
        panic!("a 309-byte app was not refused: {answer:?}")
    };
    assert_eq!(
        info.get("code").and_then(Amf0Value::as_str),
        Some("NetConnection.Connect.Rejected")
    );
    assert_logged(
        &server,
        mark,
        "bad app name: name of 309 bytes is longer than 256",
    );

    let mut publisher = TestClient::connect(server.rtmp, "live").await;
    let (_, _, code) = publisher.publish(&format!("{long}?key=1")).await;
    assert_eq!(code, "NetStream.Publish.BadName");
    assert_logged(
        &server,
        mark,
        "bad stream name: name of 309 bytes is longer than 256",
    );

    let mut player = TestClient::connect(server.rtmp, "live").await;
    let name = format!("{marker}\n2026-01-01T00:00:00Z INFO forged line\x1b[31m");
    assert_eq!(player.play_status(&name).await, "NetStream.Play.BadName");
    assert_logged(
        &server,
        mark,
        "bad stream name: name contains a control character",
    );
    assert!(player.closed_by_server(Duration::from_secs(5)).await);

    // A play on message stream 7 of a connection that created only stream 1.
    let mut player = TestClient::connect(server.rtmp, "live").await;
    let created = player.create_stream().await;
    assert_eq!(created, 1);
    player.send_play(7, "cam");
    assert_eq!(
        first_status(&mut player).await.as_deref(),
        Some("NetStream.Play.Failed")
    );
    assert_logged(
        &server,
        mark,
        "'play' on message stream 7, which was never created",
    );
    assert!(player.closed_by_server(Duration::from_secs(5)).await);

    bystander.assert_every_frame();
    assert!(
        !server.log().contains(marker),
        "a refused name reached the log"
    );
    let (_, streams) = server.http_get("/v1/streams");
    assert!(!streams.contains(marker), "a refused name became a stream");
}

/// With `rtmp.connect_timeout_secs` = 1 and `start_timeout_secs` = 2: a peer that finishes the
/// handshake and never sends `connect`, and one that connects, answers every ping and never
/// publishes or plays, are each closed after their deadline with the reason in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_never_connect_or_never_start_are_closed_at_their_deadline() {
    let dir = TempDir::new("hostile-deadlines");
    let server = Server::start_with(&[
        ("LIVERELAY_RTMP__CONNECT_TIMEOUT_SECS", "1"),
        ("LIVERELAY_RTMP__START_TIMEOUT_SECS", "2"),
        ("LIVERELAY_RTMP__PING_INTERVAL_SECS", "1"),
        ("LIVERELAY_RTMP__IDLE_TIMEOUT_SECS", "60"),
    ]);
    let bystander = Bystander::start(&server, "cam", &dir);
    let mark = server.log_mark();

    let started = Instant::now();
    let mut silent = handshaken(server.rtmp).await;
    let closed = closed_after(&mut silent, started, Duration::from_secs(10)).await;
    let closed = closed.expect("a peer that never connects is still open after 10 s");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(5)).contains(&closed),
        "closed after {closed:?}; the connect deadline is 1 s"
    );
    assert_logged(&server, mark, "no connect within 1s of the handshake");

    let started = Instant::now();
    let mut idle = TestClient::connect(server.rtmp, "live").await;
    // Reading answers the server's pings (every second here): only the deadline can end it.
    while idle.next_event(Duration::from_secs(10)).await.is_some() {}
    assert!(
        idle.is_closed(),
        "a connected idle peer is still open after 10 s"
    );
    let closed = started.elapsed();
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(6)).contains(&closed),
        "closed after {closed:?}; the publish-or-play deadline is 2 s"
    );
    assert!(
        !idle.pings().is_empty(),
        "the idle peer was pinged (and answered) before the deadline"
    );
    assert_logged(&server, mark, "no publish or play within 2s of connect");

    bystander.assert_every_frame();
}

/// Before a publish is accepted a message may be 64 KiB at most; an accepted publisher may hold
/// at most 2 x `rtmp.max_message_size` in unfinished messages over all its chunk streams (not
/// 64 chunk streams x 8 MiB); an AMF reference bomb in a ~300-byte `connect` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_unfinished_and_exploding_messages_cost_only_the_connection() {
    let dir = TempDir::new("hostile-messages");
    let server = Server::start();
    let bystander = Bystander::start(&server, "cam", &dir);
    let mark = server.log_mark();

    // A connected client announces a 100,000-byte command: refused at the chunk header.
    let mut client = TestClient::connect(server.rtmp, "live").await;
    let big = RawMessage {
        timestamp: 0,
        type_id: type_id::COMMAND_AMF0,
        stream_id: 0,
        payload: Bytes::from(vec![0u8; 100_000]),
    };
    client
        .send_raw(&encode_message(9, &big, 4096)[..12 + 4096])
        .await;
    assert!(client.closed_by_server(Duration::from_secs(5)).await);
    assert_logged(
        &server,
        mark,
        "message of 100000 bytes exceeds the limit of 65536",
    );

    // An accepted publisher starts an 8 MiB message on chunk stream after chunk stream.
    let mut publisher = TestClient::connect(server.rtmp, "live").await;
    let (id, _, code) = publisher.publish("flood").await;
    assert_eq!(code, "NetStream.Publish.Start");
    let mut wire = BytesMut::new();
    let chunk: u32 = 65536;
    wire.put_slice(&encode_message(
        2,
        &RawMessage {
            timestamp: 0,
            type_id: type_id::SET_CHUNK_SIZE,
            stream_id: 0,
            payload: Bytes::copy_from_slice(&chunk.to_be_bytes()),
        },
        4096,
    ));
    let eight_mib = RawMessage {
        timestamp: 0,
        type_id: type_id::VIDEO,
        stream_id: id,
        payload: Bytes::from(vec![0x17u8; 8 << 20]),
    };
    for csid in 10..74 {
        wire.put_slice(&encode_message(csid, &eight_mib, chunk)[..12 + chunk as usize]);
    }
    publisher.send_raw(&wire).await;
    assert!(publisher.closed_by_server(Duration::from_secs(5)).await);
    assert_logged(
        &server,
        mark,
        "unfinished messages would hold 25165824 bytes, over the limit of 16777216",
    );

    // An AMF0 reference bomb as an argument of connect: 14 levels of arrays that each hold two
    // references to the one before, ~200 bytes that would copy 2^14 values (~1 MB; a fixed
    // 64 MiB budget let it through, and bigger bombs cost 64 MiB of copying each).
    let mut body = BytesMut::from(
        &encode_command(
            "connect",
            1.0,
            &[Amf0Value::object([(
                "app",
                Amf0Value::String("live".into()),
            )])],
        )[..],
    );
    amf::encode(&Amf0Value::Null, &mut body);
    body.put_slice(&[0x0A, 0, 0, 0, 0x0F, 0x0A, 0, 0, 0, 0]);
    for k in 1..15u8 {
        body.put_slice(&[0x0A, 0, 0, 0, 2, 0x07, 0x00, k + 1, 0x07, 0x00, k + 1]);
    }
    let mut bomb = handshaken(server.rtmp).await;
    bomb.write_all(&command_body(0, body.freeze()))
        .await
        .unwrap();
    assert_closed(&mut bomb, "AMF reference bomb").await;
    assert_logged(
        &server,
        mark,
        "AMF value would copy more than the decoder's memory budget",
    );

    bystander.assert_every_frame();
}

/// A client refused by `on_publish` that sent a `play` in the same write causes no `on_play`
/// callback; a name a callback renames to follows the clients' rule; a second `connect` on one
/// connection is refused without a second `on_connect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_causes_no_more_callbacks() {
    let dir = TempDir::new("hostile-callbacks");
    // Only `live/pub` is refused: the bystander publishes `live/cam`.
    let hooks = HookServer::start(|hook| {
        match (
            hook.path.as_str(),
            hook.form().get("name").map(String::as_str),
        ) {
            ("/on_publish", Some("pub")) => Reply::status(403),
            // A callback that renames to a name no client could have sent.
            ("/on_publish", Some("renamed")) => Reply::redirect(&"r".repeat(300)),
            _ => Reply::status(200),
        }
    });
    let mut toml = String::from("[[notify]]\n");
    for call in ["on_connect", "on_publish", "on_play"] {
        toml += &format!("{call} = \"{}\"\n", hooks.url(&format!("/{call}")));
    }
    let config = dir.path("notify.toml");
    std::fs::write(&config, toml).unwrap();
    let server = Server::start_role("standalone", &["--config", config.to_str().unwrap()], &[]);
    let bystander = Bystander::start(&server, "cam", &dir);
    let mark = server.log_mark();

    // connect, createStream, publish (refused) and play, all in one write.
    let mut socket = handshaken(server.rtmp).await;
    let mut wire = BytesMut::from(&connect_command("live")[..]);
    wire.put_slice(&command(0, "createStream", 2.0, &[Amf0Value::Null]));
    let name = |s: &str| Amf0Value::String(s.into());
    wire.put_slice(&command(
        1,
        "publish",
        3.0,
        &[Amf0Value::Null, name("pub"), name("live")],
    ));
    wire.put_slice(&command(1, "play", 4.0, &[Amf0Value::Null, name("other")]));
    socket.write_all(&wire).await.unwrap();
    assert_closed(&mut socket, "refused publisher").await;
    assert_logged(&server, mark, "refused: refused by access");

    // A name chosen by a callback follows the clients' rule.
    let mut renamed = TestClient::connect(server.rtmp, "live").await;
    let (_, _, code) = renamed.publish("renamed").await;
    assert_eq!(code, "NetStream.Publish.BadName");
    assert_logged(
        &server,
        mark,
        "access chose an invalid app or stream name: name of 300 bytes is longer than 256",
    );

    // Two connects in one write: one on_connect, then the second closes the connection.
    let mut socket = handshaken(server.rtmp).await;
    let mut wire = BytesMut::from(&connect_command("twice")[..]);
    wire.put_slice(&connect_command("twice"));
    socket.write_all(&wire).await.unwrap();
    assert_closed(&mut socket, "second connect").await;
    assert_logged(&server, mark, "second connect on one connection");

    let seen = hooks.seen();
    let count = |path: &str, field: &str, value: &str| {
        seen.iter()
            .filter(|h| h.path == path && h.form().get(field).map(String::as_str) == Some(value))
            .count()
    };
    assert_eq!(count("/on_publish", "name", "pub"), 1, "{seen:?}");
    assert_eq!(
        count("/on_play", "name", "other"),
        0,
        "on_play after a refusal"
    );
    assert_eq!(
        count("/on_connect", "app", "twice"),
        1,
        "on_connect per connect"
    );
    bystander.assert_every_frame();
}

/// With `rtmp.max_connections_per_ip` = 3 and `max_connections` = 4: a fourth connection from
/// 127.0.0.1 is refused at accept while 127.0.0.2 still gets in; the global limit still counts
/// every address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_client_address_are_limited() {
    let dir = TempDir::new("hostile-per-ip");
    let server = Server::start_with(&[
        ("LIVERELAY_RTMP__MAX_CONNECTIONS_PER_IP", "3"),
        ("LIVERELAY_RTMP__MAX_CONNECTIONS", "4"),
    ]);
    // Two connections from 127.0.0.1: the bystander's recorder and publisher.
    let bystander = Bystander::start(&server, "cam", &dir);
    server.wait_live("live", "cam", Duration::from_secs(10));
    let mark = server.log_mark();

    let _third = handshaken_from(server.rtmp, "127.0.0.1").await;
    let mut fourth = TcpStream::connect(server.rtmp).await.unwrap();
    assert_closed(&mut fourth, "a 4th connection from 127.0.0.1").await;
    assert_logged(
        &server,
        mark,
        "connection refused: limit per client address reached",
    );

    let _other = handshaken_from(server.rtmp, "127.0.0.2").await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut over = socket.connect(server.rtmp).await.unwrap();
    assert_closed(&mut over, "a 5th connection in all").await;
    assert_logged(&server, mark, "connection refused: limit reached");

    bystander.assert_every_frame();
}

/// `rtmp.max_message_size` above the chunk codec's 24-bit message length is refused when the
/// configuration is loaded, instead of failing on the first large frame.
#[test]
fn a_max_message_size_the_wire_cannot_carry_is_refused_at_startup() {
    let dir = TempDir::new("hostile-config");
    let log = dir.path("liverelay.log");
    let mut child = spawn_logged(
        std::process::Command::new(env!("CARGO_BIN_EXE_liverelay"))
            .args(["standalone", "--rtmp-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .env("LIVERELAY_RTMP__MAX_MESSAGE_SIZE", "16777216"),
        &log,
    );
    let status = child
        .wait_timeout(Duration::from_secs(10))
        .expect("liverelay still runs with rtmp.max_message_size = 16777216");
    assert!(!status.success());
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.contains("rtmp.max_message_size must be 1..=16777215"),
        "{out}"
    );
}
