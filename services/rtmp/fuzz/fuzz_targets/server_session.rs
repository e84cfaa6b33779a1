//! Feeds arbitrary bytes to a `ServerSession`, accepting everything it asks about so the fuzzer
//! reaches publish and play states. The first byte picks the mode: odd runs the handshake on the
//! input itself, even starts from a completed simple handshake and fuzzes the chunk stream,
//! commands and AMF. The second byte splits the input into reads of varying size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liverelay_rtmp::session::{ServerConfig, ServerEvent, ServerSession};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Some((&split, input)) = rest.split_first() else { return };
    let mut session = ServerSession::new(ServerConfig::default(), &[0x5A; 3072], 0);
    if mode & 1 == 0 {
        let mut hello = vec![3u8];
        hello.extend_from_slice(&[0u8; 1536]);
        hello.extend_from_slice(&[0u8; 1536]);
        session.feed(&hello).expect("a simple handshake completes");
        let _ = session.poll_transmit();
    }
    let step = usize::from(split).max(1);
    for piece in input.chunks(step) {
        if session.feed(piece).is_err() {
            return;
        }
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::Connect(req) => session.accept_connect(&req),
                ServerEvent::Publish(req) => session.accept_publish(&req),
                ServerEvent::Play(req) => session.accept_play(&req),
                _ => {}
            }
        }
        let _ = session.poll_transmit();
    }
});
