//! AMF0 (Action Message Format 0) values: a bounded borrowing decoder and an encoder.
//!
//! Grammar (AMF0 spec, section 2): `value = marker payload` where the marker is one byte:
//! `0x00 number(f64 BE)`, `0x01 boolean(u8)`, `0x02 string(u16 len, UTF-8)`,
//! `0x03 object(*(u16 key-len key value) 0x00 0x00 0x09)`, `0x05 null`, `0x06 undefined`,
//! `0x08 ecma-array(u32 count, pairs as object, end marker)`, `0x0A strict-array(u32 count, values)`,
//! `0x0B date(f64 ms, i16 tz)`, `0x0C long-string(u32 len, UTF-8)`. Other markers (movie clip,
//! reference, XML, typed object, AMF3 switch, ...) are rejected.
//!
//! Untrusted input is bounded: nesting depth (default 32, so a deep document cannot overflow the
//! stack), total element count, and counts from the wire never size an allocation beyond a small
//! constant (HOSTILE-INPUTS row 2).

use bytes::BufMut;

/// Maximum nesting depth of objects/arrays accepted by [`decode_all`].
pub const DEFAULT_MAX_DEPTH: u32 = 32;
/// Maximum number of values (at any depth, including object entries) accepted by [`decode_all`].
pub const DEFAULT_MAX_ELEMENTS: u32 = 4096;

/// Largest up-front capacity reserved for a container, whatever the wire count says.
const PREALLOC_CAP: usize = 16;

/// AMF0 type markers.
mod marker {
    pub(super) const NUMBER: u8 = 0x00;
    pub(super) const BOOLEAN: u8 = 0x01;
    pub(super) const STRING: u8 = 0x02;
    pub(super) const OBJECT: u8 = 0x03;
    pub(super) const NULL: u8 = 0x05;
    pub(super) const UNDEFINED: u8 = 0x06;
    pub(super) const ECMA_ARRAY: u8 = 0x08;
    pub(super) const OBJECT_END: u8 = 0x09;
    pub(super) const STRICT_ARRAY: u8 = 0x0A;
    pub(super) const DATE: u8 = 0x0B;
    pub(super) const LONG_STRING: u8 = 0x0C;
}

/// A decoded AMF0 value borrowing strings from the input buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum Amf0Value<'a> {
    /// IEEE 754 double.
    Number(f64),
    /// Boolean.
    Boolean(bool),
    /// UTF-8 string up to 65535 bytes.
    String(&'a str),
    /// Anonymous object: ordered key/value pairs.
    Object(Vec<(&'a str, Amf0Value<'a>)>),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// Associative array (the wire count is only a hint and is ignored).
    EcmaArray(Vec<(&'a str, Amf0Value<'a>)>),
    /// Dense array.
    StrictArray(Vec<Amf0Value<'a>>),
    /// Date: milliseconds since the epoch and a (deprecated) time-zone offset.
    Date {
        /// Milliseconds since 1970-01-01 UTC.
        millis: f64,
        /// Time-zone offset in minutes (should be 0).
        tz: i16,
    },
    /// UTF-8 string longer than 65535 bytes.
    LongString(&'a str),
}

impl<'a> Amf0Value<'a> {
    /// The string content of a `String` or `LongString`.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a `Number`.
    pub fn as_number(&self) -> Option<f64> {
        match *self {
            Amf0Value::Number(n) => Some(n),
            _ => None,
        }
    }

    /// The value under `key` in an `Object` or `EcmaArray` (first match).
    pub fn get(&self, key: &str) -> Option<&Amf0Value<'a>> {
        match self {
            Amf0Value::Object(pairs) | Amf0Value::EcmaArray(pairs) => {
                pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Appends the AMF0 encoding of this value to `out`.
    ///
    /// A `String` longer than 65535 bytes is written as a long string; an object key longer than
    /// 65535 bytes is truncated (at a character boundary) since the format cannot carry it.
    pub fn encode<B: BufMut>(&self, out: &mut B) {
        match self {
            Amf0Value::Number(n) => encode_number(*n, out),
            Amf0Value::Boolean(b) => {
                out.put_u8(marker::BOOLEAN);
                out.put_u8(u8::from(*b));
            }
            Amf0Value::String(s) | Amf0Value::LongString(s) => encode_string(s, out),
            Amf0Value::Object(pairs) => {
                out.put_u8(marker::OBJECT);
                encode_pairs(pairs, out);
            }
            Amf0Value::Null => out.put_u8(marker::NULL),
            Amf0Value::Undefined => out.put_u8(marker::UNDEFINED),
            Amf0Value::EcmaArray(pairs) => {
                out.put_u8(marker::ECMA_ARRAY);
                out.put_u32(u32::try_from(pairs.len()).unwrap_or(u32::MAX));
                encode_pairs(pairs, out);
            }
            Amf0Value::StrictArray(values) => {
                out.put_u8(marker::STRICT_ARRAY);
                let n = u32::try_from(values.len()).unwrap_or(u32::MAX);
                out.put_u32(n);
                for v in values.iter().take(n as usize) {
                    v.encode(out);
                }
            }
            Amf0Value::Date { millis, tz } => {
                out.put_u8(marker::DATE);
                out.put_f64(*millis);
                out.put_i16(*tz);
            }
        }
    }
}

/// Appends an AMF0 number.
pub fn encode_number<B: BufMut>(n: f64, out: &mut B) {
    out.put_u8(marker::NUMBER);
    out.put_f64(n);
}

/// Appends an AMF0 string (or long string when longer than 65535 bytes).
pub fn encode_string<B: BufMut>(s: &str, out: &mut B) {
    match u16::try_from(s.len()) {
        Ok(len) => {
            out.put_u8(marker::STRING);
            out.put_u16(len);
        }
        Err(_) => {
            out.put_u8(marker::LONG_STRING);
            out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        }
    }
    out.put_slice(s.as_bytes());
}

fn encode_pairs<B: BufMut>(pairs: &[(&str, Amf0Value<'_>)], out: &mut B) {
    for (key, value) in pairs {
        let key = truncate_key(key);
        // Empty keys would read as the object end marker: skip them.
        if key.is_empty() {
            continue;
        }
        out.put_u16(u16::try_from(key.len()).unwrap_or(u16::MAX));
        out.put_slice(key.as_bytes());
        value.encode(out);
    }
    out.put_u16(0);
    out.put_u8(marker::OBJECT_END);
}

fn truncate_key(key: &str) -> &str {
    let mut end = key.len().min(usize::from(u16::MAX));
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    key.get(..end).unwrap_or("")
}

/// Appends the AMF0 encoding of every value in order.
pub fn encode_all<B: BufMut>(values: &[Amf0Value<'_>], out: &mut B) {
    for v in values {
        v.encode(out);
    }
}

/// Why AMF0 input was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Amf0Error {
    /// The input ended inside a value.
    #[error("AMF0 input truncated")]
    Truncated,
    /// A marker this decoder does not accept (or an object end marker out of place).
    #[error("unsupported AMF0 marker 0x{0:02x}")]
    UnsupportedMarker(u8),
    /// Objects/arrays nested deeper than the limit.
    #[error("AMF0 nesting deeper than the limit")]
    TooDeep,
    /// More values than the element limit.
    #[error("too many AMF0 elements")]
    TooManyElements,
    /// A string that is not valid UTF-8.
    #[error("AMF0 string is not valid UTF-8")]
    InvalidUtf8,
}

/// Limits applied while decoding untrusted AMF0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amf0Limits {
    /// Maximum container nesting depth.
    pub max_depth: u32,
    /// Maximum total values (including object entries) in one decode.
    pub max_elements: u32,
}

impl Default for Amf0Limits {
    fn default() -> Self {
        Amf0Limits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_elements: DEFAULT_MAX_ELEMENTS,
        }
    }
}

/// Decodes every value in `buf` with default limits; trailing partial values are an error.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Amf0Value<'_>>, Amf0Error> {
    decode_all_with(buf, Amf0Limits::default())
}

/// Decodes every value in `buf` with the given limits.
pub fn decode_all_with(buf: &[u8], limits: Amf0Limits) -> Result<Vec<Amf0Value<'_>>, Amf0Error> {
    let mut d = Decoder {
        buf,
        pos: 0,
        elements: 0,
        limits,
    };
    let mut out = Vec::new();
    while d.pos < d.buf.len() {
        out.push(d.value(0)?);
    }
    Ok(out)
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    elements: u32,
    limits: Amf0Limits,
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Amf0Error> {
        let end = self.pos.checked_add(n).ok_or(Amf0Error::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(Amf0Error::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Amf0Error> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    fn str(&mut self, len: usize) -> Result<&'a str, Amf0Error> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| Amf0Error::InvalidUtf8)
    }

    fn count_element(&mut self) -> Result<(), Amf0Error> {
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(Amf0Error::TooManyElements);
        }
        Ok(())
    }

    fn value(&mut self, depth: u32) -> Result<Amf0Value<'a>, Amf0Error> {
        self.count_element()?;
        let m = self.u8()?;
        Ok(match m {
            marker::NUMBER => Amf0Value::Number(self.f64()?),
            marker::BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            marker::STRING => {
                let len = usize::from(self.u16()?);
                Amf0Value::String(self.str(len)?)
            }
            marker::LONG_STRING => {
                let len = usize::try_from(self.u32()?).map_err(|_| Amf0Error::Truncated)?;
                Amf0Value::LongString(self.str(len)?)
            }
            marker::NULL => Amf0Value::Null,
            marker::UNDEFINED => Amf0Value::Undefined,
            marker::DATE => {
                let millis = self.f64()?;
                let tz = i16::from_be_bytes(self.array()?);
                Amf0Value::Date { millis, tz }
            }
            marker::OBJECT => Amf0Value::Object(self.pairs(depth)?),
            marker::ECMA_ARRAY => {
                let _count_hint = self.u32()?;
                Amf0Value::EcmaArray(self.pairs(depth)?)
            }
            marker::STRICT_ARRAY => {
                let depth = self.enter(depth)?;
                let count = self.u32()?;
                // Each value takes at least one byte: a count beyond what remains is a lie.
                let remaining = self.buf.len().saturating_sub(self.pos);
                if usize::try_from(count).map_or(true, |c| c > remaining) {
                    return Err(Amf0Error::Truncated);
                }
                let mut values = Vec::with_capacity((count as usize).min(PREALLOC_CAP));
                for _ in 0..count {
                    values.push(self.value(depth)?);
                }
                Amf0Value::StrictArray(values)
            }
            other => return Err(Amf0Error::UnsupportedMarker(other)),
        })
    }

    fn enter(&self, depth: u32) -> Result<u32, Amf0Error> {
        let depth = depth + 1;
        if depth > self.limits.max_depth {
            return Err(Amf0Error::TooDeep);
        }
        Ok(depth)
    }

    /// `*(u16 key-len key value) 0x00 0x00 0x09`, one level below `depth`.
    fn pairs(&mut self, depth: u32) -> Result<Vec<(&'a str, Amf0Value<'a>)>, Amf0Error> {
        let depth = self.enter(depth)?;
        let mut pairs = Vec::new();
        loop {
            let key_len = usize::from(self.u16()?);
            if key_len == 0 {
                let end = self.u8()?;
                if end != marker::OBJECT_END {
                    return Err(Amf0Error::UnsupportedMarker(end));
                }
                return Ok(pairs);
            }
            let key = self.str(key_len)?;
            let value = self.value(depth)?;
            pairs.push((key, value));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn roundtrip(v: &Amf0Value<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode(&mut out);
        out
    }

    #[test]
    fn decodes_connect_command_shape() {
        let values = vec![
            Amf0Value::String("connect"),
            Amf0Value::Number(1.0),
            Amf0Value::Object(vec![
                ("app", Amf0Value::String("call")),
                ("tcUrl", Amf0Value::String("rtmp://h/call?token=T")),
                ("fpad", Amf0Value::Boolean(false)),
                ("objectEncoding", Amf0Value::Number(0.0)),
            ]),
            Amf0Value::Null,
            Amf0Value::Undefined,
        ];
        let mut buf = Vec::new();
        encode_all(&values, &mut buf);
        let decoded = decode_all(&buf).unwrap();
        assert_eq!(decoded, values);
        assert_eq!(
            decoded[2].get("app").and_then(Amf0Value::as_str),
            Some("call")
        );
    }

    #[test]
    fn roundtrips_every_supported_type() {
        let long = "x".repeat(70_000);
        let v = Amf0Value::StrictArray(vec![
            Amf0Value::EcmaArray(vec![("k", Amf0Value::Number(-2.5))]),
            Amf0Value::Date {
                millis: 1.5e12,
                tz: 0,
            },
            Amf0Value::LongString(&long),
            Amf0Value::Boolean(true),
        ]);
        let buf = roundtrip(&v);
        assert_eq!(decode_all(&buf).unwrap(), vec![v]);
    }

    #[test]
    fn long_rust_string_is_encoded_as_long_string() {
        let long = "y".repeat(65_536);
        let buf = roundtrip(&Amf0Value::String(&long));
        assert_eq!(buf[0], marker::LONG_STRING);
        assert_eq!(
            decode_all(&buf).unwrap(),
            vec![Amf0Value::LongString(&long)]
        );
    }

    #[test]
    fn hundred_thousand_nested_objects_is_an_error_not_a_stack_overflow() {
        let mut buf = vec![marker::OBJECT];
        for _ in 0..100_000 {
            buf.extend_from_slice(&[0x00, 0x01, b'a', marker::OBJECT]);
        }
        assert_eq!(decode_all(&buf), Err(Amf0Error::TooDeep));
    }

    #[test]
    fn hundred_thousand_nested_strict_arrays_is_an_error() {
        let mut buf = Vec::new();
        for _ in 0..100_000 {
            buf.extend_from_slice(&[marker::STRICT_ARRAY, 0, 0, 0, 1]);
        }
        buf.push(marker::NULL);
        assert_eq!(decode_all(&buf), Err(Amf0Error::TooDeep));
    }

    #[test]
    fn depth_32_is_accepted_and_33_rejected() {
        let nest = |n: usize| {
            let mut buf = Vec::new();
            for _ in 0..n {
                buf.extend_from_slice(&[marker::STRICT_ARRAY, 0, 0, 0, 1]);
            }
            buf.push(marker::NULL);
            buf
        };
        assert!(decode_all(&nest(32)).is_ok());
        assert_eq!(decode_all(&nest(33)), Err(Amf0Error::TooDeep));
    }

    #[test]
    fn strict_array_count_larger_than_input_is_rejected_without_allocating() {
        let buf = [marker::STRICT_ARRAY, 0xFF, 0xFF, 0xFF, 0xFF, marker::NULL];
        assert_eq!(decode_all(&buf), Err(Amf0Error::Truncated));
    }

    #[test]
    fn element_cap_rejects_wide_documents() {
        let buf = vec![marker::NULL; 5000];
        assert_eq!(decode_all(&buf), Err(Amf0Error::TooManyElements));
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        assert_eq!(
            decode_all(&[marker::STRING, 0, 2, 0xC3, 0x28]),
            Err(Amf0Error::InvalidUtf8)
        );
        assert_eq!(
            decode_all(&[marker::OBJECT, 0, 1, 0xFF, marker::NULL, 0, 0, 9]),
            Err(Amf0Error::InvalidUtf8)
        );
    }

    #[test]
    fn unsupported_markers_are_rejected() {
        for m in [0x04, 0x07, marker::OBJECT_END, 0x0D, 0x0F, 0x10, 0x11, 0xFF] {
            assert_eq!(decode_all(&[m, 0, 0]), Err(Amf0Error::UnsupportedMarker(m)));
        }
    }

    #[test]
    fn truncated_inputs_are_errors() {
        let mut buf = Vec::new();
        Amf0Value::Object(vec![("key", Amf0Value::String("value"))]).encode(&mut buf);
        for cut in 1..buf.len() {
            assert!(decode_all(&buf[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(decode_all(&[]), Ok(vec![]));
    }

    #[test]
    fn object_without_end_marker_byte_9_is_rejected() {
        assert_eq!(
            decode_all(&[marker::OBJECT, 0, 0, 0x05]),
            Err(Amf0Error::UnsupportedMarker(0x05))
        );
    }
}
