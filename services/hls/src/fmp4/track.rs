//! Track descriptions made from FLV sequence headers: the decoder configuration records that go
//! into the init segment as they are, the picture size read from the SPS, and the RFC 6381
//! codec strings for playlists.

use std::fmt::Write as _;

use super::Unsupported;
use super::flv::{VideoCodec, VideoPacket, aac_packet, video_packet};
use super::sps::{avc_picture_size, hevc_picture_size};

/// A video track: H.264 or HEVC, with its configuration record (the `avcC` / `hvcC` body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrack {
    pub codec: VideoCodec,
    /// AVCDecoderConfigurationRecord or HEVCDecoderConfigurationRecord, as sent by the
    /// publisher.
    pub config: Vec<u8>,
    pub width: u16,
    pub height: u16,
}

impl VideoTrack {
    /// From a video tag body that is a sequence header (legacy FLV codec id 7/12 or Enhanced
    /// RTMP `avc1`/`hvc1` SequenceStart).
    pub fn from_sequence_header(payload: &[u8]) -> Result<Self, Unsupported> {
        let Some(VideoPacket::Config { codec, offset }) = video_packet(payload) else {
            return Err(Unsupported::Codec);
        };
        let config = &payload[offset..];
        let sps = match codec {
            VideoCodec::Avc => first_avc_sps(config)?,
            VideoCodec::Hevc => first_hevc_sps(config)?,
        };
        let size = match codec {
            VideoCodec::Avc => avc_picture_size(sps)?,
            VideoCodec::Hevc => hevc_picture_size(sps)?,
        };
        Ok(Self {
            codec,
            config: config.to_vec(),
            width: size.width,
            height: size.height,
        })
    }

    /// RFC 6381 `CODECS` value: `avc1.PPCCLL` or `hvc1.<profile>.<compat>.<tier><level>.<flags>`
    /// (ISO/IEC 14496-15 Annex E).
    pub fn codec_string(&self) -> String {
        // A track made by from_sequence_header has the bytes; one built by hand may not.
        let c = |i: usize| self.config.get(i).copied().unwrap_or(0);
        match self.codec {
            VideoCodec::Avc => format!("avc1.{:02x}{:02x}{:02x}", c(1), c(2), c(3)),
            VideoCodec::Hevc => {
                let space = ["", "A", "B", "C"][usize::from(c(1) >> 6)];
                let tier = if c(1) & 0x20 != 0 { 'H' } else { 'L' };
                let profile = c(1) & 0x1F;
                // The compatibility flags are written in reverse bit order.
                let compat = u32::from_be_bytes([c(2), c(3), c(4), c(5)]).reverse_bits();
                let mut s = format!("hvc1.{space}{profile}.{compat:X}.{tier}{}", c(12));
                // Constraint bytes, trailing zero bytes omitted.
                let flags: Vec<u8> = (6..12).map(c).collect();
                let used = flags.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                for b in &flags[..used] {
                    let _ = write!(s, ".{b:X}");
                }
                s
            }
        }
    }
}

fn read_u16(data: &[u8], at: usize) -> Result<usize, Unsupported> {
    data.get(at..at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or(Unsupported::Truncated("configuration record"))
}

/// `len`-byte NAL unit preceded by a 16-bit length at `at`; returns it and the next offset.
fn nal_at(data: &[u8], at: usize) -> Result<(&[u8], usize), Unsupported> {
    let len = read_u16(data, at)?;
    let start = at + 2;
    let nal = data
        .get(start..start + len)
        .ok_or(Unsupported::Truncated("configuration record"))?;
    Ok((nal, start + len))
}

/// The first SPS of an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1), after
/// checking the whole record is well-formed (it goes into the init segment as is).
fn first_avc_sps(config: &[u8]) -> Result<&[u8], Unsupported> {
    if config.len() < 7 || config[0] != 1 {
        return Err(Unsupported::Malformed("AVCDecoderConfigurationRecord"));
    }
    let sps_count = usize::from(config[5] & 0x1F);
    let mut at = 6;
    let mut first = None;
    for _ in 0..sps_count {
        let (nal, next) = nal_at(config, at)?;
        first.get_or_insert(nal);
        at = next;
    }
    let pps_count = *config
        .get(at)
        .ok_or(Unsupported::Truncated("configuration record"))?;
    at += 1;
    for _ in 0..pps_count {
        at = nal_at(config, at)?.1;
    }
    first.ok_or(Unsupported::Malformed(
        "no SPS in AVCDecoderConfigurationRecord",
    ))
}

/// The first SPS (NAL type 33) in an HEVCDecoderConfigurationRecord's arrays (ISO/IEC 14496-15
/// 8.3.3.1), after checking the arrays are well-formed.
fn first_hevc_sps(config: &[u8]) -> Result<&[u8], Unsupported> {
    if config.len() < 23 || config[0] != 1 {
        return Err(Unsupported::Malformed("HEVCDecoderConfigurationRecord"));
    }
    let arrays = config[22];
    let mut at = 23;
    let mut first = None;
    for _ in 0..arrays {
        let nal_type = config
            .get(at)
            .ok_or(Unsupported::Truncated("configuration record"))?
            & 0x3F;
        let count = read_u16(config, at + 1)?;
        at += 3;
        for _ in 0..count {
            let (nal, next) = nal_at(config, at)?;
            if nal_type == 33 {
                first.get_or_insert(nal);
            }
            at = next;
        }
    }
    first.ok_or(Unsupported::Malformed(
        "no SPS in HEVCDecoderConfigurationRecord",
    ))
}

/// An AAC audio track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTrack {
    /// AudioSpecificConfig, as sent by the publisher.
    pub config: Vec<u8>,
    /// Audio object type (2 = AAC-LC, 5 = HE-AAC, 29 = HE-AACv2).
    pub object_type: u8,
    /// The core sampling rate: the track's timescale.
    pub sample_rate: u32,
    pub channels: u16,
}

const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

impl AudioTrack {
    /// From an audio tag body that is an AAC sequence header (legacy sound format 10, packet
    /// type 0, or Enhanced RTMP `mp4a` SequenceStart).
    pub fn from_sequence_header(payload: &[u8]) -> Result<Self, Unsupported> {
        let Some((true, offset)) = aac_packet(payload) else {
            return Err(Unsupported::Codec);
        };
        let config = &payload[offset..];
        // ISO/IEC 14496-3 1.6.2.1 AudioSpecificConfig.
        let mut r = super::bits::BitReader::new(config);
        let mut object_type = r.bits(5)?;
        if object_type == 31 {
            object_type = 32 + r.bits(6)?;
        }
        let rate_index = r.bits(4)?;
        let sample_rate = if rate_index == 15 {
            r.bits(24)?
        } else {
            *AAC_RATES
                .get(rate_index as usize)
                .ok_or(Unsupported::Malformed("AAC sampling frequency index"))?
        };
        if sample_rate == 0 {
            return Err(Unsupported::Malformed("AAC sampling rate"));
        }
        let channel_config = r.bits(4)?;
        // 0 = described by a program config element; 7 = 7.1 (8 channels).
        let channels = match channel_config {
            0 | 2 => 2,
            1..=6 => channel_config as u16,
            7 => 8,
            _ => return Err(Unsupported::Malformed("AAC channel configuration")),
        };
        Ok(Self {
            config: config.to_vec(),
            object_type: u8::try_from(object_type).unwrap_or(u8::MAX),
            sample_rate,
            channels,
        })
    }

    /// RFC 6381 `CODECS` value, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A legacy FLV AVC sequence header wrapping an avcC with the x264 720p SPS of `sps.rs`
    /// and a small PPS.
    pub(crate) fn avc_header() -> Vec<u8> {
        let sps = [
            0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00,
            0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
        ];
        let pps = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
        let mut p = vec![0x17, 0x00, 0, 0, 0, 1, 0x64, 0x00, 0x1f, 0xff, 0xe1];
        p.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        p.extend_from_slice(&sps);
        p.push(1);
        p.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        p.extend_from_slice(&pps);
        p
    }

    #[test]
    fn avc_track_from_legacy_header() {
        let t = VideoTrack::from_sequence_header(&avc_header()).unwrap();
        assert_eq!((t.codec, t.width, t.height), (VideoCodec::Avc, 1280, 720));
        assert_eq!(t.codec_string(), "avc1.64001f");
        assert_eq!(t.config, avc_header()[5..]);
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let h = avc_header();
        for cut in 0..h.len() {
            assert!(
                VideoTrack::from_sequence_header(&h[..cut]).is_err(),
                "cut {cut}"
            );
        }
        // A length field pointing far beyond the record.
        let mut bad = h.clone();
        bad[11] = 0xFF;
        assert!(VideoTrack::from_sequence_header(&bad).is_err());
        // A frame, not a header.
        assert_eq!(
            VideoTrack::from_sequence_header(&[0x17, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x65]),
            Err(Unsupported::Codec)
        );
    }

    /// An Enhanced RTMP SequenceStart with an hvcC holding the x265 Main 1080p SPS of
    /// `sps.rs`: Main profile, compat 0x60000000, constraints B0 00.., level 120 (4.0).
    pub(crate) fn hevc_header() -> Vec<u8> {
        let sps = [
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
            0x00, 0x03, 0x00, 0x78, 0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5, 0x96, 0x56, 0x69, 0x24,
            0xca, 0xf0, 0x16, 0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0f, 0x04,
        ];
        let mut p = vec![0x90, b'h', b'v', b'c', b'1'];
        #[rustfmt::skip]
        p.extend_from_slice(&[
            1, 0x01, 0x60, 0, 0, 0, 0xB0, 0, 0, 0, 0, 0, 120, 0xF0, 0, 0xFC, 0xFD, 0xF8, 0xF8,
            0, 0, 0x0F, 1, 0x80 | 33, 0, 1,
        ]);
        p.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        p.extend_from_slice(&sps);
        p
    }

    #[test]
    fn hevc_track_from_enhanced_header() {
        let p = hevc_header();
        let mut t = VideoTrack::from_sequence_header(&p).unwrap();
        assert_eq!((t.codec, t.width, t.height), (VideoCodec::Hevc, 1920, 1080));
        assert_eq!(t.codec_string(), "hvc1.1.6.L120.B0");
        // High tier, profile space 1, more constraint bytes.
        t.config[1] = 0x61;
        t.config[8] = 0x12;
        assert_eq!(t.codec_string(), "hvc1.A1.6.H120.B0.0.12");
        // A hand-made track with no record: a string, not a panic.
        t.config.clear();
        assert_eq!(t.codec_string(), "hvc1.0.0.L0");
        for cut in 0..p.len() {
            assert!(
                VideoTrack::from_sequence_header(&p[..cut]).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn aac_tracks() {
        // AAC-LC 44.1 kHz stereo: 00010 0100 0010 000
        let t = AudioTrack::from_sequence_header(&[0xAF, 0x00, 0x12, 0x10]).unwrap();
        assert_eq!((t.sample_rate, t.channels), (44100, 2));
        assert_eq!(t.codec_string(), "mp4a.40.2");
        // Enhanced RTMP, 48 kHz mono.
        let t =
            AudioTrack::from_sequence_header(&[0x90, b'm', b'p', b'4', b'a', 0x11, 0x88]).unwrap();
        assert_eq!((t.sample_rate, t.channels), (48000, 1));
        // Explicit 24-bit rate 1234.
        let t = AudioTrack::from_sequence_header(&[0xAF, 0, 0x17, 0x80, 0x02, 0x69, 0x10]).unwrap();
        assert_eq!(t.sample_rate, 1234);
        assert!(AudioTrack::from_sequence_header(&[0xAF, 0x00, 0x12]).is_err());
        assert!(AudioTrack::from_sequence_header(&[0xAF, 0x00, 0x16, 0x80]).is_err()); // index 13
        assert!(AudioTrack::from_sequence_header(&[0xAF, 0x01, 0x12, 0x10]).is_err());
        assert!(AudioTrack::from_sequence_header(&[0x2F, 0x00, 0x12, 0x10]).is_err());
    }

    /// Hostile input: every byte of valid headers set to edge values, and random bodies
    /// behind every header kind. Nothing may panic; whatever parses must also mux.
    #[test]
    fn mutated_and_random_headers_never_panic() {
        let try_all = |p: &[u8]| {
            if let Ok(v) = VideoTrack::from_sequence_header(p) {
                let _ = v.codec_string();
                let _ = crate::fmp4::init_segment(Some(&v), None);
            }
            if let Ok(a) = AudioTrack::from_sequence_header(p) {
                let _ = a.codec_string();
                let _ = crate::fmp4::init_segment(None, Some(&a));
            }
            let b = bytes::Bytes::copy_from_slice(p);
            let _ = (crate::fmp4::video_sample(&b), crate::fmp4::audio_sample(&b));
        };
        for valid in [avc_header(), hevc_header(), vec![0xAF, 0, 0x12, 0x10]] {
            for at in 0..valid.len() {
                for v in [0, 1, 0x1F, 0x7F, 0x80, 0xFF, valid[at] ^ 1] {
                    let mut p = valid.clone();
                    p[at] = v;
                    try_all(&p);
                }
            }
        }
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let prefixes: [&[u8]; 7] = [
            &[0x17, 0],
            &[0x1C, 0],
            &[0x90, b'a', b'v', b'c', b'1'],
            &[0x90, b'h', b'v', b'c', b'1'],
            &[0xAF, 0],
            &[0x90, b'm', b'p', b'4', b'a'],
            &[0x17, 0, 0, 0, 0, 1],
        ];
        for round in 0..20_000 {
            let mut p = prefixes[round % prefixes.len()].to_vec();
            let len = (next() % 96) as usize;
            p.extend((0..len).map(|_| next() as u8));
            try_all(&p);
        }
    }
}
