//! CMAF chunks: `moof` + `mdat` for one part or segment. The box headers are made here; the
//! sample data stays in the frames' own buffers and is only referenced (written vectored).

use bytes::Bytes;

use super::boxes::BoxWriter;
use super::{AUDIO_TRACK_ID, VIDEO_TIMESCALE, VIDEO_TRACK_ID};

/// One media sample on the stream's millisecond timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub decode_ms: u64,
    /// Until the next sample's decode time (the caller knows it; the last sample of a stream
    /// takes its predecessor's).
    pub duration_ms: u32,
    /// Presentation minus decode time (B-frames); 0 for audio.
    pub composition_offset_ms: i32,
    /// A random access point (IDR / IRAP). Audio samples are always written as sync samples.
    pub keyframe: bool,
    pub data: Bytes,
}

/// A `moof` + `mdat`, as the buffers to write one after another: the first holds the
/// `moof` and the `mdat` header, the rest are the samples' data (shared, not copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub chunks: Vec<Bytes>,
    /// Total bytes of all chunks.
    pub len: usize,
}

impl Fragment {
    /// The fragment in one contiguous buffer (copies; for callers that cannot write vectored).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.len);
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        Bytes::from(out)
    }
}

/// Milliseconds to ticks of `timescale`, rounding half up. The one conversion used for decode
/// times, durations and composition offsets: durations are differences of converted instants,
/// so rounding never accumulates into drift.
pub fn ms_to_ticks(ms: u64, timescale: u32) -> u64 {
    let ticks = (u128::from(ms) * u128::from(timescale) + 500) / 1000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Signed version of [`ms_to_ticks`] for an instant `ms` that may be before zero.
fn signed_ticks(ms: i128, timescale: u32) -> i128 {
    (ms * i128::from(timescale) + 500).div_euclid(1000)
}

const SYNC: u32 = 0x0200_0000; // sample_depends_on = 2 (depends on no other)
const NON_SYNC: u32 = 0x0101_0000; // sample_depends_on = 1, sample_is_non_sync_sample

// trun flags
const DATA_OFFSET: u32 = 0x000001;
const DURATION: u32 = 0x000100;
const SIZE: u32 = 0x000200;
const FLAGS: u32 = 0x000400;
const CTO: u32 = 0x000800;
/// tfhd flag: data offsets are relative to this moof (CMAF requires it).
const DEFAULT_BASE_IS_MOOF: u32 = 0x020000;

struct TrackRun<'a> {
    id: u32,
    timescale: u32,
    samples: &'a [Sample],
    /// Audio: every frame is a sync sample and there is no reordering.
    audio: bool,
}

/// One CMAF chunk with sequence number `sequence` (mfhd): a `traf` per non-empty track, video
/// (track 1, 90 kHz) then audio (track 2, `audio_timescale` = the AudioTrack's sample rate).
/// Samples must be in decode order. With no samples at all, an empty `moof` and `mdat`.
pub fn fragment(
    sequence: u32,
    video: &[Sample],
    audio: &[Sample],
    audio_timescale: u32,
) -> Fragment {
    let runs = [
        TrackRun {
            id: VIDEO_TRACK_ID,
            timescale: VIDEO_TIMESCALE,
            samples: video,
            audio: false,
        },
        TrackRun {
            id: AUDIO_TRACK_ID,
            timescale: audio_timescale.max(1),
            samples: audio,
            audio: true,
        },
    ];
    let mut w = BoxWriter::new();
    // Where each trun's data_offset field is, and the mdat payload offset it must point at.
    let mut offsets: Vec<(usize, usize)> = Vec::new();
    let mut payload = 0usize;
    w.boxed(b"moof", |w| {
        w.full(b"mfhd", 0, 0, |w| w.u32(sequence));
        for run in runs.iter().filter(|r| !r.samples.is_empty()) {
            let field = traf(w, run);
            offsets.push((field, payload));
            payload += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
        }
    });
    let moof_len = w.buf.len();
    // mdat header: 8 bytes, or 16 with a 64-bit size when the payload needs it.
    let header = if payload + 8 > u32::MAX as usize {
        16
    } else {
        8
    };
    for (field, at) in offsets {
        let offset = i32::try_from(moof_len + header + at).unwrap_or(i32::MAX);
        w.buf[field..field + 4].copy_from_slice(&offset.to_be_bytes());
    }
    if header == 16 {
        w.u32(1);
        w.bytes(b"mdat");
        w.u64((payload + 16) as u64);
    } else {
        w.u32((payload + 8) as u32);
        w.bytes(b"mdat");
    }
    let mut chunks = Vec::with_capacity(1 + video.len() + audio.len());
    chunks.push(Bytes::from(w.buf));
    chunks.extend(video.iter().chain(audio).map(|s| s.data.clone()));
    Fragment {
        len: moof_len + header + payload,
        chunks,
    }
}

/// Writes a `traf`; returns the position of its trun's data_offset field.
fn traf(w: &mut BoxWriter, run: &TrackRun<'_>) -> usize {
    let mut field = 0;
    w.boxed(b"traf", |w| {
        w.full(b"tfhd", 0, DEFAULT_BASE_IS_MOOF, |w| w.u32(run.id));
        let base = ms_to_ticks(run.samples[0].decode_ms, run.timescale);
        w.full(b"tfdt", 1, 0, |w| w.u64(base));
        let flags = DATA_OFFSET | DURATION | SIZE | FLAGS | if run.audio { 0 } else { CTO };
        w.full(b"trun", 1, flags, |w| {
            w.u32(u32::try_from(run.samples.len()).unwrap_or(u32::MAX));
            field = w.buf.len();
            w.u32(0); // data_offset, patched once the moof size is known
            for s in run.samples {
                let start = ms_to_ticks(s.decode_ms, run.timescale);
                let end = ms_to_ticks(
                    s.decode_ms.saturating_add(u64::from(s.duration_ms)),
                    run.timescale,
                );
                w.u32(u32::try_from(end - start).unwrap_or(u32::MAX));
                w.u32(u32::try_from(s.data.len()).unwrap_or(u32::MAX));
                w.u32(if run.audio || s.keyframe {
                    SYNC
                } else {
                    NON_SYNC
                });
                if !run.audio {
                    let decode = i128::from(s.decode_ms);
                    let cto =
                        signed_ticks(decode + i128::from(s.composition_offset_ms), run.timescale)
                            - signed_ticks(decode, run.timescale);
                    let cto =
                        i32::try_from(cto).unwrap_or(if cto < 0 { i32::MIN } else { i32::MAX });
                    w.u32(cto as u32);
                }
            }
        });
    });
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(
        decode_ms: u64,
        duration_ms: u32,
        cto: i32,
        keyframe: bool,
        data: &'static [u8],
    ) -> Sample {
        Sample {
            decode_ms,
            duration_ms,
            composition_offset_ms: cto,
            keyframe,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn rounding_never_drifts() {
        // 1024-sample AAC frames at 44.1 kHz arrive with ms timestamps 23 or 24 apart; the
        // ticks of consecutive samples add up to the converted end, whatever the rounding.
        let mut total = 0;
        let mut t = 1_000_000_000_000u64; // far into a long stream
        let start = ms_to_ticks(t, 44100);
        for i in 0..1000u64 {
            let d = if i % 3 == 0 { 24 } else { 23 };
            total += ms_to_ticks(t + d, 44100) - ms_to_ticks(t, 44100);
            t += d;
        }
        assert_eq!(start + total, ms_to_ticks(t, 44100));
        assert_eq!(ms_to_ticks(1, 90000), 90);
        assert_eq!(ms_to_ticks(1, 44100), 44); // 44.1 rounds down
        assert_eq!(ms_to_ticks(5, 44100), 221); // 220.5 rounds up
        assert_eq!(ms_to_ticks(u64::MAX, 96000), u64::MAX);
        assert_eq!(signed_ticks(-1, 44100), -44);
    }

    /// Byte-exact layout of a small two-track fragment.
    #[test]
    fn layout() {
        let v = [
            sample(1000, 33, 66, true, b"IDR!"),
            sample(1033, 34, -33, false, b"B"),
        ];
        let a = [sample(1000, 23, 0, false, b"aac")];
        let f = fragment(7, &v, &a, 48000);
        assert_eq!(f.chunks.len(), 4);
        let head = &f.chunks[0];
        assert_eq!(f.len, head.len() + 8);
        assert_eq!(f.to_bytes().len(), f.len);
        // moof: 8 + mfhd 16 + video traf (8 + tfhd 16 + tfdt 20 + trun 20 + 2*16)
        //       + audio traf (8 + 16 + 20 + trun 20 + 12)
        let moof = 8 + 16 + (8 + 16 + 20 + 20 + 32) + (8 + 16 + 20 + 20 + 12);
        assert_eq!(head.len(), moof + 8);
        assert_eq!(&head[..8], &[0, 0, 0, moof as u8, b'm', b'o', b'o', b'f']);
        assert_eq!(&head[moof..], &[0, 0, 0, 16, b'm', b'd', b'a', b't']);
        let mfhd = &head[8..24];
        assert_eq!(
            &mfhd[4..],
            &[b'm', b'f', b'h', b'd', 0, 0, 0, 0, 0, 0, 0, 7]
        );
        let vtraf = &head[24..24 + 96];
        assert_eq!(
            &vtraf[8..24],
            &[0, 0, 0, 16, b't', b'f', b'h', b'd', 0, 2, 0, 0, 0, 0, 0, 1]
        );
        // tfdt v1: 1000 ms = 90000 ticks
        assert_eq!(
            &vtraf[24..44],
            &[
                0, 0, 0, 20, b't', b'f', b'd', b't', 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x5f, 0x90
            ]
        );
        let trun = &vtraf[44..];
        assert_eq!(&trun[4..12], &[b't', b'r', b'u', b'n', 1, 0, 0x0f, 0x01]);
        assert_eq!(&trun[12..16], &2u32.to_be_bytes());
        assert_eq!(&trun[16..20], &((moof + 8) as u32).to_be_bytes());
        let first: Vec<u32> = trun[20..36]
            .chunks(4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(first, [33 * 90, 4, SYNC, 66 * 90]);
        let second: Vec<u32> = trun[36..52]
            .chunks(4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(second, [34 * 90, 1, NON_SYNC, (-33i32 * 90) as u32]);
        let atraf = &head[24 + 96..moof];
        assert_eq!(&atraf[20..24], &2u32.to_be_bytes(), "audio is track 2");
        let atrun = &atraf[44..];
        assert_eq!(
            &atrun[8..12],
            &[1, 0, 0x07, 0x01],
            "audio trun: no composition offsets"
        );
        // The audio data starts after the video data.
        assert_eq!(&atrun[16..20], &((moof + 8 + 5) as u32).to_be_bytes());
        // 1000 ms at 48 kHz; 23 ms = 1104 ticks; audio is always sync.
        assert_eq!(&atraf[36..44], &48000u64.to_be_bytes());
        let fields: Vec<u32> = atrun[20..32]
            .chunks(4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(fields, [1104, 3, SYNC]);
        // The sample data is shared, not copied.
        assert_eq!(f.chunks[1].as_ptr(), v[0].data.as_ptr());
        // Same inputs, same bytes.
        assert_eq!(fragment(7, &v, &a, 48000), f);
    }

    /// trun durations and tfdt of consecutive fragments line up exactly at 44.1 kHz, where
    /// 23 ms is 1014.3 ticks: converting each duration on its own would lose 0.3 a sample.
    #[test]
    fn consecutive_fragments_do_not_drift() {
        let frames: Vec<Sample> = (0..100u64)
            .map(|i| sample(i * 23, 23, 0, true, b"a"))
            .collect();
        let tfdt_and_durations = |f: &Fragment| {
            let h = &f.chunks[0];
            let traf = &h[24..];
            let tfdt = u64::from_be_bytes(traf[36..44].try_into().unwrap());
            let n = u32::from_be_bytes(traf[56..60].try_into().unwrap()) as usize;
            let sum: u64 = (0..n)
                .map(|i| {
                    let at = 64 + i * 12;
                    u64::from(u32::from_be_bytes(traf[at..at + 4].try_into().unwrap()))
                })
                .sum();
            (tfdt, sum)
        };
        let mut next = 0;
        for (k, chunk) in frames.chunks(7).enumerate() {
            let (tfdt, sum) = tfdt_and_durations(&fragment(k as u32, &[], chunk, 44100));
            assert_eq!(
                tfdt, next,
                "fragment {k} starts where the previous one ended"
            );
            next = tfdt + sum;
        }
        assert_eq!(next, ms_to_ticks(100 * 23, 44100));
    }

    #[test]
    fn single_track_and_empty() {
        let a = [sample(0, 21, 0, true, b"x")];
        let f = fragment(1, &[], &a, 48000);
        let head = &f.chunks[0];
        // tfhd of the only traf names track 2.
        assert_eq!(&head[24 + 8 + 12..24 + 8 + 16], &2u32.to_be_bytes());
        let empty = fragment(1, &[], &[], 0);
        assert_eq!(empty.len, 8 + 16 + 8);
    }
}
