//! The RTMP handshake (C0/C1/C2 and S0/S1/S2), server and client side.
//!
//! Two flavours exist in the wild and both are supported on both sides:
//!
//! * **simple**: C1/S1 are `time(4) + zero(4) + random(1528)` and each peer
//!   echoes the other's packet as C2/S2;
//! * **digest** (a.k.a. "complex", Flash Player 9+ / FMS 3+): C1 and S1 carry
//!   an HMAC-SHA256 digest at a position derived from the packet itself, and
//!   C2/S2 are random bytes signed with a key derived from the peer's digest.
//!   See [`digest`] for the scheme itself.
//!
//! Encrypted RTMPE (C0 = 6 or 8) is not supported and is reported as
//! [`HandshakeError::UnsupportedVersion`].
//!
//! The state machines are sans-I/O: [`ServerHandshake`] and
//! [`ClientHandshake`] are fed bytes that arrived from the peer and append
//! the bytes to send to an output buffer. They never touch sockets, clocks or
//! random number generators; the caller supplies randomness and the epoch up
//! front, which keeps them deterministic and testable. They also never block
//! or time out: incomplete input just yields `Ok(false)` until more arrives,
//! so the caller owns the handshake timeout.

pub mod digest;

mod client;
mod server;

pub use client::{ClientHandshake, ClientKind};
pub use digest::DigestScheme;
pub use server::ServerHandshake;

use bytes::{Buf, BytesMut};

/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;

/// The only C0/S0 value accepted: plain, unencrypted RTMP.
pub const RTMP_VERSION: u8 = 3;

/// How many bytes of caller-supplied randomness each side consumes:
/// 1528 for the random part of C1/S1 plus 1504 for a digest-mode C2/S2.
/// Callers may pass more (e.g. 3072 bytes); the excess is ignored.
pub const HANDSHAKE_RANDOM_LEN: usize = FIRST_RANDOM_LEN + RESPONSE_RANDOM_LEN;

/// Random part of C1/S1: everything after `time(4) + version(4)`.
const FIRST_RANDOM_LEN: usize = HANDSHAKE_SIZE - 8;

/// Random part of a digest-mode C2/S2: everything before the signature.
const RESPONSE_RANDOM_LEN: usize = HANDSHAKE_SIZE - digest::DIGEST_LEN;

/// One C1/C2/S1/S2 packet, as taken by the [`digest`] helpers.
pub type Packet = [u8; HANDSHAKE_SIZE];

/// Why a handshake cannot proceed. Each variant is a distinct reason; all are
/// fatal for the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// C0/S0 was not [`RTMP_VERSION`] (e.g. 6 for RTMPE, or not RTMP at all).
    #[error("unsupported RTMP version {0} (only {RTMP_VERSION} is supported)")]
    UnsupportedVersion(u8),
    /// [`ClientHandshake::read`] was called before [`ClientHandshake::start`].
    #[error("client handshake read before C0+C1 was sent")]
    NotStarted,
}

/// Which handshake flavour was negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// Plain echo handshake.
    Simple,
    /// Flash digest handshake; `scheme` is 0 (digest after the time/version
    /// header) or 1 (digest in the second half), see [`DigestScheme`].
    Digest { scheme: u8 },
}

/// Fails as soon as the version byte is visible, so that a non-RTMP peer
/// (an HTTP probe, a TLS hello) is rejected without waiting for 1536 more
/// bytes. Input is left untouched so that a repeated call reports the same
/// error instead of misreading the next byte as a version.
fn check_version(input: &BytesMut) -> Result<(), HandshakeError> {
    match input.first() {
        Some(&version) if version != RTMP_VERSION => {
            Err(HandshakeError::UnsupportedVersion(version))
        }
        _ => Ok(()),
    }
}

/// Removes C0+C1 (or S0+S1) from the front of `input` once all 1537 bytes
/// have arrived, returning C1 (S1).
fn take_versioned_packet(input: &mut BytesMut) -> Result<Option<Packet>, HandshakeError> {
    check_version(input)?;
    if input.len() <= HANDSHAKE_SIZE {
        return Ok(None);
    }
    input.advance(1);
    Ok(take_packet(input))
}

/// Removes one packet from the front of `input` if a whole one has arrived.
fn take_packet(input: &mut BytesMut) -> Option<Packet> {
    let mut packet = [0; HANDSHAKE_SIZE];
    packet.copy_from_slice(input.get(..HANDSHAKE_SIZE)?);
    input.advance(HANDSHAKE_SIZE);
    Some(packet)
}

/// Builds C1/S1: `time(4, BE) + version(4) + random(1528)`.
fn first_packet(epoch: u32, version: [u8; 4], random: &[u8; FIRST_RANDOM_LEN]) -> Packet {
    let mut packet = [0; HANDSHAKE_SIZE];
    packet[..4].copy_from_slice(&epoch.to_be_bytes());
    packet[4..8].copy_from_slice(&version);
    packet[8..].copy_from_slice(random);
    packet
}

/// `(time, version)` header of a C1/S1.
fn packet_header(packet: &Packet) -> (u32, [u8; 4]) {
    let [t0, t1, t2, t3, v0, v1, v2, v3, ..] = *packet;
    (u32::from_be_bytes([t0, t1, t2, t3]), [v0, v1, v2, v3])
}

/// The caller's random bytes, split into the two places they are used.
struct Randomness {
    /// Random part of C1/S1.
    first: [u8; FIRST_RANDOM_LEN],
    /// Random part of a digest-mode C2/S2.
    response: [u8; RESPONSE_RANDOM_LEN],
}

impl Randomness {
    /// Boxed because it is 3 KiB and ends up inside connection futures.
    /// A short `random` is a caller bug; the missing bytes stay zero, which
    /// only weakens uniqueness of the packets, never the protocol.
    fn from_slice(random: &[u8]) -> Box<Self> {
        debug_assert!(
            random.len() >= HANDSHAKE_RANDOM_LEN,
            "handshake needs {HANDSHAKE_RANDOM_LEN} random bytes, got {}",
            random.len()
        );
        let mut this = Box::new(Self {
            first: [0; FIRST_RANDOM_LEN],
            response: [0; RESPONSE_RANDOM_LEN],
        });
        let (first, rest) = random.split_at(random.len().min(FIRST_RANDOM_LEN));
        this.first[..first.len()].copy_from_slice(first);
        let response = &rest[..rest.len().min(RESPONSE_RANDOM_LEN)];
        this.response[..response.len()].copy_from_slice(response);
        this
    }
}

#[cfg(test)]
mod tests {
    //! Server and client driven against each other.

    use super::*;
    use proptest::prelude::*;

    const SERVER_EPOCH: u32 = 1_000;
    const CLIENT_EPOCH: u32 = 2_000;
    const EXTRA_AFTER_C2: &[u8] = b"\x03first chunk from client";
    const EXTRA_AFTER_S2: &[u8] = b"\x02first chunk from server";

    fn random(seed: u8) -> Vec<u8> {
        (0..3072u32)
            .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 8) as u8)
            .collect()
    }

    fn client(kind: ClientKind, scheme: DigestScheme) -> ClientHandshake {
        ClientHandshake::new(kind, &random(3), CLIENT_EPOCH).with_digest_scheme(scheme)
    }

    fn server() -> ServerHandshake {
        ServerHandshake::new(&random(5), SERVER_EPOCH)
    }

    /// Everything each side sent, with the follow-up bytes each side
    /// appended after its last handshake packet.
    struct Transcript {
        client_sent: Vec<u8>,
        server_sent: Vec<u8>,
        client: ClientHandshake,
        server: ServerHandshake,
    }

    /// Runs a whole handshake in memory, like two sockets would.
    fn exchange(kind: ClientKind, scheme: DigestScheme) -> Transcript {
        let mut client = client(kind, scheme);
        let mut server = server();
        let mut to_server = BytesMut::new();
        let mut to_client = BytesMut::new();
        let mut client_sent = Vec::new();
        let mut server_sent = Vec::new();

        client.start(&mut to_server);
        let (mut client_done, mut server_done) = (false, false);
        for _ in 0..4 {
            client_sent.extend_from_slice(&to_server);
            server_done = server.read(&mut to_server, &mut to_client).unwrap();
            server_sent.extend_from_slice(&to_client);
            client_done = client.read(&mut to_client, &mut to_server).unwrap();
            if client_done && server_done {
                break;
            }
        }
        assert!(client_done && server_done, "handshake stalled");
        assert!(to_server.is_empty() && to_client.is_empty());
        client_sent.extend_from_slice(EXTRA_AFTER_C2);
        server_sent.extend_from_slice(EXTRA_AFTER_S2);
        Transcript {
            client_sent,
            server_sent,
            client,
            server,
        }
    }

    fn check_exchange(kind: ClientKind, scheme: DigestScheme, expected: HandshakeKind) {
        let t = exchange(kind, scheme);
        assert_eq!(
            t.client_sent.len(),
            1 + 2 * HANDSHAKE_SIZE + EXTRA_AFTER_C2.len()
        );
        assert_eq!(
            t.server_sent.len(),
            1 + 2 * HANDSHAKE_SIZE + EXTRA_AFTER_S2.len()
        );
        assert_eq!(t.server.kind(), Some(expected));
        assert_eq!(t.client.kind(), Some(expected));
        assert_eq!(t.server.peer_epoch(), Some(CLIENT_EPOCH));
        assert_eq!(t.client.server_epoch(), Some(SERVER_EPOCH));
        let digest = matches!(expected, HandshakeKind::Digest { .. });
        assert_eq!(t.client.server_digest_valid(), Some(digest));
        assert_eq!(t.client.server_signature_valid(), digest.then_some(true));
        assert_eq!(t.server.peer_version() != Some([0; 4]), digest);

        // Replaying each side's bytes in one piece leaves the follow-up
        // bytes in the input.
        let (result, _, leftover) = feed_server(&t.client_sent, &[]);
        assert_eq!(result, Ok(true));
        assert_eq!(&leftover[..], EXTRA_AFTER_C2);
        let (result, _, leftover) = feed_client(kind, scheme, &t.server_sent, &[]);
        assert_eq!(result, Ok(true));
        assert_eq!(&leftover[..], EXTRA_AFTER_S2);
    }

    #[test]
    fn simple_client_with_server() {
        check_exchange(
            ClientKind::Simple,
            DigestScheme::Scheme0,
            HandshakeKind::Simple,
        );
    }

    #[test]
    fn digest_scheme0_client_with_server() {
        check_exchange(
            ClientKind::Digest,
            DigestScheme::Scheme0,
            HandshakeKind::Digest { scheme: 0 },
        );
    }

    #[test]
    fn digest_scheme1_client_with_server() {
        check_exchange(
            ClientKind::Digest,
            DigestScheme::Scheme1,
            HandshakeKind::Digest { scheme: 1 },
        );
    }

    /// Splits `bytes` at the given cut points (taken modulo the length).
    fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
    }

    /// Feeds the server `bytes` piece by piece; returns the last result, all
    /// output and what is left in the input.
    fn feed_server(
        bytes: &[u8],
        cuts: &[usize],
    ) -> (Result<bool, HandshakeError>, BytesMut, BytesMut) {
        let mut server = server();
        let mut input = BytesMut::new();
        let mut out = BytesMut::new();
        let mut result = Ok(false);
        for piece in pieces(bytes, cuts) {
            input.extend_from_slice(piece);
            result = server.read(&mut input, &mut out);
        }
        (result, out, input)
    }

    fn feed_client(
        kind: ClientKind,
        scheme: DigestScheme,
        bytes: &[u8],
        cuts: &[usize],
    ) -> (Result<bool, HandshakeError>, BytesMut, BytesMut) {
        let mut client = client(kind, scheme);
        let mut out = BytesMut::new();
        client.start(&mut out);
        out.clear();
        let mut input = BytesMut::new();
        let mut result = Ok(false);
        for piece in pieces(bytes, cuts) {
            input.extend_from_slice(piece);
            result = client.read(&mut input, &mut out);
        }
        (result, out, input)
    }

    fn any_setup() -> impl Strategy<Value = (ClientKind, DigestScheme)> {
        prop_oneof![
            Just((ClientKind::Simple, DigestScheme::Scheme0)),
            Just((ClientKind::Digest, DigestScheme::Scheme0)),
            Just((ClientKind::Digest, DigestScheme::Scheme1)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn split_input_matches_whole_input(
            (kind, scheme) in any_setup(),
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
        ) {
            let t = exchange(kind, scheme);

            let whole = feed_server(&t.client_sent, &[]);
            let split = feed_server(&t.client_sent, &cuts);
            prop_assert_eq!(&split.0, &Ok(true));
            prop_assert_eq!(&split.1, &whole.1);
            prop_assert_eq!(&split.2[..], EXTRA_AFTER_C2);

            let whole = feed_client(kind, scheme, &t.server_sent, &[]);
            let split = feed_client(kind, scheme, &t.server_sent, &cuts);
            prop_assert_eq!(&split.0, &Ok(true));
            prop_assert_eq!(&split.1, &whole.1);
            prop_assert_eq!(&split.2[..], EXTRA_AFTER_S2);
        }

        #[test]
        fn tiny_pieces_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Many calls with little input each: exercises the partial paths.
            let cuts: Vec<usize> = (0..bytes.len()).collect();
            let _ = feed_server(&bytes, &cuts);
            let _ = feed_client(ClientKind::Digest, DigestScheme::Scheme1, &bytes, &cuts);
        }
    }

    #[test]
    fn randomness_is_split_in_order() {
        let random: Vec<u8> = (0..HANDSHAKE_RANDOM_LEN + 10).map(|i| i as u8).collect();
        let split = Randomness::from_slice(&random);
        assert_eq!(split.first[..], random[..FIRST_RANDOM_LEN]);
        assert_eq!(
            split.response[..],
            random[FIRST_RANDOM_LEN..HANDSHAKE_RANDOM_LEN]
        );
    }
}
