//! CMAF fMP4 muxing for LL-HLS: init segments and chunks (parts/segments) from FLV tag bodies.
//!
//! Sans-I/O and deterministic: the same inputs always give the same bytes (no clocks, no random
//! ids, fixed track ids), so two edges packaging the same stream serve identical init segments
//! and parts. It must never read the time of day or keep state between calls (the segmenter
//! owns numbering and timing), never copy sample data (samples are slices of the frames'
//! payloads), and never panic on publisher input: every length in a sequence header is
//! checked and a malformed one is an [`Unsupported`] error.
//!
//! Limits: the picture size written is the cropped coded size (a non-square sample aspect
//! ratio from the VUI is not applied); the `hvc1` sample entry is used even if a publisher
//! also repeats parameter sets in band (`hev1` would be the strict choice for that; ffmpeg
//! accepts it, Safari is not tested here).
//!
//! # Use
//! 1. From the latest sequence headers: [`VideoTrack::from_sequence_header`] (H.264 or HEVC,
//!    legacy FLV codec ids 7/12 or Enhanced RTMP `avc1`/`hvc1`) and
//!    [`AudioTrack::from_sequence_header`] (AAC, legacy sound format 10 or Enhanced `mp4a`).
//!    `codec_string()` gives the playlist `CODECS` value (`avc1.64001f`, `hvc1.1.6.L93.B0`,
//!    `mp4a.40.2`).
//! 2. [`init_segment`]`(video, audio)`: `ftyp` + `moov`. Video is track 1 (timescale 90 kHz),
//!    audio track 2 (timescale = [`AudioTrack::sample_rate`]).
//! 3. Per frame, [`video_sample`] / [`audio_sample`] slice the MP4 sample out of the tag body
//!    (zero-copy; `None` for sequence headers and other non-samples) — the caller builds
//!    [`Sample`]s with the frame's timestamp and the duration to the next frame.
//! 4. [`fragment`]`(sequence, video, audio, audio_sample_rate)`: one `moof` + `mdat` as a list
//!    of buffers ([`Fragment::chunks`]) to write vectored. The audio sample rate is the audio
//!    track's timescale, needed to convert its times. Samples must be in decode order; audio
//!    samples are always written as sync samples.
//!
//! Times: milliseconds on the stream's timeline, converted by [`ms_to_ticks`] (round half up)
//! everywhere; a sample's tick duration is `ticks(decode + duration) - ticks(decode)` and a
//! fragment's `tfdt` is `ticks(first decode)`, so nothing drifts however long the stream runs.

mod bits;
mod boxes;
mod flv;
mod fragment;
mod init;
mod sps;
mod track;

pub use flv::{VideoCodec, audio_sample, video_sample};
pub use fragment::{Fragment, Sample, fragment, ms_to_ticks};
pub use init::init_segment;
pub use track::{AudioTrack, VideoTrack};

/// Fixed so that init segments are byte-identical wherever they are made.
pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;
/// Video timescale: 90 kHz, so a millisecond is exactly 90 ticks.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Why a sequence header cannot be packaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// Not an H.264/HEVC/AAC sequence header (another codec, or not a sequence header).
    Codec,
    /// A length or field runs past the end of the data.
    Truncated(&'static str),
    /// A field has a value the standard does not allow (or that we do not handle).
    Malformed(&'static str),
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Codec => f.write_str("not an H.264, HEVC or AAC sequence header"),
            Self::Truncated(what) => write!(f, "truncated {what}"),
            Self::Malformed(what) => write!(f, "malformed {what}"),
        }
    }
}

impl std::error::Error for Unsupported {}

#[cfg(test)]
mod e2e_tests;
