//! Picture size from H.264 and HEVC sequence parameter sets (the tkhd and sample entry need
//! it; players size the video element from it).

use super::Unsupported;
use super::bits::{BitReader, rbsp};

/// Decoded picture size after cropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PictureSize {
    pub width: u16,
    pub height: u16,
}

/// Largest side accepted: H.264 level 6.2 and HEVC level 6.2 stay well below this.
const MAX_SIDE: u64 = 16_384;

fn size(width: u64, height: u64) -> Result<PictureSize, Unsupported> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(Unsupported::Malformed("picture size"));
    }
    // Both fit: MAX_SIDE < u16::MAX.
    Ok(PictureSize {
        width: width as u16,
        height: height as u16,
    })
}

/// Width and height from an H.264 SPS NAL unit (with its one-byte NAL header), ITU-T H.264
/// 7.3.2.1.1.
pub(crate) fn avc_picture_size(nal: &[u8]) -> Result<PictureSize, Unsupported> {
    if nal.first().map(|h| h & 0x1F) != Some(7) {
        return Err(Unsupported::Malformed("not an H.264 SPS"));
    }
    let data = rbsp(&nal[1..]);
    let mut r = BitReader::new(&data);
    let profile_idc = r.bits(8)?;
    r.skip(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return Err(Unsupported::Malformed("chroma_format_idc"));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            // seq_scaling_matrix_present_flag
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(Unsupported::Malformed(
                    "num_ref_frames_in_pic_order_cnt_cycle",
                ));
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return Err(Unsupported::Malformed("pic_order_cnt_type")),
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let frame_height_factor = if frame_mbs_only { 1 } else { 2 };
    let window = r.bit()?; // frame_cropping_flag
    let full = (width_mbs * 16, height_map_units * 16 * frame_height_factor);
    let chroma = ChromaFormat {
        idc: chroma_format_idc,
        separate_colour_plane,
    };
    cropped(&mut r, window, full, chroma, frame_height_factor)
}

#[derive(Clone, Copy)]
struct ChromaFormat {
    idc: u32,
    separate_colour_plane: bool,
}

/// Applies the cropping (H.264) / conformance (HEVC) window, read from `r` when `present`:
/// offsets count chroma samples, SubWidthC x SubHeightC luma samples (Table 6-1 of both
/// standards), with lines doubled for field-coded H.264 (`line_factor` 2).
fn cropped(
    r: &mut BitReader<'_>,
    present: bool,
    (width, height): (u64, u64),
    chroma: ChromaFormat,
    line_factor: u64,
) -> Result<PictureSize, Unsupported> {
    let (mut crop_x, mut crop_y) = (0u64, 0u64);
    if present {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        // ChromaArrayType 0 (monochrome or separate colour planes): luma units.
        let array_type = if chroma.separate_colour_plane {
            0
        } else {
            chroma.idc
        };
        let (sub_w, sub_h) = match array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        crop_x = sub_w * (u64::from(left) + u64::from(right));
        crop_y = sub_h * line_factor * (u64::from(top) + u64::from(bottom));
    }
    size(width.saturating_sub(crop_x), height.saturating_sub(crop_y))
}

/// 7.3.2.1.1.1: only the reading matters, the values are not needed.
fn skip_scaling_list(r: &mut BitReader<'_>, len: usize) -> Result<(), Unsupported> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..len {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Width and height from an HEVC SPS NAL unit (with its two-byte NAL header), ITU-T H.265
/// 7.3.2.2.1.
pub(crate) fn hevc_picture_size(nal: &[u8]) -> Result<PictureSize, Unsupported> {
    if nal.first().map(|h| (h >> 1) & 0x3F) != Some(33) || nal.len() < 2 {
        return Err(Unsupported::Malformed("not an HEVC SPS"));
    }
    let data = rbsp(&nal[2..]);
    let mut r = BitReader::new(&data);
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)? as usize;
    r.skip(1)?; // sps_temporal_id_nesting_flag
    // profile_tier_level(1, max_sub_layers_minus1), 7.3.3: general part is 88 + 8 bits.
    r.skip(96)?;
    let mut sub_layers = [(false, false); 8];
    for layer in sub_layers.iter_mut().take(max_sub_layers_minus1) {
        *layer = (r.bit()?, r.bit()?);
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(2 * (8 - max_sub_layers_minus1))?; // reserved_zero_2bits
    }
    for &(profile_present, level_present) in sub_layers.iter().take(max_sub_layers_minus1) {
        if profile_present {
            r.skip(88)?;
        }
        if level_present {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    if chroma_format_idc > 3 {
        return Err(Unsupported::Malformed("chroma_format_idc"));
    }
    let separate_colour_plane = chroma_format_idc == 3 && r.bit()?;
    let full = (u64::from(r.ue()?), u64::from(r.ue()?));
    let window = r.bit()?; // conformance_window_flag
    let chroma = ChromaFormat {
        idc: chroma_format_idc,
        separate_colour_plane,
    };
    cropped(&mut r, window, full, chroma, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(size: Result<PictureSize, Unsupported>) -> (u16, u16) {
        let size = size.unwrap();
        (size.width, size.height)
    }

    // Vectors made with ffmpeg 5.1 (libx264, libx265) from testsrc2, one frame each.

    /// x264 High 1280x720 (a whole number of macroblocks: no cropping).
    const AVC_HIGH_720P: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];

    /// x264 Baseline 176x144: profile < 100, no chroma fields, no cropping.
    const AVC_BASELINE_QCIF: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0b, 0xd9, 0x02, 0xc4, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40,
        0x00, 0x00, 0x0f, 0x03, 0xc5, 0x0a, 0x92,
    ];

    /// x264 High 4:4:4 (profile 244) 642x362 with `cqm=jvt`: chroma_format_idc 3, scaling
    /// lists in the SPS, and 1-sample crop units (656x368 coded, cropped).
    const AVC_444_SCALING_642X362: &[u8] = &[
        0x67, 0xf4, 0x00, 0x1e, 0x91, 0x9b, 0x28, 0x14, 0x85, 0xfc, 0x7c, 0xf8, 0x08, 0x80, 0x00,
        0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8b, 0x16, 0xcb,
    ];

    /// x265 Main 1920x1080 (a multiple of the minimum CU: no conformance window).
    const HEVC_MAIN_1080P: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x78, 0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5, 0x96, 0x56, 0x69, 0x24, 0xca, 0xf0,
        0x16, 0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0f, 0x04,
    ];

    /// x265 Main 4:2:2 10 642x362: a conformance window in 4:2:2 units (2 across, 1 down).
    const HEVC_422_642X362: &[u8] = &[
        0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9d, 0x08, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x3f, 0xb0, 0x05, 0x12, 0x01, 0x71, 0xc9, 0x3b, 0x65, 0x95, 0x9a, 0x49, 0x32, 0xbc,
        0x05, 0xa0, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x03, 0x03, 0xc1,
    ];

    #[test]
    fn avc_sizes() {
        assert_eq!(dims(avc_picture_size(AVC_HIGH_720P)), (1280, 720));
        assert_eq!(dims(avc_picture_size(AVC_BASELINE_QCIF)), (176, 144));
        assert_eq!(dims(avc_picture_size(AVC_444_SCALING_642X362)), (642, 362));
    }

    /// Bit writer for synthetic SPSs: the paths real encoders rarely emit (scaling lists in
    /// the SPS, pic_order_cnt_type 1, field coding).
    #[derive(Default)]
    struct Bits(Vec<bool>);

    impl Bits {
        fn u(&mut self, n: u32, v: u32) -> &mut Self {
            self.0.extend((0..n).rev().map(|i| (v >> i) & 1 == 1));
            self
        }
        fn ue(&mut self, v: u32) -> &mut Self {
            let code = v + 1;
            let len = 32 - code.leading_zeros();
            self.u(len - 1, 0).u(len, code)
        }
        fn se(&mut self, v: i32) -> &mut Self {
            self.ue(if v > 0 {
                2 * v as u32 - 1
            } else {
                (-2 * v) as u32
            })
        }
        /// NAL header 0x67, rbsp_stop_one_bit, padding; no emulation prevention needed as
        /// long as no two zero bytes occur (checked).
        fn nal(&mut self) -> Vec<u8> {
            self.u(1, 1);
            while !self.0.len().is_multiple_of(8) {
                self.0.push(false);
            }
            let mut out = vec![0x67];
            out.extend(
                self.0
                    .chunks(8)
                    .map(|c| c.iter().fold(0u8, |a, &b| a << 1 | b as u8)),
            );
            assert!(!out.windows(2).any(|w| w == [0, 0]));
            out
        }
    }

    /// High profile, scaling lists in the SPS (one 4x4 and one 8x8 list sent with deltas,
    /// one 4x4 list "use default" via a zero next scale), 640x360 with cropping.
    #[test]
    fn avc_scaling_lists_are_skipped() {
        let mut b = Bits::default();
        b.u(8, 100).u(8, 0).u(8, 31).ue(0); // profile, constraints, level, sps id
        b.ue(1).ue(0).ue(0).u(1, 0); // 4:2:0, 8 bit, no bypass
        b.u(1, 1); // seq_scaling_matrix_present_flag
        for i in 0..8 {
            match i {
                0 => {
                    b.u(1, 1);
                    for j in 0..16 {
                        b.se(if j % 2 == 0 { 3 } else { -2 });
                    }
                }
                1 => {
                    b.u(1, 1).se(-8); // next scale 0: the default list, one value read
                }
                6 => {
                    b.u(1, 1);
                    for j in 0..64 {
                        b.se(if j < 32 { 1 } else { -1 });
                    }
                }
                _ => {
                    b.u(1, 0);
                }
            }
        }
        b.ue(0).ue(0).ue(0); // log2_max_frame_num, poc type 0, log2_max_poc_lsb
        b.ue(1).u(1, 0); // max_num_ref_frames, gaps
        b.ue(39).ue(22).u(1, 1).u(1, 1); // 40x23 MBs, frame_mbs_only, direct_8x8
        b.u(1, 1).ue(0).ue(0).ue(0).ue(4).u(1, 0); // crop bottom 4 units of 2 lines; no VUI
        let sps = b.nal();
        assert_eq!(dims(avc_picture_size(&sps)), (640, 360));
    }

    /// Main profile, pic_order_cnt_type 1 with a cycle, field coding (frame_mbs_only 0:
    /// map units are field MB pairs, crop units of 4 lines).
    #[test]
    fn avc_poc_type_1_and_fields() {
        let mut b = Bits::default();
        b.u(8, 77).u(8, 0).u(8, 30).ue(0);
        b.ue(0).ue(1).u(1, 0).se(-1).se(2).ue(3).se(1).se(-1).se(5); // poc type 1
        b.ue(2).u(1, 0);
        b.ue(44).ue(17).u(1, 0).u(1, 1).u(1, 1); // 45 MBs wide, 18 map units, fields
        b.u(1, 1).ue(0).ue(0).ue(0).ue(2).u(1, 0); // crop 2 units of 4 lines
        let sps = b.nal();
        assert_eq!(dims(avc_picture_size(&sps)), (720, 576 - 8));
    }

    #[test]
    fn hevc_size() {
        assert_eq!(dims(hevc_picture_size(HEVC_MAIN_1080P)), (1920, 1080));
        assert_eq!(dims(hevc_picture_size(HEVC_422_642X362)), (642, 362));
    }

    #[test]
    fn truncated_and_garbage_are_errors_not_panics() {
        for cut in 0..AVC_HIGH_720P.len() {
            let _ = avc_picture_size(&AVC_HIGH_720P[..cut]);
        }
        for cut in 0..HEVC_MAIN_1080P.len() {
            let _ = hevc_picture_size(&HEVC_MAIN_1080P[..cut]);
        }
        assert!(avc_picture_size(&AVC_HIGH_720P[..6]).is_err());
        assert!(hevc_picture_size(&HEVC_MAIN_1080P[..20]).is_err());
        assert!(
            avc_picture_size(&[0x68, 0xff]).is_err(),
            "a PPS is not an SPS"
        );
        // All-ones and all-zeros bodies, every length: never a panic.
        for len in 0..64 {
            let mut ones = vec![0xffu8; len];
            let mut zeros = vec![0u8; len];
            for v in [&mut ones, &mut zeros] {
                if let Some(h) = v.first_mut() {
                    *h = 0x67;
                }
                let _ = avc_picture_size(v);
                if let Some(h) = v.first_mut() {
                    *h = 0x42;
                }
                let _ = hevc_picture_size(v);
            }
        }
    }
}
