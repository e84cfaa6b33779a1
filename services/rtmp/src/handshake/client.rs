//! Client side: sends C0+C1, answers S1 with C2, then reads S2.

use bytes::{BufMut, BytesMut};

use super::digest::{
    self, DIGEST_LEN, DigestScheme, FMS_PARTIAL_KEY, FP_PARTIAL_KEY, GENUINE_FMS_KEY,
    GENUINE_FP_KEY,
};
use super::{
    HANDSHAKE_SIZE, HandshakeError, HandshakeKind, Packet, RTMP_VERSION, Randomness, first_packet,
    packet_header, take_packet, take_versioned_packet,
};

/// Flash Player version claimed in a digest C1: 9.0.124.2, as ffmpeg does.
/// It must be non-zero, since servers such as nginx-rtmp treat a zero
/// version as a simple handshake without looking for a digest.
const CLIENT_VERSION: [u8; 4] = [9, 0, 124, 2];

/// Which handshake the client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Plain echo handshake, understood by every server.
    Simple,
    /// Flash Player 9+ digest handshake; servers that do not know it fall
    /// back to simple, so this is only needed for servers that insist on it.
    Digest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotStarted,
    AwaitS0S1,
    AwaitS2,
    Done,
}

/// What S1 told us.
#[derive(Debug, Clone, Copy)]
struct Server {
    epoch: u32,
    version: [u8; 4],
    /// The digest S1 carried, if it carried a valid one.
    digest: Option<[u8; DIGEST_LEN]>,
}

/// Client half of the handshake. See the [module docs](super).
pub struct ClientHandshake {
    state: State,
    kind: ClientKind,
    scheme: DigestScheme,
    random: Box<Randomness>,
    epoch: u32,
    /// Our C1 digest, kept to check the server's S2 signature.
    c1_digest: Option<[u8; DIGEST_LEN]>,
    server: Option<Server>,
    server_signature_valid: Option<bool>,
}

impl ClientHandshake {
    /// `random` supplies C1's random part and a digest C2's: at least
    /// [`HANDSHAKE_RANDOM_LEN`](super::HANDSHAKE_RANDOM_LEN) (3032) bytes,
    /// e.g. 3072 fresh random bytes; extra bytes are ignored. A shorter
    /// slice is a caller bug: it panics in debug builds and is zero-padded
    /// in release builds. `epoch` is the client's uptime in milliseconds,
    /// sent in C1's time field.
    pub fn new(kind: ClientKind, random: &[u8], epoch: u32) -> Self {
        Self {
            state: State::NotStarted,
            kind,
            scheme: DigestScheme::Scheme0,
            random: Randomness::from_slice(random),
            epoch,
            c1_digest: None,
            server: None,
            server_signature_valid: None,
        }
    }

    /// Places the C1 digest with `scheme` instead of the default scheme 0
    /// (ffmpeg's and librtmp's choice). Only meaningful for
    /// [`ClientKind::Digest`] and before [`start`](Self::start).
    pub fn with_digest_scheme(mut self, scheme: DigestScheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// Appends C0+C1 to `out`. Calling it again does nothing, so a retry
    /// loop cannot send C1 twice.
    pub fn start(&mut self, out: &mut BytesMut) {
        if self.state != State::NotStarted {
            return;
        }
        let c1 = self.c1();
        out.reserve(1 + HANDSHAKE_SIZE);
        out.put_u8(RTMP_VERSION);
        out.put_slice(&c1);
        self.state = State::AwaitS0S1;
    }

    /// Consumes handshake bytes from the front of `input` and appends what
    /// must be sent to `out`. C2 is written as soon as S0+S1 (1537 bytes)
    /// have arrived, without waiting for S2: the spec lets a server hold S2
    /// back until it sees C2. Completes once S2 (1536 more bytes) has been
    /// read; anything after S2 is left in `input`.
    ///
    /// Returns `Ok(true)` once the handshake is complete, `Ok(false)` while
    /// more input is needed. An error leaves state and input untouched.
    pub fn read(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, HandshakeError> {
        loop {
            match self.state {
                State::NotStarted => return Err(HandshakeError::NotStarted),
                State::AwaitS0S1 => {
                    let Some(s1) = take_versioned_packet(input)? else {
                        return Ok(false);
                    };
                    self.answer(&s1, out);
                    self.state = State::AwaitS2;
                }
                State::AwaitS2 => {
                    let Some(s2) = take_packet(input) else {
                        return Ok(false);
                    };
                    self.check_s2(&s2);
                    self.state = State::Done;
                }
                State::Done => return Ok(true),
            }
        }
    }

    /// Whether S1 carried a valid FMS digest; `None` before S1 arrived.
    pub fn server_digest_valid(&self) -> Option<bool> {
        self.server.map(|server| server.digest.is_some())
    }

    /// Whether S2 carried a valid signature of our C1 digest. `None` unless
    /// both sides did a digest handshake and S2 has arrived. A wrong
    /// signature does not fail the handshake: plenty of servers get it wrong
    /// and the connection works regardless.
    pub fn server_signature_valid(&self) -> Option<bool> {
        self.server_signature_valid
    }

    /// The handshake actually performed; known once S1 has been read.
    pub fn kind(&self) -> Option<HandshakeKind> {
        let server = self.server?;
        Some(match (self.kind, server.digest) {
            (ClientKind::Digest, Some(_)) => HandshakeKind::Digest {
                scheme: self.scheme.number(),
            },
            _ => HandshakeKind::Simple,
        })
    }

    /// The time field of S1.
    pub fn server_epoch(&self) -> Option<u32> {
        self.server.map(|server| server.epoch)
    }

    /// Bytes 4..8 of S1: the server's version, zero for most simple servers.
    pub fn server_version(&self) -> Option<[u8; 4]> {
        self.server.map(|server| server.version)
    }

    /// Whether the handshake has completed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Builds C1, remembering its digest in digest mode.
    fn c1(&mut self) -> Packet {
        match self.kind {
            ClientKind::Simple => first_packet(self.epoch, [0; 4], &self.random.first),
            ClientKind::Digest => {
                let mut c1 = first_packet(self.epoch, CLIENT_VERSION, &self.random.first);
                self.c1_digest = Some(digest::imprint_digest(&mut c1, self.scheme, FP_PARTIAL_KEY));
                c1
            }
        }
    }

    /// Writes C2 for `s1` and records what S1 told us.
    fn answer(&mut self, s1: &Packet, out: &mut BytesMut) {
        let (epoch, version) = packet_header(s1);
        // Looked for even in simple mode, purely to report it.
        let s1_digest = digest::find_digest(s1, FMS_PARTIAL_KEY).map(|(_, digest)| digest);
        self.server = Some(Server {
            epoch,
            version,
            digest: s1_digest,
        });
        match (self.kind, s1_digest) {
            (ClientKind::Digest, Some(s1_digest)) => {
                let mut c2 = [0; HANDSHAKE_SIZE];
                c2[..self.random.response.len()].copy_from_slice(&self.random.response);
                digest::sign_response(&mut c2, &GENUINE_FP_KEY, &s1_digest);
                out.put_slice(&c2);
            }
            // A server that answered without a digest did a simple
            // handshake (or a broken digest one); an echo satisfies both.
            _ => out.put_slice(s1),
        }
    }

    /// Records whether S2 is a valid signature of our C1 digest, when both
    /// sides did a digest handshake.
    fn check_s2(&mut self, s2: &Packet) {
        let server_did_digest = self.server.is_some_and(|server| server.digest.is_some());
        if let (Some(c1_digest), true) = (self.c1_digest, server_did_digest) {
            self.server_signature_valid = Some(digest::response_signature_valid(
                s2,
                &GENUINE_FMS_KEY,
                &c1_digest,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use proptest::prelude::*;
    use sha2::Sha256;

    const EPOCH: u32 = 0x0A0B_0C0D;

    fn random() -> Vec<u8> {
        (0..3072u32)
            .map(|i| (i.wrapping_mul(17) ^ (i >> 4)) as u8)
            .collect()
    }

    // ---- independent reference implementation of the digest scheme ----

    const FP_TEXT: &[u8] = b"Genuine Adobe Flash Player 001";
    const FMS_TEXT: &[u8] = b"Genuine Adobe Flash Media Server 001";
    const TAIL: [u8; 32] = [
        0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E,
        0x57, 0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB,
        0x31, 0xAE,
    ];

    fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        Mac::update(&mut mac, data);
        mac.finalize().into_bytes().into()
    }

    fn position(packet: &[u8], scheme: u8) -> usize {
        let base = if scheme == 0 { 8 } else { 772 };
        packet[base..base + 4]
            .iter()
            .map(|&b| b as usize)
            .sum::<usize>()
            % 728
            + base
            + 4
    }

    fn expected_digest(packet: &[u8], pos: usize, key: &[u8]) -> [u8; 32] {
        let mut message = packet[..pos].to_vec();
        message.extend_from_slice(&packet[pos + 32..]);
        hmac(key, &message)
    }

    /// S0+S1+S2 as an FMS would send them, built without the code under
    /// test. `sign` decides whether S2 is correctly signed for `c1`.
    fn fms_reply(c1: &[u8], scheme: u8, sign: bool) -> (Vec<u8>, [u8; 32]) {
        let mut s1: Vec<u8> = (0..HANDSHAKE_SIZE).map(|i| (i * 5 + 3) as u8).collect();
        s1[..8].copy_from_slice(&[0, 0, 0, 7, 4, 5, 0, 1]);
        let pos = position(&s1, scheme);
        let s1_digest = expected_digest(&s1, pos, FMS_TEXT);
        s1[pos..pos + 32].copy_from_slice(&s1_digest);

        let c1_pos = position(c1, scheme);
        let key = hmac(&[FMS_TEXT, &TAIL].concat(), &c1[c1_pos..c1_pos + 32]);
        let mut s2 = vec![0x77; HANDSHAKE_SIZE];
        let signature = if sign {
            hmac(&key, &s2[..1504])
        } else {
            [0; 32]
        };
        s2[1504..].copy_from_slice(&signature);

        let mut reply = vec![3];
        reply.extend_from_slice(&s1);
        reply.extend_from_slice(&s2);
        (reply, s1_digest)
    }

    fn simple_reply(c1: &[u8]) -> Vec<u8> {
        let mut reply = vec![3, 0, 0, 0, 9, 0, 0, 0, 0];
        reply.extend((0..HANDSHAKE_SIZE - 8).map(|i| (i * 11) as u8));
        reply.extend_from_slice(c1);
        reply
    }

    fn started(kind: ClientKind, scheme: DigestScheme) -> (ClientHandshake, Vec<u8>) {
        let mut client = ClientHandshake::new(kind, &random(), EPOCH).with_digest_scheme(scheme);
        let mut out = BytesMut::new();
        client.start(&mut out);
        assert_eq!(out.len(), 1 + HANDSHAKE_SIZE);
        assert_eq!(out[0], 3);
        (client, out[1..].to_vec())
    }

    #[test]
    fn simple_c1_layout() {
        let (_, c1) = started(ClientKind::Simple, DigestScheme::Scheme0);
        assert_eq!(c1[..4], EPOCH.to_be_bytes());
        assert_eq!(c1[4..8], [0; 4]);
        assert_eq!(c1[8..], random()[..1528]);
    }

    #[test]
    fn digest_c1_validates_independently() {
        for (scheme, number) in [(DigestScheme::Scheme0, 0), (DigestScheme::Scheme1, 1)] {
            let (_, c1) = started(ClientKind::Digest, scheme);
            assert_eq!(c1[..4], EPOCH.to_be_bytes());
            assert_eq!(c1[4..8], [9, 0, 124, 2]);
            let pos = position(&c1, number);
            assert_eq!(
                c1[pos..pos + 32],
                expected_digest(&c1, pos, FP_TEXT),
                "{scheme:?}"
            );
            // The other scheme's location must not hold a valid digest.
            let other = position(&c1, 1 - number);
            assert_ne!(c1[other..other + 32], expected_digest(&c1, other, FP_TEXT));
        }
    }

    #[test]
    fn start_is_idempotent() {
        let (mut client, _) = started(ClientKind::Digest, DigestScheme::Scheme0);
        let mut out = BytesMut::new();
        client.start(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn read_before_start_is_an_error() {
        let mut client = ClientHandshake::new(ClientKind::Simple, &random(), EPOCH);
        let mut input = BytesMut::from(&[3u8][..]);
        let mut out = BytesMut::new();
        assert_eq!(
            client.read(&mut input, &mut out),
            Err(HandshakeError::NotStarted)
        );
        assert_eq!(input.len(), 1);
    }

    #[test]
    fn wrong_server_version_is_rejected() {
        let (mut client, _) = started(ClientKind::Simple, DigestScheme::Scheme0);
        let mut input = BytesMut::from(&[6u8, 0, 0][..]);
        let mut out = BytesMut::new();
        assert_eq!(
            client.read(&mut input, &mut out),
            Err(HandshakeError::UnsupportedVersion(6))
        );
        assert_eq!(
            client.read(&mut input, &mut out),
            Err(HandshakeError::UnsupportedVersion(6))
        );
        assert!(out.is_empty());
        assert_eq!(client.server_digest_valid(), None);
    }

    fn digest_exchange(scheme: DigestScheme, number: u8) {
        let (mut client, c1) = started(ClientKind::Digest, scheme);
        let (reply, s1_digest) = fms_reply(&c1, number, true);
        let mut input = BytesMut::from(&reply[..1 + HANDSHAKE_SIZE]);
        let mut out = BytesMut::new();

        // C2 goes out as soon as S1 is in, before S2.
        assert_eq!(client.read(&mut input, &mut out), Ok(false));
        assert_eq!(out.len(), HANDSHAKE_SIZE);
        assert_eq!(client.server_digest_valid(), Some(true));
        assert_eq!(client.server_signature_valid(), None);
        assert_eq!(
            client.kind(),
            Some(HandshakeKind::Digest { scheme: number })
        );
        assert_eq!(client.server_epoch(), Some(7));
        assert_eq!(client.server_version(), Some([4, 5, 0, 1]));

        // C2 = random + HMAC(HMAC(full FP key, S1 digest), C2[..1504]).
        let key = hmac(&[FP_TEXT, &TAIL].concat(), &s1_digest);
        assert_eq!(out[..1504], random()[1528..3032]);
        assert_eq!(out[1504..], hmac(&key, &out[..1504]));

        input.extend_from_slice(&reply[1 + HANDSHAKE_SIZE..]);
        input.extend_from_slice(b"tail");
        assert_eq!(client.read(&mut input, &mut out), Ok(true));
        assert_eq!(&input[..], b"tail");
        assert_eq!(out.len(), HANDSHAKE_SIZE, "nothing sent after C2");
        assert_eq!(client.server_signature_valid(), Some(true));
        assert!(client.is_done());
    }

    #[test]
    fn digest_exchange_scheme0() {
        digest_exchange(DigestScheme::Scheme0, 0);
    }

    #[test]
    fn digest_exchange_scheme1() {
        digest_exchange(DigestScheme::Scheme1, 1);
    }

    #[test]
    fn bad_s2_signature_is_reported_not_fatal() {
        let (mut client, c1) = started(ClientKind::Digest, DigestScheme::Scheme0);
        let (reply, _) = fms_reply(&c1, 0, false);
        let mut input = BytesMut::from(&reply[..]);
        let mut out = BytesMut::new();
        assert_eq!(client.read(&mut input, &mut out), Ok(true));
        assert_eq!(client.server_signature_valid(), Some(false));
        assert_eq!(client.server_digest_valid(), Some(true));
    }

    #[test]
    fn simple_server_gets_echo_from_digest_client() {
        let (mut client, c1) = started(ClientKind::Digest, DigestScheme::Scheme0);
        let reply = simple_reply(&c1);
        let mut input = BytesMut::from(&reply[..]);
        let mut out = BytesMut::new();
        assert_eq!(client.read(&mut input, &mut out), Ok(true));
        assert_eq!(&out[..], &reply[1..1 + HANDSHAKE_SIZE]);
        assert_eq!(client.server_digest_valid(), Some(false));
        assert_eq!(client.server_signature_valid(), None);
        assert_eq!(client.kind(), Some(HandshakeKind::Simple));
    }

    #[test]
    fn simple_client_echoes_even_a_digest_s1() {
        let (mut client, c1) = started(ClientKind::Simple, DigestScheme::Scheme0);
        let (reply, _) = fms_reply(&c1, 0, true);
        let mut input = BytesMut::from(&reply[..]);
        let mut out = BytesMut::new();
        assert_eq!(client.read(&mut input, &mut out), Ok(true));
        assert_eq!(&out[..], &reply[1..1 + HANDSHAKE_SIZE]);
        assert_eq!(client.server_digest_valid(), Some(true));
        assert_eq!(client.server_signature_valid(), None);
        assert_eq!(client.kind(), Some(HandshakeKind::Simple));
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..4000),
            force_version in any::<bool>(),
            digest in any::<bool>(),
        ) {
            if force_version && !bytes.is_empty() {
                bytes[0] = 3;
            }
            let kind = if digest { ClientKind::Digest } else { ClientKind::Simple };
            let (mut client, _) = started(kind, DigestScheme::Scheme0);
            let mut input = BytesMut::from(&bytes[..]);
            let mut out = BytesMut::new();
            match client.read(&mut input, &mut out) {
                Ok(done) => {
                    let consumed = bytes.len() - input.len();
                    prop_assert_eq!(done, consumed == 1 + 2 * HANDSHAKE_SIZE);
                    prop_assert!(out.is_empty() || out.len() == HANDSHAKE_SIZE);
                }
                Err(HandshakeError::UnsupportedVersion(v)) => prop_assert_ne!(v, 3),
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}
