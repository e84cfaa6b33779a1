//! Server side: reads C0+C1, answers S0+S1+S2 in one go, then reads C2.

use bytes::{BufMut, BytesMut};

use super::digest::{self, DigestScheme, FMS_PARTIAL_KEY, FP_PARTIAL_KEY, GENUINE_FMS_KEY};
use super::{
    HANDSHAKE_SIZE, HandshakeError, HandshakeKind, Packet, RTMP_VERSION, Randomness, first_packet,
    packet_header, take_packet, take_versioned_packet,
};

/// Version advertised in a digest S1 (nginx-rtmp's value). Its first byte
/// must be >= 3: ffmpeg only looks for a digest in S1 when it is.
const SERVER_VERSION: [u8; 4] = [0x0D, 0x0E, 0x0A, 0x0D];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitC0C1,
    AwaitC2,
    Done,
}

/// What C1 told us.
#[derive(Debug, Clone, Copy)]
struct Peer {
    kind: HandshakeKind,
    epoch: u32,
    version: [u8; 4],
}

/// Server half of the handshake. See the [module docs](super).
pub struct ServerHandshake {
    state: State,
    random: Box<Randomness>,
    epoch: u32,
    peer: Option<Peer>,
}

impl ServerHandshake {
    /// `random` supplies S1's random part and a digest S2's: at least
    /// [`HANDSHAKE_RANDOM_LEN`](super::HANDSHAKE_RANDOM_LEN) (3032) bytes,
    /// e.g. 3072 fresh random bytes; extra bytes are ignored. A shorter
    /// slice is a caller bug: it panics in debug builds and is zero-padded
    /// in release builds. `epoch` is the server's uptime in milliseconds,
    /// sent in S1's time field.
    pub fn new(random: &[u8], epoch: u32) -> Self {
        Self {
            state: State::AwaitC0C1,
            random: Randomness::from_slice(random),
            epoch,
            peer: None,
        }
    }

    /// Consumes handshake bytes from the front of `input` and appends what
    /// must be sent to `out`. Once C0+C1 (1537 bytes) have arrived it writes
    /// S0+S1+S2 at once; it then waits for C2 (1536 bytes). Anything after C2
    /// (typically the first RTMP chunks) is left in `input`.
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
                State::AwaitC0C1 => {
                    let Some(c1) = take_versioned_packet(input)? else {
                        return Ok(false);
                    };
                    self.answer(&c1, out);
                    self.state = State::AwaitC2;
                }
                State::AwaitC2 => {
                    // C2 is not checked: ffmpeg in publish mode, librtmp and
                    // OBS send an echo of S1 even after a digest exchange,
                    // and nothing is gained by refusing them.
                    if take_packet(input).is_none() {
                        return Ok(false);
                    }
                    self.state = State::Done;
                }
                State::Done => return Ok(true),
            }
        }
    }

    /// Which handshake the client asked for; known once C1 has been read.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.peer.map(|peer| peer.kind)
    }

    /// The time field of C1.
    pub fn peer_epoch(&self) -> Option<u32> {
        self.peer.map(|peer| peer.epoch)
    }

    /// Bytes 4..8 of C1: the Flash Player version for digest clients, zero
    /// for most simple clients.
    pub fn peer_version(&self) -> Option<[u8; 4]> {
        self.peer.map(|peer| peer.version)
    }

    /// Whether the handshake has completed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Writes S0+S1+S2 for `c1` and records what C1 told us.
    fn answer(&mut self, c1: &Packet, out: &mut BytesMut) {
        let (epoch, version) = packet_header(c1);
        // The version field is not trusted to announce a digest: validating
        // costs two HMACs and a digest can only validate on purpose.
        let kind = match digest::find_digest(c1, FP_PARTIAL_KEY) {
            Some((scheme, c1_digest)) => {
                out.reserve(1 + 2 * HANDSHAKE_SIZE);
                out.put_u8(RTMP_VERSION);
                out.put_slice(&self.digest_s1(scheme));
                out.put_slice(&self.digest_s2(&c1_digest));
                HandshakeKind::Digest {
                    scheme: scheme.number(),
                }
            }
            None => {
                out.reserve(1 + 2 * HANDSHAKE_SIZE);
                out.put_u8(RTMP_VERSION);
                out.put_slice(&first_packet(self.epoch, [0; 4], &self.random.first));
                // Echo C1 verbatim, time included: some clients compare all
                // of it, and none are known to reject their own time.
                out.put_slice(c1);
                HandshakeKind::Simple
            }
        };
        self.peer = Some(Peer {
            kind,
            epoch,
            version,
        });
    }

    /// S1 with our digest placed by the client's own scheme, which is what
    /// FMS does and what clients that only look in one place expect.
    fn digest_s1(&self, scheme: DigestScheme) -> Packet {
        let mut s1 = first_packet(self.epoch, SERVER_VERSION, &self.random.first);
        digest::imprint_digest(&mut s1, scheme, FMS_PARTIAL_KEY);
        s1
    }

    /// S2: random bytes signed to prove we saw the client's digest.
    fn digest_s2(&self, c1_digest: &[u8; digest::DIGEST_LEN]) -> Packet {
        let mut s2 = [0; HANDSHAKE_SIZE];
        s2[..self.random.response.len()].copy_from_slice(&self.random.response);
        digest::sign_response(&mut s2, &GENUINE_FMS_KEY, c1_digest);
        s2
    }
}

#[cfg(test)]
mod tests {
    use super::HANDSHAKE_SIZE;
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use proptest::prelude::*;
    use sha2::Sha256;

    const EPOCH: u32 = 0x0102_0304;

    fn random() -> Vec<u8> {
        (0..3072u32)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 3)) as u8)
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

    /// A digest C1 built without the code under test.
    fn client_c0c1(scheme: u8) -> Vec<u8> {
        let mut c1: Vec<u8> = (0..HANDSHAKE_SIZE).map(|i| (i * 7 + 1) as u8).collect();
        c1[..4].copy_from_slice(&[0, 0, 0, 42]);
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        let pos = position(&c1, scheme);
        let digest = expected_digest(&c1, pos, FP_TEXT);
        c1[pos..pos + 32].copy_from_slice(&digest);
        let mut c0c1 = vec![3];
        c0c1.extend_from_slice(&c1);
        c0c1
    }

    fn simple_c0c1() -> Vec<u8> {
        let mut c0c1 = vec![3, 0, 0, 1, 0, 0, 0, 0, 0];
        c0c1.extend((0..HANDSHAKE_SIZE - 8).map(|i| (i * 13) as u8));
        c0c1
    }

    /// Runs the server on `input` and returns (done, output, leftover).
    fn run(
        input: &[u8],
    ) -> (
        ServerHandshake,
        Result<bool, HandshakeError>,
        BytesMut,
        BytesMut,
    ) {
        let mut server = ServerHandshake::new(&random(), EPOCH);
        let mut input = BytesMut::from(input);
        let mut out = BytesMut::new();
        let result = server.read(&mut input, &mut out);
        (server, result, out, input)
    }

    fn s1(out: &[u8]) -> &[u8] {
        &out[1..1 + HANDSHAKE_SIZE]
    }

    fn s2(out: &[u8]) -> &[u8] {
        &out[1 + HANDSHAKE_SIZE..]
    }

    #[test]
    fn simple_c1_gets_echo_answer() {
        let c0c1 = simple_c0c1();
        let (server, result, out, input) = run(&c0c1);
        assert_eq!(result, Ok(false));
        assert!(input.is_empty());
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(out[0], 3);
        assert_eq!(s1(&out)[..8], [1, 2, 3, 4, 0, 0, 0, 0]);
        assert_eq!(s1(&out)[8..], random()[..1528]);
        assert_eq!(s2(&out), &c0c1[1..]);
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        assert_eq!(server.peer_epoch(), Some(256));
        assert_eq!(server.peer_version(), Some([0; 4]));
    }

    fn check_digest_answer(scheme: u8) {
        let c0c1 = client_c0c1(scheme);
        let (server, result, out, _) = run(&c0c1);
        assert_eq!(result, Ok(false));
        assert_eq!(server.kind(), Some(HandshakeKind::Digest { scheme }));
        assert_eq!(server.peer_version(), Some([9, 0, 124, 2]));
        assert_eq!(server.peer_epoch(), Some(42));
        assert_eq!(out[0], 3);

        // S1: our epoch, non-zero version, FMS digest where the scheme says.
        let s1 = s1(&out);
        assert_eq!(s1[..4], EPOCH.to_be_bytes());
        assert_ne!(s1[4], 0);
        assert!(s1[4] >= 3, "ffmpeg ignores digests when S1[4] < 3");
        let pos = position(s1, scheme);
        assert_eq!(s1[pos..pos + 32], expected_digest(s1, pos, FMS_TEXT));

        // S2: signed with HMAC(full FMS key, C1 digest).
        let c1 = &c0c1[1..];
        let c1_pos = position(c1, scheme);
        let full_key = [FMS_TEXT, &TAIL].concat();
        let key = hmac(&full_key, &c1[c1_pos..c1_pos + 32]);
        let s2 = s2(&out);
        assert_eq!(s2[1504..], hmac(&key, &s2[..1504]));
    }

    #[test]
    fn digest_scheme0_answer_validates_independently() {
        check_digest_answer(0);
    }

    #[test]
    fn digest_scheme1_answer_validates_independently() {
        check_digest_answer(1);
    }

    #[test]
    fn corrupted_digest_falls_back_to_simple() {
        let mut c0c1 = client_c0c1(0);
        let pos = 1 + position(&c0c1[1..], 0);
        c0c1[pos] ^= 0xFF;
        let (server, result, out, _) = run(&c0c1);
        assert_eq!(result, Ok(false));
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        // Still reports the claimed Flash version.
        assert_eq!(server.peer_version(), Some([9, 0, 124, 2]));
        assert_eq!(s1(&out)[4..8], [0; 4]);
        assert_eq!(s2(&out), &c0c1[1..]);
    }

    #[test]
    fn wrong_version_is_rejected_at_first_byte() {
        for version in [0u8, 6, 8, b'G', 0x16] {
            let (_, result, out, input) = run(&[version]);
            assert_eq!(result, Err(HandshakeError::UnsupportedVersion(version)));
            assert!(out.is_empty());
            assert_eq!(input.len(), 1, "input left untouched");
        }
    }

    #[test]
    fn error_is_sticky() {
        let mut server = ServerHandshake::new(&random(), EPOCH);
        let mut input = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        let mut out = BytesMut::new();
        let err = Err(HandshakeError::UnsupportedVersion(b'G'));
        assert_eq!(server.read(&mut input, &mut out), err);
        assert_eq!(server.read(&mut input, &mut out), err);
    }

    #[test]
    fn waits_for_whole_packets_and_keeps_leftover() {
        let c0c1 = client_c0c1(1);
        let mut server = ServerHandshake::new(&random(), EPOCH);
        let mut out = BytesMut::new();

        let mut input = BytesMut::from(&c0c1[..1000]);
        assert_eq!(server.read(&mut input, &mut out), Ok(false));
        assert!(out.is_empty());
        assert_eq!(server.kind(), None);
        assert_eq!(input.len(), 1000);

        input.extend_from_slice(&c0c1[1000..]);
        assert_eq!(server.read(&mut input, &mut out), Ok(false));
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);

        let c2 = s1(&out).to_vec();
        input.extend_from_slice(&c2[..HANDSHAKE_SIZE - 1]);
        assert_eq!(server.read(&mut input, &mut out), Ok(false));
        assert!(!server.is_done());

        input.extend_from_slice(&c2[HANDSHAKE_SIZE - 1..]);
        input.extend_from_slice(b"\x03chunk");
        let before = out.len();
        assert_eq!(server.read(&mut input, &mut out), Ok(true));
        assert_eq!(&input[..], b"\x03chunk");
        assert_eq!(out.len(), before, "nothing sent after C2");

        // Done is sticky and consumes nothing more.
        assert_eq!(server.read(&mut input, &mut out), Ok(true));
        assert_eq!(&input[..], b"\x03chunk");
    }

    #[test]
    fn all_at_once_completes() {
        let mut bytes = simple_c0c1();
        bytes.extend_from_slice(&[0xAA; HANDSHAKE_SIZE]);
        bytes.extend_from_slice(b"rest");
        let (server, result, out, input) = run(&bytes);
        assert_eq!(result, Ok(true));
        assert!(server.is_done());
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(&input[..], b"rest");
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..4000),
            force_version in any::<bool>(),
        ) {
            if force_version && !bytes.is_empty() {
                bytes[0] = 3;
            }
            let mut server = ServerHandshake::new(&random(), EPOCH);
            let mut input = BytesMut::from(&bytes[..]);
            let mut out = BytesMut::new();
            match server.read(&mut input, &mut out) {
                Ok(done) => {
                    let consumed = bytes.len() - input.len();
                    prop_assert_eq!(done, consumed == 1 + 2 * HANDSHAKE_SIZE);
                    prop_assert!(out.is_empty() || out.len() == 1 + 2 * HANDSHAKE_SIZE);
                }
                Err(HandshakeError::UnsupportedVersion(v)) => {
                    prop_assert_eq!(v, bytes[0]);
                    prop_assert_ne!(v, 3);
                }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}
