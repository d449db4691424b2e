//! Linear 16-bit PCM: RTP L16 (RFC 3551 §4.5.11, network byte order) and FLV SoundFormat 3
//! (`pcm_le`, little-endian; SoundFormat 0 is "platform endian", which every encoder in
//! practice writes as little-endian), plus interleaved-stereo → mono down-mix.
//!
//! ```text
//! L16 payload = 1*(sample-hi sample-lo)        ; RTP, big-endian, interleaved if stereo
//! s16le data  = 1*(sample-lo sample-hi)        ; FLV formats 0 and 3
//! ```
//!
//! Every function writes into a caller-provided buffer and returns how many items it wrote;
//! nothing allocates.

/// Errors from the L16 conversions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum L16Error {
    /// A byte buffer of odd length cannot hold whole 16-bit samples (or an interleaved stereo
    /// buffer holds an odd number of samples).
    #[error("odd length {0}: not a whole number of samples")]
    OddLength(usize),
    /// The output buffer is shorter than the converted input.
    #[error("output buffer holds {got} items, {needed} needed")]
    OutputTooSmall {
        /// Items the conversion produces.
        needed: usize,
        /// Items the output buffer holds.
        got: usize,
    },
}

fn check_out(needed: usize, got: usize) -> Result<(), L16Error> {
    if got < needed {
        return Err(L16Error::OutputTooSmall { needed, got });
    }
    Ok(())
}

fn samples_in(bytes: &[u8]) -> Result<usize, L16Error> {
    if bytes.len() % 2 != 0 {
        return Err(L16Error::OddLength(bytes.len()));
    }
    Ok(bytes.len() / 2)
}

/// Decodes big-endian L16 (RTP) bytes into samples; returns the sample count.
pub fn decode_be(input: &[u8], out: &mut [i16]) -> Result<usize, L16Error> {
    let n = samples_in(input)?;
    check_out(n, out.len())?;
    for (o, b) in out.iter_mut().zip(input.chunks_exact(2)) {
        *o = i16::from_be_bytes([b[0], b[1]]);
    }
    Ok(n)
}

/// Decodes little-endian s16 (FLV SoundFormat 0 and 3) bytes into samples; returns the count.
pub fn decode_le(input: &[u8], out: &mut [i16]) -> Result<usize, L16Error> {
    let n = samples_in(input)?;
    check_out(n, out.len())?;
    for (o, b) in out.iter_mut().zip(input.chunks_exact(2)) {
        *o = i16::from_le_bytes([b[0], b[1]]);
    }
    Ok(n)
}

/// Encodes samples as big-endian L16 (RTP); returns the byte count (`2 * input.len()`).
pub fn encode_be(input: &[i16], out: &mut [u8]) -> Result<usize, L16Error> {
    let n = input.len() * 2;
    check_out(n, out.len())?;
    for (o, s) in out.chunks_exact_mut(2).zip(input) {
        o.copy_from_slice(&s.to_be_bytes());
    }
    Ok(n)
}

/// Encodes samples as little-endian s16 (FLV); returns the byte count (`2 * input.len()`).
pub fn encode_le(input: &[i16], out: &mut [u8]) -> Result<usize, L16Error> {
    let n = input.len() * 2;
    check_out(n, out.len())?;
    for (o, s) in out.chunks_exact_mut(2).zip(input) {
        o.copy_from_slice(&s.to_le_bytes());
    }
    Ok(n)
}

/// Swaps the byte order of 16-bit samples in place: L16 (big-endian) ⇄ s16le, the
/// RTP ⇄ FLV pass-through conversion without a trip through `i16`.
pub fn swap_bytes_in_place(buf: &mut [u8]) -> Result<(), L16Error> {
    samples_in(buf)?;
    for pair in buf.chunks_exact_mut(2) {
        pair.swap(0, 1);
    }
    Ok(())
}

/// Averages interleaved stereo (L R L R …) into mono; returns the mono sample count
/// (`input.len() / 2`). The average rounds toward negative infinity and never overflows.
pub fn downmix_stereo(input: &[i16], out: &mut [i16]) -> Result<usize, L16Error> {
    if input.len() % 2 != 0 {
        return Err(L16Error::OddLength(input.len()));
    }
    let n = input.len() / 2;
    check_out(n, out.len())?;
    for (o, lr) in out.iter_mut().zip(input.chunks_exact(2)) {
        *o = ((i32::from(lr[0]) + i32::from(lr[1])) >> 1) as i16;
    }
    Ok(n)
}

/// [`downmix_stereo`] in place: the mono samples end up in `buf[..n]`; returns `n`.
pub fn downmix_stereo_in_place(buf: &mut [i16]) -> Result<usize, L16Error> {
    if buf.len() % 2 != 0 {
        return Err(L16Error::OddLength(buf.len()));
    }
    let n = buf.len() / 2;
    for i in 0..n {
        // i <= 2i < 2i + 1 < buf.len(): reading ahead of the write position is safe.
        buf[i] = ((i32::from(buf[2 * i]) + i32::from(buf[2 * i + 1])) >> 1) as i16;
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn big_endian_is_network_order_and_round_trips() {
        let samples = [0i16, 1, -1, i16::MAX, i16::MIN, 0x1234];
        let mut bytes = [0u8; 12];
        assert_eq!(encode_be(&samples, &mut bytes), Ok(12));
        assert_eq!(&bytes[..4], &[0x00, 0x00, 0x00, 0x01]);
        assert_eq!(&bytes[10..], &[0x12, 0x34]);
        let mut back = [0i16; 6];
        assert_eq!(decode_be(&bytes, &mut back), Ok(6));
        assert_eq!(back, samples);
    }

    #[test]
    fn little_endian_round_trips_and_differs_from_big_endian() {
        let samples: Vec<i16> = (-300..300).map(|i| (i * 109) as i16).collect();
        let mut le = vec![0u8; samples.len() * 2];
        let mut be = vec![0u8; samples.len() * 2];
        encode_le(&samples, &mut le).unwrap();
        encode_be(&samples, &mut be).unwrap();
        assert_eq!(&le[..2], &(-300i16 * 109).to_le_bytes());
        let mut back = vec![0i16; samples.len()];
        decode_le(&le, &mut back).unwrap();
        assert_eq!(back, samples);
        swap_bytes_in_place(&mut le).unwrap();
        assert_eq!(le, be);
    }

    #[test]
    fn odd_lengths_and_short_outputs_are_errors() {
        let mut out = [0i16; 4];
        assert_eq!(decode_be(&[1, 2, 3], &mut out), Err(L16Error::OddLength(3)));
        assert_eq!(decode_le(&[1], &mut out), Err(L16Error::OddLength(1)));
        assert_eq!(
            swap_bytes_in_place(&mut [1, 2, 3]),
            Err(L16Error::OddLength(3))
        );
        assert_eq!(
            decode_be(&[0; 10], &mut out),
            Err(L16Error::OutputTooSmall { needed: 5, got: 4 })
        );
        let mut bytes = [0u8; 3];
        assert_eq!(
            encode_le(&[1, 2], &mut bytes),
            Err(L16Error::OutputTooSmall { needed: 4, got: 3 })
        );
        assert_eq!(
            downmix_stereo(&[1, 2, 3], &mut out),
            Err(L16Error::OddLength(3))
        );
        assert_eq!(
            downmix_stereo_in_place(&mut [1, 2, 3]),
            Err(L16Error::OddLength(3))
        );
    }

    #[test]
    fn downmix_averages_channels_without_overflow() {
        let stereo = [i16::MAX, i16::MAX, i16::MIN, i16::MIN, 100, -100, 3, 4];
        let mut mono = [0i16; 4];
        assert_eq!(downmix_stereo(&stereo, &mut mono), Ok(4));
        assert_eq!(mono, [i16::MAX, i16::MIN, 0, 3]);
        let mut buf = stereo;
        assert_eq!(downmix_stereo_in_place(&mut buf), Ok(4));
        assert_eq!(&buf[..4], &mono);
    }
}
