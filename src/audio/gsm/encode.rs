//! GSM 06.10 full-rate encoding, bit-exact with libgsm's encoder: the one `toast`,
//! sox (`-t gsm`, `-e gsm-full-rate`) and Asterisk's `codec_gsm` run.
//!
//! The coder of ETSI GSM 06.10 §4.2 in libgsm's integer form (neither its `FAST`
//! floating-point paths nor `LTP_CUT`): preprocessing (downscaling, offset compensation,
//! pre-emphasis), LPC analysis (autocorrelation, Schur recursion, log-area ratios and
//! their quantisation), the short-term analysis lattice, then per 40-sample sub-frame
//! the long-term predictor and the RPE coder, whose local decoder feeds the next
//! sub-frame's prediction.
//!
//! libgsm's `longword` is C `long`, 64 bits wide on the systems sox and Asterisk run on:
//! sums that the standard writes as saturating 32-bit operations but libgsm writes as
//! plain `+` never wrap there, so they are `i64` here; assignments to libgsm's 16-bit
//! `word` truncate, so they are `as i16` here. Saturation is only where libgsm
//! saturates. Any other choice changes bits.

use super::{
    add, decode_lars, lar_to_rp, mult_r_rp, sub, Frame, FAC, FRAME_LEN, FRAME_SAMPLES, LAR_BITS,
    MAGIC, MAX_WORD, MIN_WORD, QLB, WAV49_BLOCK_LEN,
};

const MAX_LONGWORD: i64 = i32::MAX as i64;
const MIN_LONGWORD: i64 = i32::MIN as i64;

/// Decision levels of the LTP gain (table 4.3a).
const DLB: [i16; 4] = [6554, 16384, 26214, 32767];
/// Inverse mantissas for the APCM quantisation (table 4.5).
const NRFAC: [i16; 8] = [29128, 26215, 23832, 21846, 20165, 18725, 17476, 16384];
/// Weighting filter impulse response (table 4.4).
const H: [i64; 11] = [-134, -374, 0, 2054, 5741, 8192, 5741, 2054, 0, -374, -134];
/// LAR quantisation per coefficient (table 4.1): A, B, MAC, MIC.
const LAR_Q: [(i16, i16, i16, i16); 8] = [
    (20480, 0, 31, -32),
    (20480, 0, 31, -32),
    (20480, 2048, 15, -16),
    (20480, -2560, 15, -16),
    (13964, 94, 7, -8),
    (15360, -1792, 7, -8),
    (8534, -341, 3, -4),
    (9036, -1144, 3, -4),
];

// ------------------------------------------------------------------ arithmetic

/// `GSM_MULT_R` as libgsm's macro writes it: no −1 × −1 check, the `long` result
/// stored into a `word`.
#[inline(always)]
fn mult_r_nc(a: i16, b: i16) -> i16 {
    ((i64::from(a) * i64::from(b) + 16384) >> 15) as i16
}

/// `GSM_MULT`: truncating Q15 product, no −1 × −1 check.
#[inline(always)]
fn mult_nc(a: i16, b: i16) -> i16 {
    ((i64::from(a) * i64::from(b)) >> 15) as i16
}

/// `gsm_mult`: truncating Q15 product; −1 × −1 saturates.
#[inline(always)]
fn mult(a: i16, b: i16) -> i16 {
    if a == MIN_WORD && b == MIN_WORD {
        MAX_WORD
    } else {
        mult_nc(a, b)
    }
}

/// `GSM_ABS`.
#[inline(always)]
fn abs(a: i16) -> i16 {
    if a == MIN_WORD {
        MAX_WORD
    } else {
        a.abs()
    }
}

/// `GSM_L_ADD`: addition saturating to the 32-bit range, on 64-bit `long`s.
#[inline(always)]
fn l_add(a: i64, b: i64) -> i64 {
    if a < 0 {
        if b >= 0 {
            a + b
        } else {
            let u = (-(a + 1)) as u64 + (-(b + 1)) as u64;
            if u >= MAX_LONGWORD as u64 {
                MIN_LONGWORD
            } else {
                -(u as i64) - 2
            }
        }
    } else if b <= 0 {
        a + b
    } else {
        let u = a as u64 + b as u64;
        if u >= MAX_LONGWORD as u64 {
            MAX_LONGWORD
        } else {
            u as i64
        }
    }
}

/// `gsm_norm`: left shifts that normalise a 32-bit value (libgsm's byte-table form,
/// which looks at the low 32 bits only).
fn norm(a: i64) -> i16 {
    let mut a = a;
    if a < 0 {
        if a <= -1_073_741_824 {
            return 0;
        }
        a = !a;
    }
    let bitoff = |x: i64| (x as u8).leading_zeros() as i16;
    if a & 0xffff_0000 != 0 {
        if a & 0xff00_0000 != 0 {
            -1 + bitoff(a >> 24)
        } else {
            7 + bitoff(a >> 16)
        }
    } else if a & 0xff00 != 0 {
        15 + bitoff(a >> 8)
    } else {
        23 + bitoff(a)
    }
}

/// `gsm_div`: `num / denum` in Q15 for 0 <= num <= denum.
fn div(num: i16, denum: i16) -> i16 {
    if num == 0 {
        return 0;
    }
    let (mut l_num, l_denum) = (i64::from(num), i64::from(denum));
    let mut q: i16 = 0;
    for _ in 0..15 {
        q <<= 1;
        l_num <<= 1;
        if l_num >= l_denum {
            l_num -= l_denum;
            q += 1;
        }
    }
    q
}

// ------------------------------------------------------------------ the coder

/// The encoder's memory between frames (libgsm's `gsm_state`, encoder half).
#[derive(Clone)]
pub struct FrameEncoder {
    /// Offset compensation and pre-emphasis memories.
    z1: i16,
    l_z2: i64,
    mp: i16,
    /// Short-term analysis lattice state.
    u: [i16; 8],
    /// Decoded LARs of the previous frame, for interpolation.
    larpp_prev: [i16; 8],
    /// Reconstructed short-term residual: dp'[-120..0] then the current frame's 160.
    dp: [i16; 280],
}

impl Default for FrameEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameEncoder {
    /// An encoder in the reset state `gsm_create()` starts from.
    pub fn new() -> FrameEncoder {
        FrameEncoder {
            z1: 0,
            l_z2: 0,
            mp: 0,
            u: [0; 8],
            larpp_prev: [0; 8],
            dp: [0; 280],
        }
    }

    /// Encode 160 samples into one frame's parameters. Frames must be fed in order:
    /// the encoder carries filter state from one to the next.
    pub fn encode(&mut self, samples: &[i16; FRAME_SAMPLES]) -> Frame {
        let mut s = [0i16; 160];
        self.preprocess(samples, &mut s);
        let larc = lpc_analysis(&mut s);
        self.short_term_analysis(&larc, &mut s);

        let mut frame = Frame::default();
        for (i, &c) in larc.iter().enumerate() {
            frame.larc[i] = c as u8;
        }
        for j in 0..4 {
            let base = 120 + 40 * j;
            let d: &[i16; 40] = s[40 * j..40 * j + 40].try_into().expect("40 samples");
            let (nc, bc) = ltp_parameters(d, &self.dp, base);
            // Long-term analysis filtering: the estimate dpp goes where dp' of this
            // sub-frame will be (libgsm aliases them), e = d - dpp.
            let bp = QLB[bc as usize];
            let mut e = [0i16; 40];
            for k in 0..40 {
                let dpp = mult_r_nc(bp, self.dp[base + k - nc as usize]);
                self.dp[base + k] = dpp;
                e[k] = sub(d[k], dpp);
            }
            let (xmaxc, mc, xmc, ep) = rpe_encoding(&e);
            for (dp, &x) in self.dp[base..base + 40].iter_mut().zip(&ep) {
                *dp = add(x, *dp);
            }
            frame.nc[j] = nc as u8;
            frame.bc[j] = bc as u8;
            frame.mc[j] = mc as u8;
            frame.xmaxc[j] = xmaxc as u8;
            for (x, &v) in frame.xmc[j].iter_mut().zip(&xmc) {
                // Both packings keep the low three bits (libgsm masks or shifts them out).
                *x = (v & 7) as u8;
            }
        }
        self.dp.copy_within(160..280, 0);
        frame
    }

    /// Downscaling, offset compensation (a high-pass filter with a 31-bit recursive
    /// part) and pre-emphasis (4.2.1 – 4.2.3).
    fn preprocess(&mut self, s: &[i16; 160], so: &mut [i16; 160]) {
        let (mut z1, mut l_z2, mut mp) = (self.z1, self.l_z2, self.mp);
        for (out, &x) in so.iter_mut().zip(s) {
            let so_k = (x >> 3) << 2;
            let s1 = so_k.wrapping_sub(z1);
            z1 = so_k;
            let mut l_s2 = i64::from(s1) << 15;
            // A 31 × 16-bit product split into halves; `msp` and `lsp` are words.
            let msp = (l_z2 >> 15) as i16;
            let lsp = (l_z2 - (i64::from(msp) << 15)) as i16;
            l_s2 += (i64::from(lsp) * 32735 + 16384) >> 15;
            let l_temp = i64::from(msp) * 32735;
            l_z2 = l_add(l_temp, l_s2);
            let l_temp = l_add(l_z2, 16384);
            let msp = mult_r_nc(mp, -28180);
            mp = (l_temp >> 15) as i16;
            *out = add(mp, msp);
        }
        self.z1 = z1;
        self.l_z2 = l_z2;
        self.mp = mp;
    }

    /// Short-term analysis filtering with the interpolated coefficients (4.2.8 –
    /// 4.2.10): s becomes the short-term residual d.
    fn short_term_analysis(&mut self, larc: &[i16; 8], s: &mut [i16; 160]) {
        let mut codes = [0u8; 8];
        for (c, &l) in codes.iter_mut().zip(larc) {
            *c = l as u8;
        }
        let larpp = decode_lars(&codes);
        let prev = self.larpp_prev;
        let mut larp = [0i16; 8];

        for i in 0..8 {
            larp[i] = add(add(prev[i] >> 2, larpp[i] >> 2), prev[i] >> 1);
        }
        self.filter(&lar_to_rp(larp), &mut s[0..13]);
        for i in 0..8 {
            larp[i] = add(prev[i] >> 1, larpp[i] >> 1);
        }
        self.filter(&lar_to_rp(larp), &mut s[13..27]);
        for i in 0..8 {
            larp[i] = add(add(prev[i] >> 2, larpp[i] >> 2), larpp[i] >> 1);
        }
        self.filter(&lar_to_rp(larp), &mut s[27..40]);
        self.filter(&lar_to_rp(larpp), &mut s[40..160]);
        self.larpp_prev = larpp;
    }

    /// The analysis lattice. `rp` never holds −32768 ([`lar_to_rp`]).
    fn filter(&mut self, rp: &[i16; 8], s: &mut [i16]) {
        let mut u = self.u;
        for x in s.iter_mut() {
            let mut di = *x;
            let mut sav = di;
            for i in 0..8 {
                let ui = u[i];
                u[i] = sav;
                sav = add(ui, mult_r_rp(rp[i], di));
                di = add(di, mult_r_rp(rp[i], ui));
            }
            *x = di;
        }
        self.u = u;
    }
}

/// LPC analysis (4.2.4 – 4.2.7): the coded log-area ratios of one frame. `s` is
/// scaled and rescaled in place, as libgsm does (the rounding of the downscale stays).
fn lpc_analysis(s: &mut [i16; 160]) -> [i16; 8] {
    let acf = autocorrelation(s);
    let mut r = reflection_coefficients(&acf);
    // Transformation to log-area ratios.
    for x in r.iter_mut() {
        let temp = abs(*x);
        let temp = if temp < 22118 {
            temp >> 1
        } else if temp < 31130 {
            temp - 11059
        } else {
            (temp - 26112) << 2
        };
        *x = if *x < 0 { -temp } else { temp };
    }
    // Quantisation and coding.
    for (x, &(a, b, mac, mic)) in r.iter_mut().zip(&LAR_Q) {
        let temp = mult_nc(a, *x);
        let temp = add(temp, b);
        let temp = add(temp, 256);
        let temp = temp >> 9;
        *x = if temp > mac {
            mac - mic
        } else if temp < mic {
            0
        } else {
            temp - mic
        };
    }
    r
}

fn autocorrelation(s: &mut [i16; 160]) -> [i64; 9] {
    let smax = s.iter().map(|&x| abs(x)).max().unwrap_or(0);
    let scalauto = if smax == 0 {
        0
    } else {
        4 - norm(i64::from(smax) << 16)
    };
    if scalauto > 0 {
        let f = 16384 >> (scalauto - 1);
        for x in s.iter_mut() {
            *x = mult_r_nc(*x, f);
        }
    }
    let mut acf = [0i64; 9];
    for (k, a) in acf.iter_mut().enumerate() {
        let mut sum = 0i64;
        for i in k..160 {
            sum += i64::from(s[i]) * i64::from(s[i - k]);
        }
        *a = sum << 1;
    }
    if scalauto > 0 {
        for x in s.iter_mut() {
            *x = (i32::from(*x) << scalauto) as i16;
        }
    }
    acf
}

/// Schur recursion with 16-bit arithmetic (4.2.5).
fn reflection_coefficients(l_acf: &[i64; 9]) -> [i16; 8] {
    let mut r = [0i16; 8];
    if l_acf[0] == 0 {
        return r;
    }
    let temp = norm(l_acf[0]);
    let mut acf = [0i16; 9];
    for (a, &l) in acf.iter_mut().zip(l_acf) {
        *a = ((l << temp) >> 16) as i16;
    }
    let mut k = [0i16; 9];
    k[1..8].copy_from_slice(&acf[1..8]);
    let mut p = acf;
    for n in 1..=8usize {
        let temp = abs(p[1]);
        if p[0] < temp {
            // r[n..] stay zero.
            return r;
        }
        let mut rn = div(temp, p[0]);
        if p[1] > 0 {
            rn = -rn;
        }
        r[n - 1] = rn;
        if n == 8 {
            return r;
        }
        p[0] = add(p[0], mult_r_nc(p[1], rn));
        for m in 1..=8 - n {
            p[m] = add(p[m + 1], mult_r_nc(k[m], rn));
            k[m] = add(k[m], mult_r_nc(p[m + 1], rn));
        }
    }
    r
}

/// LTP lag and coded gain for one sub-frame (4.2.11): `d` is the short-term residual,
/// `dp[base - 120..base]` the reconstructed residual before it.
fn ltp_parameters(d: &[i16; 40], dp: &[i16; 280], base: usize) -> (i16, i16) {
    let dmax = d.iter().map(|&x| abs(x)).max().unwrap_or(0);
    // libgsm's quirk kept: an all-zero d gives temp 0 and so scal 6.
    let temp = if dmax == 0 {
        0
    } else {
        norm(i64::from(dmax) << 16)
    };
    let scal = if temp > 6 { 0 } else { 6 - temp };

    let mut wt = [0i16; 40];
    for (w, &x) in wt.iter_mut().zip(d) {
        *w = x >> scal;
    }
    // |wt| <= 2^9 and |dp| <= 2^15: 40 products fit an i32 (libgsm sums in a long).
    // All 81 lags first, as 16 x 16 -> 32-bit multiply-adds the compiler vectorises.
    let mut corr = [0i32; 81];
    for (c, lambda) in corr.iter_mut().zip(40..=120usize) {
        let past = &dp[base - lambda..base - lambda + 40];
        *c = wt
            .iter()
            .zip(past)
            .map(|(&w, &p)| i32::from(w) * i32::from(p))
            .sum();
    }
    // The first lag with the largest positive correlation.
    let mut l_max: i64 = 0;
    let mut nc: i16 = 40;
    for (&c, lambda) in corr.iter().zip(40i16..) {
        if i64::from(c) > l_max {
            nc = lambda;
            l_max = i64::from(c);
        }
    }
    l_max <<= 1;
    l_max >>= 6 - scal;

    let mut l_power: i64 = 0;
    for &p in &dp[base - nc as usize..base - nc as usize + 40] {
        let t = i64::from(p >> 3);
        l_power += t * t;
    }
    l_power <<= 1;

    if l_max <= 0 {
        return (nc, 0);
    }
    if l_max >= l_power {
        return (nc, 3);
    }
    let temp = norm(l_power);
    let r = ((l_max << temp) >> 16) as i16;
    let s = ((l_power << temp) >> 16) as i16;
    let bc = (0..=2).find(|&bc| r <= mult(s, DLB[bc])).unwrap_or(3);
    (nc, bc as i16)
}

/// RPE encoding of one sub-frame's long-term residual `e` (4.2.13 – 4.2.17):
/// xmaxc, Mc, the 13 coded pulses, and the locally decoded excitation ep.
fn rpe_encoding(e: &[i16; 40]) -> (i16, i16, [i16; 13], [i16; 40]) {
    // Weighting filter over e padded with five zeros on each side.
    let mut x = [0i16; 40];
    for (k, out) in x.iter_mut().enumerate() {
        let mut l_result: i64 = 4096;
        for (i, &h) in H.iter().enumerate() {
            let j = k + i;
            if (5..45).contains(&j) {
                l_result += i64::from(e[j - 5]) * h;
            }
        }
        *out = (l_result >> 13).clamp(i64::from(MIN_WORD), i64::from(MAX_WORD)) as i16;
    }

    // Grid selection: the decimation with the most energy (the first on ties).
    let energy = |m: usize| -> i64 {
        (0..13)
            .map(|i| {
                let t = i64::from(x[m + 3 * i] >> 2);
                t * t
            })
            .sum::<i64>()
            << 1
    };
    let mut mc = 0usize;
    let mut em = energy(0);
    for m in 1..4 {
        let l = energy(m);
        if l > em {
            mc = m;
            em = l;
        }
    }
    let mut xm = [0i16; 13];
    for (i, v) in xm.iter_mut().enumerate() {
        *v = x[mc + 3 * i];
    }

    // APCM quantisation.
    let xmax = xm.iter().map(|&v| abs(v)).max().unwrap_or(0);
    let mut exp: i16 = 0;
    let mut temp = xmax >> 9;
    let mut itest = false;
    for _ in 0..=5 {
        itest |= temp <= 0;
        temp >>= 1;
        if !itest {
            exp += 1;
        }
    }
    let xmaxc = add(xmax >> (exp + 5), exp << 3);
    let (exp, mant) = exp_mant(xmaxc);
    let temp1 = 6 - exp;
    let temp2 = NRFAC[mant as usize];
    let mut xmc = [0i16; 13];
    for (c, &v) in xmc.iter_mut().zip(&xm) {
        let t = (i32::from(v) << temp1) as i16;
        let t = mult_nc(t, temp2);
        *c = (t >> 12) + 4;
    }

    // APCM inverse quantisation and grid positioning: the excitation the decoder
    // will rebuild, with libgsm's unmasked codes.
    let temp1 = FAC[mant as usize];
    let temp2 = 6 - exp;
    let temp3: i16 = if temp2 >= 1 { 1 << (temp2 - 1) } else { 0 };
    let mut ep = [0i16; 40];
    for (i, &c) in xmc.iter().enumerate() {
        let t = c.wrapping_shl(1).wrapping_sub(7);
        let t = (i32::from(t) << 12) as i16;
        let t = add(mult_r_nc(temp1, t), temp3);
        ep[mc + 3 * i] = t >> temp2;
    }
    (xmaxc, mc as i16, xmc, ep)
}

/// Exponent and mantissa of a coded block maximum (4.2.15).
fn exp_mant(xmaxc: i16) -> (i16, i16) {
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
    (exp, mant)
}

// ------------------------------------------------------------------ packing

impl Frame {
    /// Write the parameters in transmission order through `put(width, value)`.
    fn write(&self, mut put: impl FnMut(u32, u8)) {
        for (&c, &bits) in self.larc.iter().zip(&LAR_BITS) {
            put(bits, c);
        }
        for j in 0..4 {
            put(7, self.nc[j]);
            put(2, self.bc[j]);
            put(2, self.mc[j]);
            put(6, self.xmaxc[j]);
            for &x in &self.xmc[j] {
                put(3, x);
            }
        }
    }

    /// Pack as a standard 33-byte frame: the 0xD signature, then the parameters MSB
    /// first, each masked to its width (as `gsm_encode()` does).
    pub fn to_standard(&self) -> [u8; FRAME_LEN] {
        let mut out = [0u8; FRAME_LEN];
        let mut acc: u64 = u64::from(MAGIC);
        let mut len: u32 = 4;
        let mut at = 0;
        self.write(|n, v| {
            acc = (acc << n) | u64::from(v & ((1 << n) - 1));
            len += n;
            while len >= 8 {
                len -= 8;
                out[at] = (acc >> len) as u8;
                at += 1;
            }
        });
        out
    }

    /// Pack two frames as one MS-GSM 65-byte block (LSB first, no signature), as
    /// libgsm's `GSM_OPT_WAV49` mode writes a pair.
    pub fn pair_to_wav49(first: &Frame, second: &Frame) -> [u8; WAV49_BLOCK_LEN] {
        let mut out = [0u8; WAV49_BLOCK_LEN];
        let mut acc: u64 = 0;
        let mut len: u32 = 0;
        let mut at = 0;
        let mut put = |n: u32, v: u8| {
            acc |= u64::from(v & ((1 << n) - 1)) << len;
            len += n;
            while len >= 8 {
                out[at] = acc as u8;
                at += 1;
                acc >>= 8;
                len -= 8;
            }
        };
        first.write(&mut put);
        second.write(&mut put);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample_frame;
    use super::super::FrameDecoder;
    use super::*;

    #[test]
    fn packers_are_the_readers_inverse() {
        for seed in 0..300 {
            let (a, b) = (sample_frame(seed), sample_frame(seed + 7777));
            assert_eq!(Frame::from_standard(&a.to_standard()), Some(a));
            assert_eq!(Frame::from_wav49(&Frame::pair_to_wav49(&a, &b)), [a, b]);
        }
    }

    #[test]
    fn norm_and_div_match_their_definitions() {
        for a in [
            1i64,
            2,
            3,
            255,
            256,
            65535,
            65536,
            1 << 29,
            (1 << 30) - 1,
            1 << 30,
        ] {
            let n = norm(a);
            assert!((a << n) >= 1 << 30 && (a << n) < 1 << 31, "norm({a}) = {n}");
        }
        assert_eq!(norm(i64::from(i32::MAX)), 0);
        assert_eq!(norm(-1), 31);
        assert_eq!(norm(-(1 << 30)), 0);
        // Negative values normalise into [-2^31, -2^30].
        assert_eq!(norm(-(1 << 29) - 1), 1);
        assert_eq!(norm(-(1 << 29)), 2);
        for (n, d) in [(1i16, 2i16), (1, 3), (100, 32767), (32767, 32767), (5, 7)] {
            let want = ((i32::from(n) << 15) / i32::from(d)).min(32767) as i16;
            assert_eq!(div(n, d), want, "{n}/{d}");
        }
    }

    #[test]
    fn l_add_saturates_to_32_bits() {
        assert_eq!(l_add(MAX_LONGWORD, 1), MAX_LONGWORD);
        assert_eq!(l_add(MIN_LONGWORD, -1), MIN_LONGWORD);
        assert_eq!(l_add(MIN_LONGWORD + 1, -1), MIN_LONGWORD);
        assert_eq!(l_add(-5, -7), -12);
        assert_eq!(l_add(5, -7), -2);
        assert_eq!(l_add(1 << 30, 1 << 30), MAX_LONGWORD);
    }

    #[test]
    fn silence_and_extremes_round_trip_without_panics() {
        // Full-scale input in every shape the filters saturate on.
        let shapes: [fn(usize) -> i16; 4] = [
            |_| 0,
            |i| if (i / 7) % 2 == 0 { i16::MAX } else { i16::MIN },
            |_| i16::MIN,
            |i| if i % 2 == 0 { i16::MAX } else { i16::MIN },
        ];
        for shape in shapes {
            let mut enc = FrameEncoder::new();
            let mut dec = FrameDecoder::new();
            let mut out = [0i16; FRAME_SAMPLES];
            for f in 0..20 {
                let frame: [i16; FRAME_SAMPLES] = std::array::from_fn(|i| shape(f * 160 + i));
                let p = enc.encode(&frame);
                assert!(p.nc.iter().all(|&n| (40..=120).contains(&n)));
                assert!(p.xmaxc.iter().all(|&x| x < 64));
                dec.decode(&p, &mut out);
            }
        }
    }
}
