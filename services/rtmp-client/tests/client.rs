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

/// Serves one connection: accepts connect, publishes of any name but "taken", and plays (to
/// which it sends one video message). Media from publishers goes to `media_tx`.
async fn serve(mut socket: TcpStream, media_tx: mpsc::UnboundedSender<Media>) {
    let mut session = ServerSession::new(ServerConfig::default(), &[7u8; 4096], 0);
    loop {
        let mut extra = Vec::new();
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::Connect(req) => session.accept_connect(&req),
                ServerEvent::Publish(req) if req.name == "taken" => {
                    session.reject_publish(&req, code::PUBLISH_BAD_NAME, "already publishing")
                }
                ServerEvent::Publish(req) => session.accept_publish(&req),
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
