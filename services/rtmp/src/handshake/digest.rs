//! The Flash Player 9+ digest handshake scheme.
//!
//! A digest C1/S1 hides a 32-byte HMAC-SHA256 somewhere in its random part:
//! the position is derived from four bytes of the packet (see
//! [`DigestScheme`]) and the HMAC covers the other 1504 bytes. C1 is keyed
//! with the first 30 bytes of [`GENUINE_FP_KEY`], S1 with the first 36 bytes
//! of [`GENUINE_FMS_KEY`]. A peer proves it saw that digest by signing its
//! C2/S2: the last 32 bytes are an HMAC of the first 1504, keyed with
//! `HMAC(full own key, peer's digest)`.
//!
//! Nothing here is secret: the keys have been public for over a decade and
//! the scheme only serves to satisfy clients and servers that insist on it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{HANDSHAKE_SIZE, Packet};

/// Length of a digest or signature (SHA-256 output).
pub const DIGEST_LEN: usize = 32;

/// Shared tail of both keys.
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];

/// Key for the digest in C1 (the first 30 bytes of [`GENUINE_FP_KEY`]).
pub const FP_PARTIAL_KEY: &[u8; 30] = b"Genuine Adobe Flash Player 001";

/// Key for the digest in S1 (the first 36 bytes of [`GENUINE_FMS_KEY`]).
pub const FMS_PARTIAL_KEY: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";

/// Full client key, used to derive the C2 signing key from S1's digest.
pub const GENUINE_FP_KEY: [u8; 62] = concat(FP_PARTIAL_KEY, &KEY_TAIL);

/// Full server key, used to derive the S2 signing key from C1's digest.
pub const GENUINE_FMS_KEY: [u8; 68] = concat(FMS_PARTIAL_KEY, &KEY_TAIL);

/// Lets the full keys be spelled as "text + shared tail" without repeating
/// the tail bytes; a length mismatch fails at compile time.
const fn concat<const A: usize, const B: usize, const N: usize>(
    a: &[u8; A],
    b: &[u8; B],
) -> [u8; N] {
    assert!(A + B == N, "key length mismatch");
    let mut out = [0; N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// Where a C1/S1 keeps its digest. Clients pick one; a receiver has to try
/// both because neither is universal (ffmpeg and librtmp send scheme 0,
/// some Flash Player builds and encoders send scheme 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestScheme {
    /// Offset bytes at 8..12, digest somewhere in 12..772.
    Scheme0,
    /// Offset bytes at 772..776, digest somewhere in 776..1536.
    Scheme1,
}

impl DigestScheme {
    /// Detection order used when validating a peer's packet.
    pub const ALL: [Self; 2] = [Self::Scheme0, Self::Scheme1];

    /// The scheme's number as reported in [`super::HandshakeKind::Digest`].
    pub const fn number(self) -> u8 {
        match self {
            Self::Scheme0 => 0,
            Self::Scheme1 => 1,
        }
    }

    /// Start of the four bytes whose sum selects the digest position.
    const fn base(self) -> usize {
        match self {
            Self::Scheme0 => 8,
            Self::Scheme1 => 772,
        }
    }

    /// Position of the digest in `packet` under this scheme.
    ///
    /// Always within `base + 4 ..= base + 731`, so the digest never overlaps
    /// the bytes that locate it and `offset + 32 <= 1536` for both schemes:
    /// slicing with it cannot go out of bounds whatever the peer sent.
    pub fn digest_offset(self, packet: &Packet) -> usize {
        let base = self.base();
        let sum: usize = packet[base..base + 4].iter().map(|&b| usize::from(b)).sum();
        sum % 728 + base + 4
    }
}

/// HMAC-SHA256 of the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The digest a packet should carry at `offset`: the HMAC of everything
/// except the 32 bytes at `offset`.
fn digest_at(packet: &Packet, offset: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac_sha256(key, &[&packet[..offset], &packet[offset + DIGEST_LEN..]])
}

/// Checks the digest `packet` should carry under `scheme` and returns it if
/// it is there.
pub fn validate_digest(
    packet: &Packet,
    scheme: DigestScheme,
    key: &[u8],
) -> Option<[u8; DIGEST_LEN]> {
    let offset = scheme.digest_offset(packet);
    let expected = digest_at(packet, offset, key);
    let carried = &packet[offset..offset + DIGEST_LEN];
    // Constant-time comparison costs nothing here, so use it on principle.
    ct_eq(&expected, carried).then_some(expected)
}

/// Tries every scheme, returning the first one whose digest validates.
pub fn find_digest(packet: &Packet, key: &[u8]) -> Option<(DigestScheme, [u8; DIGEST_LEN])> {
    DigestScheme::ALL
        .into_iter()
        .find_map(|scheme| validate_digest(packet, scheme, key).map(|digest| (scheme, digest)))
}

/// Writes the digest for `scheme` into `packet` (whose other bytes must be
/// final) and returns it.
pub fn imprint_digest(packet: &mut Packet, scheme: DigestScheme, key: &[u8]) -> [u8; DIGEST_LEN] {
    let offset = scheme.digest_offset(packet);
    let digest = digest_at(packet, offset, key);
    packet[offset..offset + DIGEST_LEN].copy_from_slice(&digest);
    digest
}

/// Signature of a C2/S2 answering a packet whose digest was `peer_digest`;
/// `full_key` is the signer's own full key ([`GENUINE_FMS_KEY`] for S2,
/// [`GENUINE_FP_KEY`] for C2).
fn response_signature(
    packet: &Packet,
    full_key: &[u8],
    peer_digest: &[u8; DIGEST_LEN],
) -> [u8; DIGEST_LEN] {
    let key = hmac_sha256(full_key, &[peer_digest]);
    hmac_sha256(&key, &[&packet[..SIGNATURE_OFFSET]])
}

/// Where a C2/S2 carries its signature.
const SIGNATURE_OFFSET: usize = HANDSHAKE_SIZE - DIGEST_LEN;

/// Overwrites the last 32 bytes of `packet` with its signature.
pub fn sign_response(packet: &mut Packet, full_key: &[u8], peer_digest: &[u8; DIGEST_LEN]) {
    let signature = response_signature(packet, full_key, peer_digest);
    packet[SIGNATURE_OFFSET..].copy_from_slice(&signature);
}

/// Whether `packet` is a C2/S2 correctly signed for `peer_digest`.
pub fn response_signature_valid(
    packet: &Packet,
    full_key: &[u8],
    peer_digest: &[u8; DIGEST_LEN],
) -> bool {
    ct_eq(
        &response_signature(packet, full_key, peer_digest),
        &packet[SIGNATURE_OFFSET..],
    )
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C1 as ffmpeg builds it: time 0, version 9.0.124.2, then filler.
    /// The filler is a fixed LCG so that the expected values below can be
    /// recomputed by any other implementation.
    fn ffmpeg_style_c1() -> Packet {
        let mut packet = [0; HANDSHAKE_SIZE];
        packet[4..8].copy_from_slice(&[9, 0, 124, 2]);
        let mut state: u32 = 0xDEAD_C0DE;
        for byte in &mut packet[8..] {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *byte = (state >> 24) as u8;
        }
        packet
    }

    /// Independent HMAC via the hmac crate's own API, not via `hmac_sha256`.
    fn reference_hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        Mac::update(&mut mac, data);
        mac.finalize().into_bytes().into()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn keys_match_published_bytes() {
        // Spelled out independently of the constants above (as listed in
        // ffmpeg/nginx-rtmp) so that a typo in either place is caught.
        let tail = "f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae";
        assert_eq!(
            hex(&GENUINE_FP_KEY),
            format!("{}{tail}", hex(b"Genuine Adobe Flash Player 001"))
        );
        assert_eq!(
            hex(&GENUINE_FMS_KEY),
            format!("{}{tail}", hex(b"Genuine Adobe Flash Media Server 001"))
        );
        assert_eq!(&GENUINE_FP_KEY[..30], FP_PARTIAL_KEY);
        assert_eq!(&GENUINE_FMS_KEY[..36], FMS_PARTIAL_KEY);
    }

    #[test]
    fn offsets_follow_both_formulas() {
        let mut packet = [0; HANDSHAKE_SIZE];
        packet[8..12].copy_from_slice(&[1, 2, 3, 4]);
        packet[772..776].copy_from_slice(&[200, 200, 200, 200]);
        assert_eq!(DigestScheme::Scheme0.digest_offset(&packet), 10 + 12);
        assert_eq!(
            DigestScheme::Scheme1.digest_offset(&packet),
            800 % 728 + 776
        );
    }

    #[test]
    fn offsets_stay_in_bounds_and_clear_of_their_selector() {
        for value in [0u8, 1, 127, 181, 182, 255] {
            let packet = [value; HANDSHAKE_SIZE];
            for scheme in DigestScheme::ALL {
                let offset = scheme.digest_offset(&packet);
                let base = scheme.base();
                assert!(offset >= base + 4, "{scheme:?} {value}");
                assert!(offset + DIGEST_LEN <= HANDSHAKE_SIZE, "{scheme:?} {value}");
            }
            // Scheme 0's digest must not reach scheme 1's selector either,
            // or imprinting would move the digest it just wrote.
            assert!(DigestScheme::Scheme0.digest_offset(&packet) + DIGEST_LEN <= 772);
        }
    }

    #[test]
    fn known_answer_ffmpeg_style_c1() {
        let mut c1 = ffmpeg_style_c1();
        let digest = imprint_digest(&mut c1, DigestScheme::Scheme0, FP_PARTIAL_KEY);

        // Position and HMAC recomputed by hand.
        let sum: usize = c1[8..12].iter().map(|&b| b as usize).sum();
        let pos = sum % 728 + 12;
        let mut message = c1[..pos].to_vec();
        message.extend_from_slice(&c1[pos + 32..]);
        let expected = reference_hmac(b"Genuine Adobe Flash Player 001", &message);
        assert_eq!(digest, expected);
        assert_eq!(c1[pos..pos + 32], expected);

        // Fixed values computed outside Rust (Python hmac/hashlib) for this
        // exact packet, so that a wrong HMAC construction is caught too.
        assert_eq!(pos, 44);
        assert_eq!(
            hex(&digest),
            "cd98466156ca6f58dc38cca423e4539c05ea06c21f8172338e73fc66425d7c41"
        );

        assert_eq!(
            validate_digest(&c1, DigestScheme::Scheme0, FP_PARTIAL_KEY),
            Some(digest)
        );
        assert_eq!(
            find_digest(&c1, FP_PARTIAL_KEY),
            Some((DigestScheme::Scheme0, digest))
        );
        // Wrong key (the server's) must not validate.
        assert_eq!(find_digest(&c1, FMS_PARTIAL_KEY), None);
    }

    #[test]
    fn known_answer_response_signature() {
        let mut c1 = ffmpeg_style_c1();
        let c1_digest = imprint_digest(&mut c1, DigestScheme::Scheme0, FP_PARTIAL_KEY);
        let mut s2 = [0x5A; HANDSHAKE_SIZE];
        sign_response(&mut s2, &GENUINE_FMS_KEY, &c1_digest);

        let key = reference_hmac(&GENUINE_FMS_KEY, &c1_digest);
        assert_eq!(s2[1504..], reference_hmac(&key, &s2[..1504]));
        assert_eq!(
            hex(&s2[1504..]),
            "87a4ed282c71ffed11a5cc1436bff0cf590bad770302a64bc83cc3ee3dc246fd"
        );
        assert!(response_signature_valid(&s2, &GENUINE_FMS_KEY, &c1_digest));
        assert!(!response_signature_valid(&s2, &GENUINE_FP_KEY, &c1_digest));
        s2[0] ^= 1;
        assert!(!response_signature_valid(&s2, &GENUINE_FMS_KEY, &c1_digest));
    }

    #[test]
    fn scheme1_is_found_and_corruption_is_rejected() {
        let mut packet = ffmpeg_style_c1();
        let digest = imprint_digest(&mut packet, DigestScheme::Scheme1, FMS_PARTIAL_KEY);
        assert_eq!(
            find_digest(&packet, FMS_PARTIAL_KEY),
            Some((DigestScheme::Scheme1, digest))
        );
        assert_eq!(
            validate_digest(&packet, DigestScheme::Scheme0, FMS_PARTIAL_KEY),
            None
        );

        // Flip one covered byte outside the digest.
        packet[20] ^= 0x80;
        assert_eq!(find_digest(&packet, FMS_PARTIAL_KEY), None);
    }

    #[test]
    fn all_zero_packet_has_no_digest() {
        let packet = [0; HANDSHAKE_SIZE];
        assert_eq!(find_digest(&packet, FP_PARTIAL_KEY), None);
    }
}
