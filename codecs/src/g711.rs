//! G.711 µ-law and A-law companding (ITU-T G.711), table driven.
//!
//! All tables are generated at compile time (`const`) from the reference segment algorithms of
//! G.711 (the same arithmetic as the widely used Sun Microsystems reference `g711.c`):
//!
//! * decode: one 256-entry `i16` table per law;
//! * encode: µ-law depends only on the top 14 bits of a 16-bit sample, A-law on the top 13 bits,
//!   so the encoders are 16384- and 8192-entry `u8` tables indexed by `sample >> 2` / `>> 3`
//!   (taken as unsigned, i.e. the two's-complement bit pattern);
//! * transcoding: `ULAW_TO_ALAW[u] = encode_alaw(decode_ulaw(u))` and vice versa, so a direct
//!   conversion gives exactly the same byte as decoding to linear and re-encoding.
//!
//! Linear samples are 16-bit signed PCM (the G.711 14-/13-bit range scaled up by 4 / 8).
//! Reference points: µ-law `0xFF` and `0x7F` decode to 0, `0x80` to +32124, `0x00` to -32124;
//! A-law `0xD5` (the silence byte) decodes to +8, `0x55` to -8, `0xAA` to +32256.

/// µ-law bias in the 16-bit domain (the encoder adds it >> 2 in the 14-bit domain).
const ULAW_BIAS: i32 = 0x84;
/// µ-law clip level, 14-bit domain.
const ULAW_CLIP: i32 = 8159;

/// Reference µ-law expansion of one code word.
const fn ulaw_decode_calc(code: u8) -> i16 {
    let u = !code;
    let mut t = (((u & 0x0F) as i32) << 3) + ULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    let v = if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    };
    v as i16
}

/// Reference µ-law compression of one 16-bit sample.
const fn ulaw_encode_calc(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 2;
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    if pcm > ULAW_CLIP {
        pcm = ULAW_CLIP;
    }
    pcm += ULAW_BIAS >> 2;
    // Segment = number of the first segment end (0x3F, 0x7F, …, 0x1FFF) that is >= pcm.
    let mut seg = 0u32;
    while seg < 8 && pcm > (0x40 << seg) - 1 {
        seg += 1;
    }
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let uval = ((seg as u8) << 4) | (((pcm >> (seg + 1)) & 0x0F) as u8);
    uval ^ mask
}

/// Reference A-law expansion of one code word.
const fn alaw_decode_calc(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as u32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    let v = if a & 0x80 != 0 { t } else { -t };
    v as i16
}

/// Reference A-law compression of one 16-bit sample.
const fn alaw_encode_calc(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    // Segment ends 0x1F, 0x3F, …, 0xFFF.
    let mut seg = 0u32;
    while seg < 8 && pcm > (0x20 << seg) - 1 {
        seg += 1;
    }
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mut aval = (seg as u8) << 4;
    if seg < 2 {
        aval |= ((pcm >> 1) & 0x0F) as u8;
    } else {
        aval |= ((pcm >> seg) & 0x0F) as u8;
    }
    aval ^ mask
}

const ULAW_DECODE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode_calc(i as u8);
        i += 1;
    }
    t
};

const ALAW_DECODE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_calc(i as u8);
        i += 1;
    }
    t
};

/// Indexed by the top 14 bits of the sample's two's-complement pattern.
const ULAW_ENCODE: [u8; 1 << 14] = {
    let mut t = [0u8; 1 << 14];
    let mut i = 0;
    while i < (1 << 14) {
        t[i] = ulaw_encode_calc(((i as u16) << 2) as i16);
        i += 1;
    }
    t
};

/// Indexed by the top 13 bits of the sample's two's-complement pattern.
const ALAW_ENCODE: [u8; 1 << 13] = {
    let mut t = [0u8; 1 << 13];
    let mut i = 0;
    while i < (1 << 13) {
        t[i] = alaw_encode_calc(((i as u16) << 3) as i16);
        i += 1;
    }
    t
};

const ULAW_TO_ALAW: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_encode_calc(ulaw_decode_calc(i as u8));
        i += 1;
    }
    t
};

const ALAW_TO_ULAW: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_encode_calc(alaw_decode_calc(i as u8));
        i += 1;
    }
    t
};

// All table lookups below index with a value whose type bounds it below the table length
// (u8 -> 256, u16 >> 2 -> 16384, u16 >> 3 -> 8192), so they cannot panic.

/// Expands one µ-law byte to a 16-bit linear sample.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_DECODE[usize::from(code)]
}

/// Expands one A-law byte to a 16-bit linear sample.
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_DECODE[usize::from(code)]
}

/// Compresses one 16-bit linear sample to µ-law.
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    ULAW_ENCODE[usize::from(sample as u16 >> 2)]
}

/// Compresses one 16-bit linear sample to A-law.
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    ALAW_ENCODE[usize::from(sample as u16 >> 3)]
}

/// Converts µ-law to A-law directly (same result as decode then encode).
#[inline]
pub fn ulaw_to_alaw(code: u8) -> u8 {
    ULAW_TO_ALAW[usize::from(code)]
}

/// Converts A-law to µ-law directly (same result as decode then encode).
#[inline]
pub fn alaw_to_ulaw(code: u8) -> u8 {
    ALAW_TO_ULAW[usize::from(code)]
}

/// Decodes µ-law bytes into `out`; converts `min(input.len(), out.len())` samples and returns
/// that count.
pub fn decode_ulaw(input: &[u8], out: &mut [i16]) -> usize {
    let n = input.len().min(out.len());
    for (o, &c) in out.iter_mut().zip(input) {
        *o = ulaw_to_linear(c);
    }
    n
}

/// Decodes A-law bytes into `out`; returns the number of samples written (the shorter length).
pub fn decode_alaw(input: &[u8], out: &mut [i16]) -> usize {
    let n = input.len().min(out.len());
    for (o, &c) in out.iter_mut().zip(input) {
        *o = alaw_to_linear(c);
    }
    n
}

/// Encodes linear samples to µ-law into `out`; returns the number of bytes written.
pub fn encode_ulaw(input: &[i16], out: &mut [u8]) -> usize {
    let n = input.len().min(out.len());
    for (o, &s) in out.iter_mut().zip(input) {
        *o = linear_to_ulaw(s);
    }
    n
}

/// Encodes linear samples to A-law into `out`; returns the number of bytes written.
pub fn encode_alaw(input: &[i16], out: &mut [u8]) -> usize {
    let n = input.len().min(out.len());
    for (o, &s) in out.iter_mut().zip(input) {
        *o = linear_to_alaw(s);
    }
    n
}

/// Transcodes a µ-law buffer to A-law in place.
pub fn ulaw_to_alaw_in_place(buf: &mut [u8]) {
    for b in buf {
        *b = ulaw_to_alaw(*b);
    }
}

/// Transcodes an A-law buffer to µ-law in place.
pub fn alaw_to_ulaw_in_place(buf: &mut [u8]) {
    for b in buf {
        *b = alaw_to_ulaw(*b);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn ulaw_reference_values() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_reference_values() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_alaw(0), 0xD5, "A-law silence");
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_word_survives_decode_then_encode() {
        for c in 0..=255u8 {
            let u = linear_to_ulaw(ulaw_to_linear(c));
            // 0x7F is µ-law "negative zero" and re-encodes as 0xFF.
            if c == 0x7F {
                assert_eq!(u, 0xFF);
            } else {
                assert_eq!(u, c, "µ-law {c:#04x}");
            }
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "A-law {c:#04x}");
        }
    }

    #[test]
    fn decode_tables_are_monotonic_per_sign() {
        // µ-law: 0x80..=0xFF descend from +32124 to 0; A-law positive codes (after ^0x55)
        // ascend with the code number.
        for c in 0x80..0xFFu8 {
            assert!(ulaw_to_linear(c) > ulaw_to_linear(c + 1));
        }
        let mut prev = 0;
        for n in 0x80..=0xFFu8 {
            let v = alaw_to_linear(n ^ 0x55);
            assert!(v > prev);
            prev = v;
        }
    }

    #[test]
    fn round_trip_error_is_bounded_by_segment_step() {
        for x in i16::MIN..=i16::MAX {
            let mag = i32::from(x).abs();
            let eu = (i32::from(ulaw_to_linear(linear_to_ulaw(x))) - i32::from(x)).abs();
            let ea = (i32::from(alaw_to_linear(linear_to_alaw(x))) - i32::from(x)).abs();
            // Clipped region above the top decision level.
            if mag <= 32124 {
                assert!(eu <= mag / 32 + 8, "µ-law x={x} err={eu}");
            }
            if mag <= 32256 {
                assert!(ea <= mag / 32 + 16, "A-law x={x} err={ea}");
            }
        }
    }

    #[test]
    fn direct_transcoding_matches_decode_encode_within_one_step() {
        for c in 0..=255u8 {
            let a = ulaw_to_alaw(c);
            assert_eq!(a, linear_to_alaw(ulaw_to_linear(c)));
            // µ -> A -> µ lands on the same or an adjacent µ-law level.
            let back = alaw_to_ulaw(a);
            let lin = i32::from(ulaw_to_linear(c));
            let lin_back = i32::from(ulaw_to_linear(back));
            let step = lin.abs() / 16 + 16;
            assert!(
                (lin - lin_back).abs() <= step,
                "µ {c:#04x} -> A {a:#04x} -> µ {back:#04x}"
            );
            let u = alaw_to_ulaw(c);
            assert_eq!(u, linear_to_ulaw(alaw_to_linear(c)));
        }
        assert_eq!(ulaw_to_alaw(0xFF), 0xD5, "silence maps to silence");
    }

    #[test]
    fn slice_helpers_convert_the_shorter_length() {
        let mut pcm = [0i16; 3];
        assert_eq!(decode_ulaw(&[0xFF, 0x80, 0x00, 0x12], &mut pcm), 3);
        assert_eq!(pcm, [0, 32124, -32124]);
        let mut out = [0u8; 4];
        assert_eq!(encode_alaw(&pcm, &mut out), 3);
        assert_eq!(out[0], 0xD5);
        let mut buf = [0xFFu8, 0x80];
        ulaw_to_alaw_in_place(&mut buf);
        assert_eq!(buf, [0xD5, linear_to_alaw(32124)]);
        alaw_to_ulaw_in_place(&mut buf);
        assert_eq!(buf[0], linear_to_ulaw(8));
        let mut pcm2 = [0i16; 2];
        assert_eq!(decode_alaw(&[0xD5, 0x55], &mut pcm2), 2);
        assert_eq!(pcm2, [8, -8]);
        assert_eq!(encode_ulaw(&pcm2, &mut out[..1]), 1);
    }
}
