//! G.711 µ-law and A-law expansion to 16-bit linear PCM (ITU-T G.711), as sox and
//! Asterisk decode it: the µ-law code is complemented and biased by 0x84, the A-law
//! code has its even bits inverted (0x55) and is rounded to the middle of its step.
//! Both tables are built at compile time from those formulas.
//!
//! Compression is sox's: Sun's reference `g711.c` applied to the sample rounded to 14
//! bits (µ-law) or 13 bits (A-law), the top value clipped, so a file vmtool writes has
//! the bytes `sox -e u-law` / `-e a-law` gives for the same samples.

/// µ-law code → sample. 0xFF and 0x7F are the two zeros; 0x80 is +32124, 0x00 −32124.
pub const ULAW: [i16; 256] = table(false);
/// A-law code → sample. 0xD5 is +8 and 0x55 is −8; 0xAA is +32256.
pub const ALAW: [i16; 256] = table(true);

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_to_linear(i as u8)
        } else {
            ulaw_to_linear(i as u8)
        };
        i += 1;
    }
    t
}

const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let t = ((((u & 0x0F) as i16) << 3) + 0x84) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        0x84 - t
    } else {
        t - 0x84
    }
}

const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let t = ((a & 0x0F) as i16) << 4;
    let t = match (a & 0x70) >> 4 {
        0 => t + 8,
        seg => (t + 0x108) << (seg - 1),
    };
    if a & 0x80 != 0 {
        t
    } else {
        -t
    }
}

/// Sample → µ-law code, as sox's `sox_14linear2ulaw()` of the sample rounded to 14 bits.
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let v = ((i32::from(sample) + 2) >> 2).min(8191);
    ULAW_ENC[(v + 8192) as usize]
}

/// Sample → A-law code, as sox's `sox_13linear2alaw()` of the sample rounded to 13 bits.
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    let v = ((i32::from(sample) + 4) >> 3).min(4095);
    ALAW_ENC[(v + 4096) as usize]
}

/// µ-law code of every 14-bit value −8192 … 8191 (index + 8192).
static ULAW_ENC: [u8; 16384] = {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < t.len() {
        t[i] = ulaw_14(i as i16 - 8192);
        i += 1;
    }
    t
};

/// A-law code of every 13-bit value −4096 … 4095 (index + 4096).
static ALAW_ENC: [u8; 8192] = {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < t.len() {
        t[i] = alaw_13(i as i16 - 4096);
        i += 1;
    }
    t
};

/// Index of the first segment end `v` does not exceed (8 when above them all).
const fn segment(v: i16, ends: &[i16; 8]) -> usize {
    let mut seg = 0;
    while seg < 8 && v > ends[seg] {
        seg += 1;
    }
    seg
}

/// Sun's `linear2ulaw()` of a 14-bit value.
const fn ulaw_14(v: i16) -> u8 {
    const SEG_END: [i16; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let (v, mask) = if v < 0 { (-v, 0x7F) } else { (v, 0xFF) };
    // Clip at 8159 and add the bias (0x84 >> 2).
    let v = if v > 8159 { 8159 } else { v } + 0x21;
    let seg = segment(v, &SEG_END);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    (((seg as u8) << 4) | ((v >> (seg + 1)) & 0xF) as u8) ^ mask
}

/// Sun's `linear2alaw()` of a 13-bit value.
const fn alaw_13(v: i16) -> u8 {
    const SEG_END: [i16; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let (v, mask) = if v >= 0 { (v, 0xD5) } else { (-v - 1, 0x55) };
    let seg = segment(v, &SEG_END);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mant = if seg < 2 { v >> 1 } else { v >> seg };
    (((seg as u8) << 4) | (mant & 0xF) as u8) ^ mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        assert_eq!(
            (ULAW[0xFF], ULAW[0x7F], ULAW[0x00], ULAW[0x80]),
            (0, 0, -32124, 32124)
        );
        assert_eq!((ULAW[0xFE], ULAW[0x7E]), (8, -8));
        assert_eq!(
            (ALAW[0xD5], ALAW[0x55], ALAW[0xAA], ALAW[0x2A]),
            (8, -8, 32256, -32256)
        );
    }

    #[test]
    fn compression_is_the_expansion_inverse_on_its_levels() {
        // Every decoded level encodes back to its code (µ-law's two zeros both to 0xFF).
        for c in 0..=255u8 {
            let want = if c == 0x7F { 0xFF } else { c };
            assert_eq!(linear_to_ulaw(ULAW[usize::from(c)]), want, "µ-law {c:#x}");
            assert_eq!(linear_to_alaw(ALAW[usize::from(c)]), c, "A-law {c:#x}");
        }
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
    }

    #[test]
    fn tables_are_odd_symmetric_and_monotonic_per_sign() {
        for c in 0..128usize {
            assert_eq!(ULAW[c], -ULAW[c | 0x80], "µ-law {c:#x}");
            assert_eq!(ALAW[c], -ALAW[c | 0x80], "A-law {c:#x}");
        }
        // µ-law: codes 0x80..0xFF run from the largest positive value down to 0.
        for c in 0x80..0xFFusize {
            assert!(ULAW[c] > ULAW[c + 1]);
        }
    }
}
