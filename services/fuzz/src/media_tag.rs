//! Fuzz target for FLV / Enhanced RTMP tag parsing ([`parse_video`], [`parse_audio`]), which
//! decides for every media message whether it is a keyframe or a sequence header (what the
//! GOP cache and late joiners depend on).
//!
//! Input: one audio or video message payload; both parsers read it. Beyond "no panic", the
//! target checks that:
//! - a tag is found exactly when the payload is not empty;
//! - only the header decides: the result is the same for the first 5 bytes alone (tag byte and
//!   FourCC), so parsing never depends on, or walks, the frame data;
//! - a keyframe is never also a sequence header or an info-only frame.

use liverelay_rtmp::media::{parse_audio, parse_video};

/// The tag byte and an Enhanced RTMP FourCC: all the parsers may look at.
pub const HEADER_LEN: usize = 5;

pub fn fuzz(data: &[u8]) {
    let header = &data[..data.len().min(HEADER_LEN)];
    let video = parse_video(data);
    assert_eq!(video.is_some(), !data.is_empty(), "video tag of {data:?}");
    assert_eq!(
        video,
        parse_video(header),
        "video tag depends on frame data"
    );
    if let Some(tag) = video {
        assert!(!tag.codec.name().is_empty());
        assert!(
            !(tag.keyframe && (tag.sequence_header || tag.info_only)),
            "{tag:?} from {header:?}"
        );
    }
    let audio = parse_audio(data);
    assert_eq!(audio.is_some(), !data.is_empty(), "audio tag of {data:?}");
    assert_eq!(
        audio,
        parse_audio(header),
        "audio tag depends on frame data"
    );
}
