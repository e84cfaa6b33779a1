//! Where the codec data sits in an FLV audio/video tag body (legacy FLV and Enhanced RTMP), so
//! that configuration records and samples can be sliced out without copying.

use bytes::Bytes;

/// The two video codecs the packager carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Avc,
    Hevc,
}

/// What a video tag body holds, with the offset of its codec data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VideoPacket {
    /// AVCDecoderConfigurationRecord / HEVCDecoderConfigurationRecord starts at `offset`.
    Config { codec: VideoCodec, offset: usize },
    /// Length-prefixed NAL units start at `offset`; `cts_ms` is the composition time offset.
    Frames { offset: usize, cts_ms: i32 },
}

fn si24(b: &[u8]) -> i32 {
    // Sign-extend a big-endian 24-bit value.
    (i32::from_be_bytes([b[0], b[1], b[2], 0])) >> 8
}

/// `None` for anything that is not AVC/HEVC configuration or coded frames: other codecs,
/// end-of-sequence, metadata, command frames, multitrack packets, truncated headers.
pub(crate) fn video_packet(payload: &[u8]) -> Option<VideoPacket> {
    let b0 = *payload.first()?;
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4][FourCC:4]
        let frame_type = (b0 >> 4) & 0x07;
        let codec = match payload.get(1..5)? {
            b"avc1" => VideoCodec::Avc,
            b"hvc1" => VideoCodec::Hevc,
            _ => return None,
        };
        if frame_type == 5 {
            return None; // video info / command frame
        }
        return match b0 & 0x0F {
            0 => Some(VideoPacket::Config { codec, offset: 5 }),
            // CodedFrames: SI24 composition time, then the NAL units.
            1 => Some(VideoPacket::Frames {
                offset: 8,
                cts_ms: si24(payload.get(5..8)?),
            }),
            // CodedFramesX: composition time implied zero.
            3 => Some(VideoPacket::Frames {
                offset: 5,
                cts_ms: 0,
            }),
            _ => None,
        };
    }
    let codec = match b0 & 0x0F {
        7 => VideoCodec::Avc,
        12 => VideoCodec::Hevc,
        _ => return None,
    };
    if b0 >> 4 == 5 {
        return None;
    }
    // [FrameType:4][CodecId:4][PacketType:8][CompositionTime:SI24]
    let cts_ms = si24(payload.get(2..5)?);
    match payload[1] {
        0 => Some(VideoPacket::Config { codec, offset: 5 }),
        1 => Some(VideoPacket::Frames { offset: 5, cts_ms }),
        _ => None,
    }
}

/// Offset of the AAC data and whether it is the AudioSpecificConfig; `None` for other codecs.
pub(crate) fn aac_packet(payload: &[u8]) -> Option<(bool, usize)> {
    let b0 = *payload.first()?;
    match b0 >> 4 {
        // Legacy AAC: [SoundFormat=10:4][rate:2][size:1][type:1][AACPacketType:8]
        10 => match *payload.get(1)? {
            0 => Some((true, 2)),
            1 => Some((false, 2)),
            _ => None,
        },
        // Enhanced RTMP audio: [SoundFormat=9:4][PacketType:4][FourCC:4]
        9 if payload.get(1..5)? == b"mp4a" => match b0 & 0x0F {
            0 => Some((true, 5)),
            1 => Some((false, 5)),
            _ => None,
        },
        _ => None,
    }
}

/// The MP4 sample of a video tag body and its composition offset (ms): the length-prefixed
/// NAL units exactly as MP4 stores them, so a zero-copy slice of `payload`. `None` for
/// sequence headers, end-of-sequence, other codecs, and frames with no data.
pub fn video_sample(payload: &Bytes) -> Option<(Bytes, i32)> {
    match video_packet(payload)? {
        VideoPacket::Frames { offset, cts_ms } if payload.len() > offset => {
            Some((payload.slice(offset..), cts_ms))
        }
        _ => None,
    }
}

/// The raw AAC frame of an audio tag body (a zero-copy slice); `None` for the
/// AudioSpecificConfig, other codecs and empty frames.
pub fn audio_sample(payload: &Bytes) -> Option<Bytes> {
    match aac_packet(payload)? {
        (false, offset) if payload.len() > offset => Some(payload.slice(offset..)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_avc_frames_carry_signed_cts() {
        let p = Bytes::from_static(&[0x27, 0x01, 0xFF, 0xFF, 0xDF, 0, 0, 0, 2, 0x41, 0x9a]);
        let (data, cts) = video_sample(&p).unwrap();
        assert_eq!(cts, -33);
        assert_eq!(&data[..], &[0, 0, 0, 2, 0x41, 0x9a]);
        // Zero copy: the sample points into the payload.
        assert_eq!(data.as_ptr(), p[5..].as_ptr());
        let p = Bytes::from_static(&[0x17, 0x01, 0x00, 0x00, 0x43, 0, 0, 0, 1, 0x65]);
        assert_eq!(video_sample(&p).unwrap().1, 67);
    }

    #[test]
    fn enhanced_coded_frames_and_coded_frames_x() {
        let p = Bytes::from_static(&[0x91, b'h', b'v', b'c', b'1', 0, 0, 0x21, 0, 0, 0, 1, 0x26]);
        let (data, cts) = video_sample(&p).unwrap();
        assert_eq!((cts, &data[..]), (33, &[0, 0, 0, 1, 0x26][..]));
        let p = Bytes::from_static(&[0xA3, b'a', b'v', b'c', b'1', 0, 0, 0, 1, 0x41]);
        let (data, cts) = video_sample(&p).unwrap();
        assert_eq!((cts, &data[..]), (0, &[0, 0, 0, 1, 0x41][..]));
    }

    #[test]
    fn non_samples_are_none() {
        for p in [
            &[][..],
            &[0x17, 0x00, 0, 0, 0, 1, 2][..], // sequence header
            &[0x17, 0x02, 0, 0, 0][..],       // end of sequence
            &[0x17, 0x01, 0, 0][..],          // truncated header
            &[0x17, 0x01, 0, 0, 0][..],       // no data
            &[0x12, 0x01, 0, 0, 0, 1][..],    // H.263
            &[0x90, b'h', b'v', b'c', b'1', 1][..], // enhanced sequence start
            &[0x92, b'h', b'v', b'c', b'1'][..], // sequence end
            &[0x91, b'a', b'v', b'0', b'1', 0, 0, 0, 1][..], // AV1
            &[0x91, b'h', b'v', b'c'][..],    // truncated FourCC
            &[0x91, b'h', b'v', b'c', b'1', 0, 0][..], // truncated CTS
            &[0xD1, b'h', b'v', b'c', b'1', 0, 0, 0, 1][..], // command frame
        ] {
            assert_eq!(video_sample(&Bytes::copy_from_slice(p)), None, "{p:x?}");
        }
    }

    #[test]
    fn aac_frames() {
        let p = Bytes::from_static(&[0xAF, 0x01, 0x21, 0x10]);
        assert_eq!(&audio_sample(&p).unwrap()[..], &[0x21, 0x10]);
        let p = Bytes::from_static(&[0x91, b'm', b'p', b'4', b'a', 0x21]);
        assert_eq!(&audio_sample(&p).unwrap()[..], &[0x21]);
        for p in [
            &[0xAF, 0x00, 0x12, 0x10][..],
            &[0xAF, 0x01][..],
            &[0xAF][..],
            &[0x2F, 0x01, 0xFF][..],
            &[0x90, b'm', b'p', b'4', b'a', 0x12, 0x10][..],
            &[0x91, b'O', b'p', b'u', b's', 1][..],
        ] {
            assert_eq!(audio_sample(&Bytes::copy_from_slice(p)), None, "{p:x?}");
        }
    }
}
