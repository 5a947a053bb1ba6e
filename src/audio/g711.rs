//! G.711 µ-law and A-law expansion to 16-bit linear PCM (ITU-T G.711), as sox and
//! Asterisk decode it: the µ-law code is complemented and biased by 0x84, the A-law
//! code has its even bits inverted (0x55) and is rounded to the middle of its step.
//! Both tables are built at compile time from those formulas.

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
