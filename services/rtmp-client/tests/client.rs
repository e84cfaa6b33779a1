//! The client against an in-process server made of the protocol core's `ServerSession`.

use std::time::Duration;

use bytes::Bytes;
use liverelay_rtmp::RawMessage;
use liverelay_rtmp::chunk::encode_message;
use liverelay_rtmp::command::code;
use liverelay_rtmp::session::{ServerConfig, ServerEvent, ServerSession};
use liverelay_rtmp_client::{
    ClientEvent, ClientOptions, Error, Media, MediaKind, RtmpClient, RtmpUrl,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const VIDEO: &[u8] = &[0x17, 0x01, 0, 0, 0, 1, 2, 3, 4, 5];

/// Serves one connection: accepts connect (and pings the client), publishes of any name but
/// "taken", and plays of any name but "missing" (to which it sends one video message). Media
/// from publishers goes to `media_tx`.
async fn serve(mut socket: TcpStream, media_tx: mpsc::UnboundedSender<Media>) {
    let mut session = ServerSession::new(ServerConfig::default(), &[7u8; 4096], 0);
    loop {
        let mut extra = Vec::new();
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::Connect(req) => {
                    session.accept_connect(&req);
                    session.ping(1);
                }
                ServerEvent::Publish(req) if req.name == "taken" => {
                    session.reject_publish(&req, code::PUBLISH_BAD_NAME, "already publishing")
                }
                ServerEvent::Publish(req) => session.accept_publish(&req),
                ServerEvent::Play(req) if req.name == "missing" => {
                    session.reject_play(&req, code::PLAY_STREAM_NOT_FOUND, "no such stream")
                }
                ServerEvent::Play(req) => {
                    session.accept_play(&req);
                    let msg = RawMessage {
                        timestamp: 40,
                        type_id: 9,
                        stream_id: req.stream_id,
                        payload: Bytes::from_static(VIDEO),
                    };
                    extra.push(encode_message(6, &msg, session.out_chunk_size()));
                }
                ServerEvent::Media { media, .. } => {
                    let _ = media_tx.send(media);
                }
                _ => {}
            }
        }
        while let Some(bytes) = session.poll_transmit() {
            if socket.write_all(&bytes).await.is_err() {
                return;
            }
        }
        for bytes in extra {
            if socket.write_all(&bytes).await.is_err() {
                return;
            }
        }
        match socket.read_buf(session.recv_buffer()).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if session.process().is_err() {
                    return;
                }
            }
        }
    }
}

async fn server() -> (RtmpUrl, mpsc::UnboundedReceiver<Media>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, tx.clone()));
        }
    });
    let url = format!("rtmp://{addr}/live/test").parse().unwrap();
    (url, rx)
}

fn options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn publishes_media_that_the_server_decodes() {
    let (url, mut media_rx) = server().await;
    let mut client = RtmpClient::connect(&url, options()).await.unwrap();
    let id = client.publish("test").await.unwrap();
    let media = Media {
        kind: MediaKind::Video,
        timestamp: 33,
        payload: Bytes::from(vec![0x27; 10_000]),
    };
    client.send_media(id, &media);
    client.flush().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), media_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, media);
    assert!(client.bytes_sent() > 10_000);
}

#[tokio::test]
async fn refused_publish_is_a_typed_error() {
    let (url, _media) = server().await;
    let mut client = RtmpClient::connect(&url, options()).await.unwrap();
    match client.publish("taken").await {
        Err(Error::Refused { command, code, .. }) => {
            assert_eq!(command, "publish");
            assert_eq!(code, "NetStream.Publish.BadName");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn plays_and_receives_media_then_counts_in_bulk() {
    let (url, _media) = server().await;
    let mut client = RtmpClient::connect(&url, options()).await.unwrap();
    let id = client.play("test").await.unwrap();
    let media = loop {
        match client.next_event().await.unwrap() {
            Some(ClientEvent::Media { stream_id, media }) => {
                assert_eq!(stream_id, id);
                break media;
            }
            Some(_) => continue,
            None => panic!("closed before media"),
        }
    };
    assert_eq!((media.kind, media.timestamp), (MediaKind::Video, 40));
    assert_eq!(&media.payload[..], VIDEO);
    let received = client.bytes_received();
    let bulk = client.into_bulk();
    bulk.set_recv_lowat(4096).unwrap();
    assert_eq!(bulk.total(), received);
}

#[tokio::test]
async fn garbage_from_the_server_is_an_error_not_a_panic() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        // A wrong RTMP version byte, then noise.
        let _ = s.write_all(&[0x42; 4000]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    let url: RtmpUrl = format!("rtmp://{addr}/live/x").parse().unwrap();
    let err = RtmpClient::connect(&url, options())
        .await
        .err()
        .expect("fails");
    assert!(
        matches!(err, Error::Protocol(_) | Error::Closed),
        "unexpected error {err:?}"
    );
}

#[tokio::test]
async fn closed_and_silent_servers_time_out_or_close() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // First connection: closed at once. Second: accepted and never answered.
        let (s, _) = listener.accept().await.unwrap();
        drop(s);
        let (_keep, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let url: RtmpUrl = format!("rtmp://{addr}/live/x").parse().unwrap();
    let err = RtmpClient::connect(&url, options())
        .await
        .err()
        .expect("fails");
    assert!(matches!(err, Error::Closed | Error::Io(_)), "{err:?}");
    let quick = ClientOptions {
        timeout: Duration::from_millis(300),
        ..options()
    };
    let err = RtmpClient::connect(&url, quick).await.err().expect("fails");
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn statuses_come_back_whatever_they_say() {
    let (url, _media) = server().await;
    let mut client = RtmpClient::connect(&url, options()).await.unwrap();
    let status = client.play_status("missing").await.unwrap();
    assert_eq!(
        (status.level.as_str(), status.code.as_str()),
        ("error", code::PLAY_STREAM_NOT_FOUND)
    );
    assert_eq!(status.description, "no such stream");
    let status = client.play_status("test").await.unwrap();
    assert_eq!(status.code, code::PLAY_RESET);
    assert_ne!(status.stream_id, 0);
    // The rest of the answer stays queued.
    let started = client
        .wait_for(Duration::from_secs(5), |e| {
            matches!(e, ClientEvent::PlayStarted { .. })
        })
        .await
        .unwrap();
    assert!(
        matches!(started, ClientEvent::PlayStarted { stream_id } if stream_id == status.stream_id)
    );
    let status = client.publish_status("taken").await.unwrap();
    assert_eq!(status.code, code::PUBLISH_BAD_NAME);
    let status = client.publish_status("free").await.unwrap();
    assert_eq!(
        (status.level.as_str(), status.code.as_str()),
        ("status", code::PUBLISH_START)
    );
}

#[tokio::test]
async fn waits_for_pictures_within_a_limit() {
    let (url, _media) = server().await;
    let mut client = RtmpClient::connect(&url, options()).await.unwrap();
    client.play("test").await.unwrap();
    // The server sends one picture and nothing more.
    let quiet = Duration::from_millis(300);
    assert_eq!(client.count_pictures(quiet).await.unwrap(), 1);
    assert!(matches!(
        client.wait_for(quiet, |_| true).await,
        Err(Error::Timeout(_))
    ));
    let picture = Media {
        kind: MediaKind::Video,
        timestamp: 0,
        payload: Bytes::from_static(VIDEO),
    };
    assert!(liverelay_rtmp_client::is_picture(&picture));
    let header = Media {
        payload: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1]),
        ..picture.clone()
    };
    assert!(!liverelay_rtmp_client::is_picture(&header));
}

#[tokio::test]
async fn records_pings_only_when_asked() {
    let (url, _media) = server().await;
    let recording = ClientOptions {
        record_pings: true,
        ..options()
    };
    let mut client = RtmpClient::connect(&url, recording).await.unwrap();
    // The ping follows the connect answer; createStream is answered after it.
    client.create_stream().await.unwrap();
    assert_eq!(client.pings().len(), 1);
    let mut client = RtmpClient::connect(&url, options()).await.unwrap();
    client.create_stream().await.unwrap();
    assert!(client.pings().is_empty());
}

#[tokio::test]
async fn a_silent_client_sends_nothing_and_raw_garbage_gets_it_closed() {
    let (url, _media) = server().await;
    let quick = ClientOptions {
        timeout: Duration::from_millis(300),
        ..options()
    };
    let mut client = RtmpClient::connect(&url, quick).await.unwrap();
    client.stop_writing();
    let sent = client.bytes_sent();
    assert!(matches!(
        client.create_stream().await,
        Err(Error::Timeout("createStream"))
    ));
    assert_eq!(client.bytes_sent(), sent, "nothing was written");

    let mut client = RtmpClient::connect(&url, options()).await.unwrap();
    let limit = Duration::from_millis(200);
    assert!(!client.wait_closed(limit).await.unwrap(), "still open");
    // A continuation chunk on a chunk stream that never had a header.
    client.write_raw(&[0xC9, 1, 2, 3]).await.unwrap();
    assert!(client.wait_closed(Duration::from_secs(5)).await.unwrap());
}

#[tokio::test]
async fn open_on_hands_over_the_connect_answer() {
    let (url, _media) = server().await;
    let socket = TcpStream::connect(url.addr()).await.unwrap();
    let mut client = RtmpClient::open_on(socket, &url, options()).await.unwrap();
    let answer = client
        .wait_for(Duration::from_secs(5), |e| {
            matches!(e, ClientEvent::Connected { .. })
        })
        .await
        .unwrap();
    let ClientEvent::Connected { info, .. } = answer else {
        unreachable!()
    };
    assert_eq!(
        info.get("code").and_then(|c| c.as_str()),
        Some(code::CONNECT_SUCCESS)
    );
    client.create_stream().await.unwrap();
}
