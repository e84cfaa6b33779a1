//! Reads just enough of FLV audio/video tag bodies (the payload of RTMP audio/video messages) to
//! know what a frame is: keyframe, sequence header, which codec. Legacy FLV codec ids and
//! Enhanced RTMP (FourCC) video and audio are both understood.

/// What a video message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTag {
    pub codec: VideoCodec,
    pub keyframe: bool,
    /// Decoder configuration (AVCDecoderConfigurationRecord, HEVC/AV1/VP9 config): every viewer
    /// needs the latest one before its first frame.
    pub sequence_header: bool,
    /// Not a picture at all: video info/command frames and end-of-sequence markers.
    pub info_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H263,
    Vp6,
    Avc,
    /// HEVC as legacy codec id 12 (widespread Chinese extension) or Enhanced RTMP `hvc1`.
    Hevc,
    Av1,
    Vp9,
    Other(u32),
}

impl VideoCodec {
    pub fn name(&self) -> &'static str {
        match self {
            Self::H263 => "h263",
            Self::Vp6 => "vp6",
            Self::Avc => "h264",
            Self::Hevc => "hevc",
            Self::Av1 => "av1",
            Self::Vp9 => "vp9",
            Self::Other(_) => "other",
        }
    }
}

/// Parses a video tag body; `None` for an empty payload.
pub fn parse_video(payload: &[u8]) -> Option<VideoTag> {
    let b0 = *payload.first()?;
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4][FourCC:4]...
        let frame_type = (b0 >> 4) & 0x07;
        let packet_type = b0 & 0x0F;
        let fourcc = payload
            .get(1..5)
            .map_or(0, |f| u32::from_be_bytes([f[0], f[1], f[2], f[3]]));
        let codec = match &fourcc.to_be_bytes() {
            b"avc1" => VideoCodec::Avc,
            b"hvc1" => VideoCodec::Hevc,
            b"av01" => VideoCodec::Av1,
            b"vp09" => VideoCodec::Vp9,
            _ => VideoCodec::Other(fourcc),
        };
        // Packet types: 0 SequenceStart, 1 CodedFrames, 2 SequenceEnd, 3 CodedFramesX,
        // 4 Metadata, 5 MPEG2TSSequenceStart.
        return Some(VideoTag {
            codec,
            keyframe: frame_type == 1 && matches!(packet_type, 1 | 3),
            sequence_header: matches!(packet_type, 0 | 5),
            info_only: frame_type == 5 || matches!(packet_type, 2 | 4),
        });
    }
    let frame_type = b0 >> 4;
    let codec = match b0 & 0x0F {
        2 => VideoCodec::H263,
        4 | 5 => VideoCodec::Vp6,
        7 => VideoCodec::Avc,
        12 => VideoCodec::Hevc,
        other => VideoCodec::Other(u32::from(other)),
    };
    let packet_type = match codec {
        VideoCodec::Avc | VideoCodec::Hevc => payload.get(1).copied(),
        _ => None,
    };
    // AVC/HEVC packet types: 0 sequence header, 1 NALUs, 2 end of sequence. An end of
    // sequence in a frame marked key holds no picture: a GOP must not start at it.
    Some(VideoTag {
        codec,
        keyframe: frame_type == 1 && !matches!(packet_type, Some(0 | 2)),
        sequence_header: packet_type == Some(0),
        info_only: frame_type == 5 || packet_type == Some(2),
    })
}

/// What an audio message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTag {
    pub codec: AudioCodec,
    pub sequence_header: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    Mp3,
    Aac,
    Speex,
    Opus,
    Flac,
    Ac3,
    Eac3,
    Other(u32),
}

impl AudioCodec {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mp3 => "mp3",
            Self::Aac => "aac",
            Self::Speex => "speex",
            Self::Opus => "opus",
            Self::Flac => "flac",
            Self::Ac3 => "ac3",
            Self::Eac3 => "eac3",
            Self::Other(_) => "other",
        }
    }
}

pub fn parse_audio(payload: &[u8]) -> Option<AudioTag> {
    let b0 = *payload.first()?;
    let format = b0 >> 4;
    if format == 9 {
        // Enhanced RTMP audio: [SoundFormat=9:4][PacketType:4][FourCC:4]; 0 = SequenceStart.
        let fourcc = payload
            .get(1..5)
            .map_or(0, |f| u32::from_be_bytes([f[0], f[1], f[2], f[3]]));
        let codec = match &fourcc.to_be_bytes() {
            b"mp4a" => AudioCodec::Aac,
            b"Opus" => AudioCodec::Opus,
            b"fLaC" => AudioCodec::Flac,
            b"ac-3" => AudioCodec::Ac3,
            b"ec-3" => AudioCodec::Eac3,
            b".mp3" => AudioCodec::Mp3,
            _ => AudioCodec::Other(fourcc),
        };
        return Some(AudioTag {
            codec,
            sequence_header: b0 & 0x0F == 0,
        });
    }
    let codec = match format {
        2 | 14 => AudioCodec::Mp3,
        10 => AudioCodec::Aac,
        11 => AudioCodec::Speex,
        other => AudioCodec::Other(u32::from(other)),
    };
    Some(AudioTag {
        codec,
        sequence_header: codec == AudioCodec::Aac && payload.get(1) == Some(&0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc() {
        let seq = parse_video(&[0x17, 0x00, 0, 0, 0, 1]).unwrap();
        assert_eq!(seq.codec, VideoCodec::Avc);
        assert!(seq.sequence_header && !seq.keyframe);
        let key = parse_video(&[0x17, 0x01, 0, 0, 0]).unwrap();
        assert!(key.keyframe && !key.sequence_header);
        let inter = parse_video(&[0x27, 0x01, 0, 0, 0]).unwrap();
        assert!(!inter.keyframe && !inter.sequence_header && !inter.info_only);
        let end = parse_video(&[0x17, 0x02]).unwrap();
        assert!(end.info_only && !end.keyframe, "{end:?}");
        // Found by `make fuzz-ci` (media_tag): legacy HEVC, end of sequence in a key frame.
        let end = parse_video(&[0x1c, 0x02]).unwrap();
        assert!(end.info_only && !end.keyframe, "{end:?}");
        assert!(parse_video(&[0x57, 0x01]).unwrap().info_only);
        assert_eq!(parse_video(&[]), None);
    }

    #[test]
    fn enhanced_rtmp_hevc_av1_vp9() {
        let seq = parse_video(&[0x90, b'h', b'v', b'c', b'1', 1, 2]).unwrap();
        assert_eq!(seq.codec, VideoCodec::Hevc);
        assert!(seq.sequence_header && !seq.keyframe);
        let key = parse_video(&[0x91, b'a', b'v', b'0', b'1']).unwrap();
        assert_eq!(key.codec, VideoCodec::Av1);
        assert!(key.keyframe);
        let keyx = parse_video(&[0x93, b'h', b'v', b'c', b'1']).unwrap();
        assert!(keyx.keyframe, "CodedFramesX keyframe");
        let inter = parse_video(&[0xA1, b'v', b'p', b'0', b'9']).unwrap();
        assert_eq!(inter.codec, VideoCodec::Vp9);
        assert!(!inter.keyframe);
        assert!(
            parse_video(&[0x92, b'h', b'v', b'c', b'1'])
                .unwrap()
                .info_only
        );
    }

    #[test]
    fn aac_and_enhanced_audio() {
        let seq = parse_audio(&[0xAF, 0x00, 0x12, 0x10]).unwrap();
        assert_eq!(seq.codec, AudioCodec::Aac);
        assert!(seq.sequence_header);
        assert!(!parse_audio(&[0xAF, 0x01, 0x21]).unwrap().sequence_header);
        assert_eq!(parse_audio(&[0x2F, 0xFF]).unwrap().codec, AudioCodec::Mp3);
        let opus = parse_audio(&[0x90, b'O', b'p', b'u', b's']).unwrap();
        assert_eq!(opus.codec, AudioCodec::Opus);
        assert!(opus.sequence_header);
    }
}
