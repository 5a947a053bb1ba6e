//! GSM 06.10 full-rate (RPE-LTP) decoding, bit-exact with the ETSI reference and
//! therefore with libgsm, which sox and Asterisk use.
//!
//! It follows the decoder of ETSI GSM 06.10 (§4.3, built from the §4.2 blocks) step
//! by step in 16-bit fixed point with the standard's saturating primitives: RPE decoding
//! (APCM inverse quantisation and grid positioning), long-term synthesis, decoding and
//! interpolation of the log-area ratios, the short-term lattice synthesis filter, then
//! de-emphasis, upscaling and truncation to 13 bits. Any deviation (a missing
//! saturation, a rounding shortcut) changes samples, so nothing here is "simplified".
//!
//! Frames come in two bit layouts, both unpacked here into the same [`Frame`]:
//! * the standard 33-byte frame (`.gsm`): a 0xD signature nibble, then the 260
//!   parameter bits, MSB first;
//! * Microsoft's GSM 6.10 (`.WAV`, wav49): 65-byte blocks holding two frames as one
//!   520-bit little-endian stream (LSB first, no signature); the second frame starts
//!   at bit 260, i.e. in the high nibble of byte 32.

mod encode;
pub use encode::FrameEncoder;

/// Bytes in a standard GSM 06.10 frame.
pub const FRAME_LEN: usize = 33;
/// Bytes in an MS-GSM (wav49) block: two frames, 520 bits.
pub const WAV49_BLOCK_LEN: usize = 65;
/// Samples decoded from one frame (20 ms at 8 kHz).
pub const FRAME_SAMPLES: usize = 160;
/// The signature in the high nibble of the first byte of every standard frame.
const MAGIC: u8 = 0xD;

/// Widths of the frame parameters in transmission order (GSM 06.10 table 1.1):
/// LARc[0..8], then per sub-frame Nc, bc, Mc, xmaxc and 13 × xMc.
const LAR_BITS: [u32; 8] = [6, 6, 5, 5, 4, 4, 3, 3];

/// The 76 parameters of one 20 ms frame, as transmitted.
///
/// Fields are public so frames can be built or inspected; [`FrameDecoder::decode`] masks
/// each value to its transmitted width, so out-of-range values cannot panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Frame {
    /// Coded log-area ratios (6, 6, 5, 5, 4, 4, 3, 3 bits).
    pub larc: [u8; 8],
    /// LTP lag per sub-frame (7 bits; 40..=120 are valid lags).
    pub nc: [u8; 4],
    /// LTP gain index per sub-frame (2 bits).
    pub bc: [u8; 4],
    /// RPE grid position per sub-frame (2 bits).
    pub mc: [u8; 4],
    /// Coded block maximum per sub-frame (6 bits).
    pub xmaxc: [u8; 4],
    /// Coded RPE pulses per sub-frame (13 × 3 bits).
    pub xmc: [[u8; 13]; 4],
}

impl Frame {
    /// Read the parameters in transmission order from `take(width)`.
    fn read(mut take: impl FnMut(u32) -> u8) -> Frame {
        let mut f = Frame::default();
        for (lar, &bits) in f.larc.iter_mut().zip(&LAR_BITS) {
            *lar = take(bits);
        }
        for j in 0..4 {
            f.nc[j] = take(7);
            f.bc[j] = take(2);
            f.mc[j] = take(2);
            f.xmaxc[j] = take(6);
            for x in f.xmc[j].iter_mut() {
                *x = take(3);
            }
        }
        f
    }

    /// Unpack a standard 33-byte frame (MSB first). `None` when the first nibble is
    /// not the 0xD signature, which libgsm (and so sox and Asterisk) refuses too.
    pub fn from_standard(bytes: &[u8; FRAME_LEN]) -> Option<Frame> {
        if bytes[0] >> 4 != MAGIC {
            return None;
        }
        let mut bits = MsbBits::new(bytes);
        bits.take(4);
        Some(Frame::read(|n| bits.take(n)))
    }

    /// Unpack an MS-GSM 65-byte block (LSB first) into its two frames.
    pub fn from_wav49(block: &[u8; WAV49_BLOCK_LEN]) -> [Frame; 2] {
        let mut bits = LsbBits::new(block);
        let first = Frame::read(|n| bits.take(n));
        let second = Frame::read(|n| bits.take(n));
        [first, second]
    }
}

/// MSB-first bit reader over a byte slice; reads past the end yield zero bits (the
/// callers' slices are sized for exactly the bits they take).
struct MsbBits<'a> {
    bytes: &'a [u8],
    next: usize,
    acc: u32,
    len: u32,
}

impl<'a> MsbBits<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        MsbBits {
            bytes,
            next: 0,
            acc: 0,
            len: 0,
        }
    }

    fn take(&mut self, n: u32) -> u8 {
        while self.len < n {
            let b = self.bytes.get(self.next).copied().unwrap_or(0);
            self.next += 1;
            self.acc = (self.acc << 8) | u32::from(b);
            self.len += 8;
        }
        self.len -= n;
        ((self.acc >> self.len) & ((1 << n) - 1)) as u8
    }
}

/// LSB-first bit reader: each parameter's least significant bit comes first, as in
/// libgsm's `GSM_OPT_WAV49` packing.
struct LsbBits<'a> {
    bytes: &'a [u8],
    next: usize,
    acc: u32,
    len: u32,
}

impl<'a> LsbBits<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LsbBits {
            bytes,
            next: 0,
            acc: 0,
            len: 0,
        }
    }

    fn take(&mut self, n: u32) -> u8 {
        while self.len < n {
            let b = self.bytes.get(self.next).copied().unwrap_or(0);
            self.next += 1;
            self.acc |= u32::from(b) << self.len;
            self.len += 8;
        }
        let v = (self.acc & ((1 << n) - 1)) as u8;
        self.acc >>= n;
        self.len -= n;
        v
    }
}

// ------------------------------------------------------------------ arithmetic
//
// The standard's basic operations on 16-bit words (GSM 06.10 §4.1 notation).

const MIN_WORD: i16 = i16::MIN;
const MAX_WORD: i16 = i16::MAX;

/// `add` (GSM_ADD): saturating addition.
#[inline(always)]
fn add(a: i16, b: i16) -> i16 {
    a.saturating_add(b)
}

/// `sub` (GSM_SUB): saturating subtraction.
#[inline(always)]
fn sub(a: i16, b: i16) -> i16 {
    a.saturating_sub(b)
}

/// `mult_r` (GSM_MULT_R): rounded Q15 product; −1 × −1 saturates to 32767.
#[inline(always)]
fn mult_r(a: i16, b: i16) -> i16 {
    if a == MIN_WORD && b == MIN_WORD {
        MAX_WORD
    } else {
        ((i32::from(a) * i32::from(b) + 16384) >> 15) as i16
    }
}

/// `mult_r` for a reflection coefficient `rp` ∈ [−32767, 32767], where the −1 × −1
/// case cannot occur.
#[inline(always)]
fn mult_r_rp(rp: i16, b: i16) -> i16 {
    ((i32::from(rp) * i32::from(b) + 16384) >> 15) as i16
}

// ------------------------------------------------------------------ tables

/// Quantisation levels of the LTP gain (table 4.3b).
const QLB: [i16; 4] = [3277, 11469, 21299, 32767];
/// Normalised direct mantissa used by the APCM inverse quantisation (table 4.6).
const FAC: [i16; 8] = [18431, 20479, 22527, 24575, 26623, 28671, 30719, 32767];
/// LAR decoding per coefficient: offset B (doubled in use) and MIC, the smallest
/// LARc, from table 4.1; INVA, the scaled 1/A, from table 4.2.
const LAR_B: [i16; 8] = [0, 0, 2048, -2560, 94, -1792, -341, -1144];
const LAR_MIC: [i16; 8] = [-32, -32, -16, -16, -8, -8, -4, -4];
const LAR_INVA: [i16; 8] = [13107, 13107, 13107, 13107, 19223, 17476, 31454, 29708];

/// Masks per transmitted width, applied before decoding so a hand-built [`Frame`]
/// with out-of-range values cannot index out of bounds.
const LAR_MASK: [u8; 8] = [63, 63, 31, 31, 15, 15, 7, 7];

/// The decoder's memory between frames.
#[derive(Clone)]
pub struct FrameDecoder {
    /// Reconstructed short-term residual drp[-120..40] (history first).
    dp: [i16; 160],
    /// Last valid LTP lag, used when a frame carries an invalid one.
    nrp: i16,
    /// Decoded LARs of the previous frame, for interpolation.
    larpp_prev: [i16; 8],
    /// Short-term synthesis filter state (v[8] is written but never read).
    v: [i16; 9],
    /// De-emphasis filter memory.
    msr: i16,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder in the reset state the standard (and `gsm_create()`) starts from.
    pub fn new() -> FrameDecoder {
        FrameDecoder {
            dp: [0; 160],
            nrp: 40,
            larpp_prev: [0; 8],
            v: [0; 9],
            msr: 0,
        }
    }

    /// Decode one frame into 160 samples. Frames must be fed in order: the decoder
    /// carries filter state from one to the next.
    pub fn decode(&mut self, frame: &Frame, out: &mut [i16; FRAME_SAMPLES]) {
        let mut wt = [0i16; 160];
        for j in 0..4 {
            let erp = rpe_decoding(frame.xmaxc[j] & 63, frame.mc[j] & 3, &frame.xmc[j]);
            self.long_term_synthesis(frame.nc[j] & 127, frame.bc[j] & 3, &erp);
            wt[j * 40..j * 40 + 40].copy_from_slice(&self.dp[120..160]);
        }
        self.short_term_synthesis(&frame.larc, &wt, out);
        self.postprocess(out);
    }

    /// Long-term synthesis: reconstruct drp[0..40] from the RPE excitation and the
    /// lagged, gain-scaled history, then shift the history by one sub-frame.
    fn long_term_synthesis(&mut self, ncr: u8, bcr: u8, erp: &[i16; 40]) {
        let ncr = i16::from(ncr);
        // An out-of-range lag (possible after transmission errors) keeps the previous.
        let nr = if (40..=120).contains(&ncr) {
            ncr
        } else {
            self.nrp
        };
        self.nrp = nr;
        let brp = QLB[usize::from(bcr)];
        let nr = nr as usize;
        for (k, &e) in erp.iter().enumerate() {
            // drp[k - Nr] lives at 120 + k - Nr, always in the history (Nr ≥ 40).
            let drpp = mult_r(brp, self.dp[120 + k - nr]);
            self.dp[120 + k] = add(e, drpp);
        }
        self.dp.copy_within(40..160, 0);
    }

    /// Short-term synthesis: decode the LARs, interpolate them over four segments of
    /// the frame, convert them to reflection coefficients and run the lattice filter.
    fn short_term_synthesis(&mut self, larc: &[u8; 8], wt: &[i16; 160], s: &mut [i16; 160]) {
        let larpp = decode_lars(larc);
        let prev = self.larpp_prev;
        let mut larp = [0i16; 8];

        for i in 0..8 {
            larp[i] = add(add(prev[i] >> 2, larpp[i] >> 2), prev[i] >> 1);
        }
        self.filter(&lar_to_rp(larp), &wt[0..13], &mut s[0..13]);

        for i in 0..8 {
            larp[i] = add(prev[i] >> 1, larpp[i] >> 1);
        }
        self.filter(&lar_to_rp(larp), &wt[13..27], &mut s[13..27]);

        for i in 0..8 {
            larp[i] = add(add(prev[i] >> 2, larpp[i] >> 2), larpp[i] >> 1);
        }
        self.filter(&lar_to_rp(larp), &wt[27..40], &mut s[27..40]);

        self.filter(&lar_to_rp(larpp), &wt[40..160], &mut s[40..160]);
        self.larpp_prev = larpp;
    }

    /// The short-term synthesis lattice filter.
    ///
    /// This loop is nearly all of the decoding time. [`lar_to_rp`] never yields
    /// −32768, so the products need not check for −1 × −1 ([`mult_r_rp`]).
    fn filter(&mut self, rrp: &[i16; 8], wt: &[i16], sr: &mut [i16]) {
        let mut v = self.v;
        for (out, &w) in sr.iter_mut().zip(wt) {
            let mut sri = w;
            for i in (0..8).rev() {
                sri = sub(sri, mult_r_rp(rrp[i], v[i]));
                v[i + 1] = add(v[i], mult_r_rp(rrp[i], sri));
            }
            v[0] = sri;
            *out = sri;
        }
        self.v = v;
    }

    /// Post-processing: de-emphasis, upscaling and truncation to 13 significant bits.
    fn postprocess(&mut self, s: &mut [i16; 160]) {
        let mut msr = self.msr;
        for x in s.iter_mut() {
            msr = add(*x, mult_r(msr, 28180));
            *x = add(msr, msr) & !7;
        }
        self.msr = msr;
    }
}

/// RPE decoding of one sub-frame: xmaxc → exponent and mantissa, APCM inverse
/// quantisation of the 13 pulses, and their placement on the grid Mc.
fn rpe_decoding(xmaxc: u8, mc: u8, xmc: &[u8; 13]) -> [i16; 40] {
    let xmaxc = i16::from(xmaxc);
    let mut exp: i16 = if xmaxc > 15 { (xmaxc >> 3) - 1 } else { 0 };
    let mut mant = xmaxc - (exp << 3);
    if mant == 0 {
        exp = -4;
        mant = 7;
    } else {
        while mant <= 7 {
            mant = (mant << 1) | 1;
            exp -= 1;
        }
        mant -= 8;
    }
    // exp ∈ [−4, 6] and mant ∈ [0, 7] for every 6-bit xmaxc.
    let temp1 = FAC[mant as usize];
    let temp2 = 6 - exp; // ∈ [0, 10]
    let temp3: i16 = if temp2 >= 1 { 1 << (temp2 - 1) } else { 0 };

    let mut ep = [0i16; 40];
    let mc = usize::from(mc);
    for (i, &x) in xmc.iter().enumerate() {
        // Restore the sign of the 3-bit pulse, scale to 16 bits (−28672 … 28672).
        let temp = ((i16::from(x & 7) << 1) - 7) << 12;
        let temp = add(mult_r(temp1, temp), temp3);
        ep[mc + 3 * i] = temp >> temp2;
    }
    ep
}

/// Decoding of the coded log-area ratios: LARc → LARpp.
fn decode_lars(larc: &[u8; 8]) -> [i16; 8] {
    let mut out = [0i16; 8];
    for i in 0..8 {
        let c = i16::from(larc[i] & LAR_MASK[i]);
        // Adding MIC restores the sign; the shift cannot overflow for valid widths.
        let temp1 = add(c, LAR_MIC[i]) << 10;
        let temp1 = sub(temp1, LAR_B[i] << 1);
        let temp1 = mult_r(LAR_INVA[i], temp1);
        out[i] = add(temp1, temp1);
    }
    out
}

/// Interpolated LARp → reflection coefficients rp.
fn lar_to_rp(mut larp: [i16; 8]) -> [i16; 8] {
    for x in larp.iter_mut() {
        let negative = *x < 0;
        let temp = if *x == MIN_WORD { MAX_WORD } else { x.abs() };
        let r = if temp < 11059 {
            temp << 1
        } else if temp < 20070 {
            temp + 11059
        } else {
            add(temp >> 2, 26112)
        };
        *x = if negative { -r } else { r };
    }
    larp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers for the two layouts, the inverse of the readers: used to check the
    /// unpacking field by field.
    fn write(f: &Frame, mut put: impl FnMut(u32, u8)) {
        for (i, &bits) in LAR_BITS.iter().enumerate() {
            put(bits, f.larc[i]);
        }
        for j in 0..4 {
            put(7, f.nc[j]);
            put(2, f.bc[j]);
            put(2, f.mc[j]);
            put(6, f.xmaxc[j]);
            for &x in &f.xmc[j] {
                put(3, x);
            }
        }
    }

    fn pack_standard(f: &Frame) -> [u8; FRAME_LEN] {
        let mut bits: Vec<bool> = vec![true, true, false, true];
        write(f, |n, v| {
            for k in (0..n).rev() {
                bits.push(v >> k & 1 == 1);
            }
        });
        assert_eq!(bits.len(), 264);
        let mut out = [0u8; FRAME_LEN];
        for (i, b) in bits.iter().enumerate() {
            out[i / 8] |= u8::from(*b) << (7 - i % 8);
        }
        out
    }

    fn pack_wav49(a: &Frame, b: &Frame) -> [u8; WAV49_BLOCK_LEN] {
        let mut bits: Vec<bool> = Vec::new();
        for f in [a, b] {
            write(f, |n, v| {
                for k in 0..n {
                    bits.push(v >> k & 1 == 1);
                }
            });
        }
        assert_eq!(bits.len(), 520);
        let mut out = [0u8; WAV49_BLOCK_LEN];
        for (i, b) in bits.iter().enumerate() {
            out[i / 8] |= u8::from(*b) << (i % 8);
        }
        out
    }

    /// A frame whose every field holds a distinct in-range value (also for
    /// the encoder's packing tests).
    pub(super) fn sample_frame(seed: u32) -> Frame {
        let mut x = seed;
        let mut next = |bits: u32| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((x >> 16) & ((1 << bits) - 1)) as u8
        };
        let mut f = Frame::default();
        for (i, &b) in LAR_BITS.iter().enumerate() {
            f.larc[i] = next(b);
        }
        for j in 0..4 {
            f.nc[j] = next(7);
            f.bc[j] = next(2);
            f.mc[j] = next(2);
            f.xmaxc[j] = next(6);
            for k in 0..13 {
                f.xmc[j][k] = next(3);
            }
        }
        f
    }

    #[test]
    fn standard_unpacking_round_trips() {
        for seed in 0..200 {
            let f = sample_frame(seed);
            let bytes = pack_standard(&f);
            assert_eq!(bytes[0] >> 4, 0xD);
            assert_eq!(Frame::from_standard(&bytes), Some(f));
        }
    }

    #[test]
    fn standard_unpacking_known_layout() {
        // 0xD5: signature 1101, then LARc[0]'s top bits 0101; 0b11_000111: LARc[0]'s
        // low bits 11, then LARc[1] = 000111; 0b10101_000: LARc[2] = 10101.
        let mut bytes = [0u8; FRAME_LEN];
        bytes[0] = 0xD5;
        bytes[1] = 0b1100_0111;
        bytes[2] = 0b1010_1000;
        let f = Frame::from_standard(&bytes).expect("signature");
        assert_eq!(f.larc[0], 0b010111);
        assert_eq!(f.larc[1], 0b000111);
        assert_eq!(f.larc[2], 0b10101);
        assert_eq!(f.larc[3], 0b000 << 2);
        // The last parameter, xMc[3][12], is the low three bits of byte 32.
        bytes[32] = 0b0000_0101;
        let f = Frame::from_standard(&bytes).expect("signature");
        assert_eq!(f.xmc[3][12], 5);
    }

    #[test]
    fn missing_signature_is_refused() {
        let mut bytes = pack_standard(&sample_frame(1));
        for nibble in 0..16u8 {
            bytes[0] = (nibble << 4) | (bytes[0] & 0x0f);
            assert_eq!(Frame::from_standard(&bytes).is_some(), nibble == 0xD);
        }
    }

    #[test]
    fn wav49_unpacking_round_trips_and_second_frame_starts_at_bit_260() {
        for seed in 0..200 {
            let (a, b) = (sample_frame(seed), sample_frame(seed + 1000));
            let block = pack_wav49(&a, &b);
            assert_eq!(Frame::from_wav49(&block), [a, b]);
        }
        // LARc[0] of the second frame is the high nibble of byte 32 plus the low two
        // bits of byte 33.
        let mut block = [0u8; WAV49_BLOCK_LEN];
        block[32] = 0xA0;
        block[33] = 0x03;
        let [first, second] = Frame::from_wav49(&block);
        assert_eq!(first, Frame::default());
        assert_eq!(second.larc[0], 0x3A);
        // The first parameter of the first frame is the low six bits of byte 0.
        block[0] = 0xFF;
        assert_eq!(Frame::from_wav49(&block)[0].larc, [63, 3, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn arithmetic_saturates_like_the_standard() {
        assert_eq!(add(32767, 1), 32767);
        assert_eq!(add(-32768, -1), -32768);
        assert_eq!(sub(-32768, 1), -32768);
        assert_eq!(sub(32767, -1), 32767);
        assert_eq!(mult_r(-32768, -32768), 32767);
        assert_eq!(mult_r(16384, 16384), 8192);
        assert_eq!(mult_r(-1, 16384), 0);
        assert_eq!(mult_r(-3, 16384), -1);
    }

    #[test]
    fn xmaxc_exponent_and_mantissa_cover_all_codes() {
        // Every code decodes without overflow and a larger xmaxc never shrinks a
        // positive pulse.
        let pulses = [7u8; 13];
        let mut last = 0;
        for x in 0..64u8 {
            let ep = rpe_decoding(x, 0, &pulses);
            assert!(ep[0] >= last, "xmaxc {x}");
            last = ep[0];
        }
    }

    #[test]
    fn out_of_range_fields_are_masked_not_panics() {
        let mut d = FrameDecoder::new();
        let f = Frame {
            larc: [255; 8],
            nc: [255; 4],
            bc: [255; 4],
            mc: [255; 4],
            xmaxc: [255; 4],
            xmc: [[255; 13]; 4],
        };
        let mut out = [0i16; FRAME_SAMPLES];
        d.decode(&f, &mut out);
        let mut e = FrameDecoder::new();
        let masked = Frame {
            larc: LAR_MASK,
            nc: [127; 4],
            bc: [3; 4],
            mc: [3; 4],
            xmaxc: [63; 4],
            xmc: [[7; 13]; 4],
        };
        let mut want = [0i16; FRAME_SAMPLES];
        e.decode(&masked, &mut want);
        assert_eq!(out, want);
    }

    #[test]
    fn output_is_truncated_to_13_bits() {
        // The output keeps 13 significant bits: always a multiple of 8.
        let mut d = FrameDecoder::new();
        let mut out = [0i16; FRAME_SAMPLES];
        for _ in 0..10 {
            d.decode(&Frame::default(), &mut out);
            assert!(out.iter().all(|s| s % 8 == 0));
        }
    }
}
