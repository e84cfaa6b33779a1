//! The CMAF header (init segment): `ftyp` + `moov` with one track per present medium and
//! `mvex`, no samples. Nothing in it depends on the time of day or the host, so every edge
//! makes the same bytes from the same sequence headers.

use bytes::Bytes;

use super::boxes::BoxWriter;
use super::flv::VideoCodec;
use super::track::{AudioTrack, VideoTrack};
use super::{AUDIO_TRACK_ID, VIDEO_TIMESCALE, VIDEO_TRACK_ID};

/// `ftyp` + `moov` for the given tracks (at least one should be present; with none the
/// `moov` has no tracks). Video is track 1, audio track 2, whatever is present.
pub fn init_segment(video: Option<&VideoTrack>, audio: Option<&AudioTrack>) -> Bytes {
    let mut w = BoxWriter::new();
    w.boxed(b"ftyp", |w| {
        w.bytes(b"iso6");
        w.u32(0);
        for brand in [b"iso6", b"cmfc", b"mp41"] {
            w.bytes(brand);
        }
    });
    w.boxed(b"moov", |w| {
        mvhd(w);
        if let Some(v) = video {
            video_trak(w, v);
        }
        if let Some(a) = audio {
            audio_trak(w, a);
        }
        w.boxed(b"mvex", |w| {
            for (id, present) in [
                (VIDEO_TRACK_ID, video.is_some()),
                (AUDIO_TRACK_ID, audio.is_some()),
            ] {
                if present {
                    w.full(b"trex", 0, 0, |w| {
                        w.u32(id);
                        w.u32(1); // default_sample_description_index
                        w.zeros(12); // default duration, size, flags: every trun sets them
                    });
                }
            }
        });
    });
    Bytes::from(w.buf)
}

fn mvhd(w: &mut BoxWriter) {
    w.full(b"mvhd", 0, 0, |w| {
        w.zeros(8); // creation and modification time: fixed, for identical bytes everywhere
        w.u32(1000); // timescale
        w.u32(0); // duration: live
        w.u32(0x0001_0000); // rate 1.0
        w.u16(0x0100); // volume 1.0
        w.zeros(10);
        w.unity_matrix();
        w.zeros(24); // pre_defined
        w.u32(AUDIO_TRACK_ID + 1); // next_track_ID
    });
}

/// tkhd + mdia shared by both kinds; `entry` writes the sample entry into stsd.
struct TrakParams {
    id: u32,
    timescale: u32,
    handler: &'static [u8; 4],
    handler_name: &'static [u8],
    volume: u16,
    width: u16,
    height: u16,
}

fn trak(
    w: &mut BoxWriter,
    p: &TrakParams,
    media_header: impl FnOnce(&mut BoxWriter),
    entry: impl FnOnce(&mut BoxWriter),
) {
    w.boxed(b"trak", |w| {
        // flags: track_enabled | track_in_movie
        w.full(b"tkhd", 0, 0x3, |w| {
            w.zeros(8); // creation, modification
            w.u32(p.id);
            w.zeros(4);
            w.u32(0); // duration
            w.zeros(8);
            w.u16(0); // layer
            w.u16(0); // alternate_group
            w.u16(p.volume);
            w.zeros(2);
            w.unity_matrix();
            w.u32(u32::from(p.width) << 16);
            w.u32(u32::from(p.height) << 16);
        });
        w.boxed(b"mdia", |w| {
            w.full(b"mdhd", 0, 0, |w| {
                w.zeros(8);
                w.u32(p.timescale);
                w.u32(0);
                w.u16(0x55C4); // language "und"
                w.u16(0);
            });
            w.full(b"hdlr", 0, 0, |w| {
                w.u32(0);
                w.bytes(p.handler);
                w.zeros(12);
                w.bytes(p.handler_name);
                w.u8(0);
            });
            w.boxed(b"minf", |w| {
                media_header(w);
                w.boxed(b"dinf", |w| {
                    w.full(b"dref", 0, 0, |w| {
                        w.u32(1);
                        w.full(b"url ", 0, 1, |_| {}); // media in this file
                    });
                });
                w.boxed(b"stbl", |w| {
                    w.full(b"stsd", 0, 0, |w| {
                        w.u32(1);
                        entry(w);
                    });
                    // No samples here: they all come in fragments.
                    w.full(b"stts", 0, 0, |w| w.u32(0));
                    w.full(b"stsc", 0, 0, |w| w.u32(0));
                    w.full(b"stsz", 0, 0, |w| w.zeros(8));
                    w.full(b"stco", 0, 0, |w| w.u32(0));
                });
            });
        });
    });
}

fn video_trak(w: &mut BoxWriter, v: &VideoTrack) {
    let p = TrakParams {
        id: VIDEO_TRACK_ID,
        timescale: VIDEO_TIMESCALE,
        handler: b"vide",
        handler_name: b"VideoHandler",
        volume: 0,
        width: v.width,
        height: v.height,
    };
    let (entry_kind, config_kind) = match v.codec {
        VideoCodec::Avc => (b"avc1", b"avcC"),
        VideoCodec::Hevc => (b"hvc1", b"hvcC"),
    };
    trak(
        w,
        &p,
        |w| w.full(b"vmhd", 0, 1, |w| w.zeros(8)),
        |w| {
            // VisualSampleEntry (ISO/IEC 14496-12 12.1.3)
            w.boxed(entry_kind, |w| {
                w.zeros(6);
                w.u16(1); // data_reference_index
                w.zeros(16); // pre_defined, reserved
                w.u16(v.width);
                w.u16(v.height);
                w.u32(0x0048_0000); // 72 dpi
                w.u32(0x0048_0000);
                w.u32(0);
                w.u16(1); // frame_count
                w.zeros(32); // compressorname
                w.u16(0x0018); // depth
                w.u16(0xFFFF); // pre_defined = -1
                w.boxed(config_kind, |w| w.bytes(&v.config));
            });
        },
    );
}

fn audio_trak(w: &mut BoxWriter, a: &AudioTrack) {
    let p = TrakParams {
        id: AUDIO_TRACK_ID,
        timescale: a.sample_rate,
        handler: b"soun",
        handler_name: b"SoundHandler",
        volume: 0x0100,
        width: 0,
        height: 0,
    };
    trak(
        w,
        &p,
        |w| w.full(b"smhd", 0, 0, |w| w.zeros(4)),
        |w| {
            // AudioSampleEntry (ISO/IEC 14496-12 12.2.3)
            w.boxed(b"mp4a", |w| {
                w.zeros(6);
                w.u16(1);
                w.zeros(8);
                w.u16(a.channels);
                w.u16(16); // samplesize
                w.zeros(4);
                // 16.16 field: rates above 65535 (88.2/96 kHz) do not fit; decoders use the
                // AudioSpecificConfig and the timescale.
                w.u32(a.sample_rate.min(0xFFFF) << 16);
                esds(w, &a.config);
            });
        },
    );
}

/// ES_Descriptor with the AudioSpecificConfig (ISO/IEC 14496-1 7.2.6.5, 14496-14 5.6).
fn esds(w: &mut BoxWriter, asc: &[u8]) {
    let mut dsi = Vec::new();
    descriptor(&mut dsi, 0x05, asc);
    let mut dcd = vec![0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // AAC, audio stream
    dcd.extend_from_slice(&dsi);
    let mut dcd_desc = Vec::new();
    descriptor(&mut dcd_desc, 0x04, &dcd);
    let mut es = Vec::new();
    es.extend_from_slice(&(AUDIO_TRACK_ID as u16).to_be_bytes()); // ES_ID
    es.push(0); // no stream dependence, URL or OCR
    es.extend_from_slice(&dcd_desc);
    descriptor(&mut es, 0x06, &[0x02]); // SLConfigDescriptor: predefined MP4
    w.full(b"esds", 0, 0, |w| {
        let mut out = Vec::new();
        descriptor(&mut out, 0x03, &es);
        w.bytes(&out);
    });
}

/// A descriptor: tag, expandable size (7 bits a byte, high bit = more), body.
fn descriptor(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    let len = body.len();
    let mut groups = 1;
    while groups < 4 && len >> (7 * groups) != 0 {
        groups += 1;
    }
    for i in (0..groups).rev() {
        let more = if i > 0 { 0x80 } else { 0 };
        out.push(more | ((len >> (7 * i)) & 0x7F) as u8);
    }
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bodies of the boxes of `kind` directly in `data`.
    fn all<'a>(data: &'a [u8], kind: &[u8; 4]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= data.len() {
            let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            if &data[at + 4..at + 8] == kind {
                out.push(&data[at + 8..at + size]);
            }
            at += size;
        }
        out
    }

    /// The body of the first box at `path` (e.g. `mdia/mdhd`).
    fn find<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> &'a [u8] {
        path.iter().fold(data, |d, kind| {
            all(d, kind)
                .first()
                .copied()
                .unwrap_or_else(|| panic!("no {kind:?}"))
        })
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn avc_and_aac_init() {
        let video =
            VideoTrack::from_sequence_header(&crate::fmp4::track::tests::avc_header()).unwrap();
        let audio = AudioTrack::from_sequence_header(&[0xAF, 0x00, 0x12, 0x10]).unwrap();
        let init = init_segment(Some(&video), Some(&audio));
        assert_eq!(&find(&init, &[b"ftyp"])[..4], b"iso6");
        let moov = find(&init, &[b"moov"]);
        let mvhd = find(moov, &[b"mvhd"]);
        let traks = all(moov, b"trak");
        assert_eq!(traks.len(), 2);
        assert_eq!(
            &mvhd[4..12],
            &[0; 8],
            "no creation time: identical on every edge"
        );
        // Track 1 video at 90 kHz with the avcC as sent; track 2 audio at 44.1 kHz.
        let tkhd = find(traks[0], &[b"tkhd"]);
        assert_eq!(u32_at(tkhd, 12), VIDEO_TRACK_ID);
        assert_eq!(
            (u32_at(tkhd, 76), u32_at(tkhd, 80)),
            (1280 << 16, 720 << 16)
        );
        let mdhd = find(traks[0], &[b"mdia", b"mdhd"]);
        assert_eq!(u32_at(mdhd, 12), 90_000);
        let stsd = [b"mdia", b"minf", b"stbl", b"stsd"];
        let avc1 = &find(traks[0], &stsd)[8..];
        assert_eq!(&avc1[4..8], b"avc1");
        assert_eq!(find(&avc1[8 + 78..], &[b"avcC"]), &video.config[..]);
        let tkhd = find(traks[1], &[b"tkhd"]);
        assert_eq!(u32_at(tkhd, 12), AUDIO_TRACK_ID);
        let mdhd = find(traks[1], &[b"mdia", b"mdhd"]);
        assert_eq!(u32_at(mdhd, 12), 44_100);
        let mp4a = &find(traks[1], &stsd)[8..];
        assert_eq!(&mp4a[4..8], b"mp4a");
        let esds = find(&mp4a[8 + 28..], &[b"esds"]);
        assert!(
            esds.windows(4).any(|w| w == [0x05, 2, 0x12, 0x10]),
            "ASC in esds"
        );
        for (i, id) in [VIDEO_TRACK_ID, AUDIO_TRACK_ID].into_iter().enumerate() {
            let trex = all(find(moov, &[b"mvex"]), b"trex")[i];
            assert_eq!(u32_at(trex, 4), id);
        }
        // Audio only: still track 2, so parts and inits agree whatever the stream carries.
        let init = init_segment(None, Some(&audio));
        let traks = all(find(&init, &[b"moov"]), b"trak");
        assert_eq!(traks.len(), 1);
        assert_eq!(u32_at(find(traks[0], &[b"tkhd"]), 12), AUDIO_TRACK_ID);
    }

    #[test]
    fn descriptor_sizes() {
        let mut out = Vec::new();
        descriptor(&mut out, 5, &[0x12, 0x10]);
        assert_eq!(out, [5, 2, 0x12, 0x10]);
        let mut out = Vec::new();
        descriptor(&mut out, 4, &[0; 200]);
        assert_eq!(&out[..3], &[4, 0x81, 0x48]);
        assert_eq!(out.len(), 203);
    }
}
