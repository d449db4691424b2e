//! The skybridge WebSocket client protocol, version 1 (`WS-PROTOCOL.md`): JSON signalling
//! messages in text frames and the 8-byte audio header of binary frames.
//!
//! ```text
//!   text:   {"type":"<snake_case>", ...fields}            ≤ 16 KiB
//!   binary: ver:8 (=1) codec:8 (0|8|111) call:16 timestamp:32 payload ≤ 1024  (big endian)
//! ```
//!
//! Codec negotiation (backward compatible): a client lists what it can encode and decode in
//! `hello.codecs` (e.g. `["opus","pcmu","pcma"]`); `welcome.codecs` names what the connection
//! will use and `welcome.payload_types` the `codec` byte of each in binary frames. G.711 (0, 8)
//! is always there; Opus ([`codec::OPUS`], one RFC 6716 packet of 20 ms per frame, 48 kHz
//! timestamps) only when the client offered it. A client that sends no `codecs` gets G.711.
//!
//! [`decode_client`] sorts failures by how the connection must react: not UTF-8/not JSON →
//! close 1007, unknown `type` → `error` then close 1008, too big → close 1009, bad fields →
//! an `error` message and the connection stays open ([`SignalError::close_code`] is `None`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Largest text (JSON) message.
pub const MAX_TEXT_LEN: usize = 16 * 1024;
/// Largest binary (audio) message.
pub const MAX_BINARY_LEN: usize = 2 * 1024;
/// Largest audio payload after the header.
pub const MAX_AUDIO_PAYLOAD: usize = 1024;
/// Audio frame header length.
pub const AUDIO_HEADER_LEN: usize = 8;
/// Audio frame format version.
pub const AUDIO_VERSION: u8 = 1;
/// Protocol version spoken in `hello`/`welcome`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest `target` of a `call`.
pub const MAX_TARGET_LEN: usize = 64;
/// Longest `digits` of a `dtmf`.
pub const MAX_DIGITS_LEN: usize = 32;
/// Longest `token` of a `hello`.
pub const MAX_TOKEN_LEN: usize = 256;
/// Most entries in `hello.codecs`.
pub const MAX_HELLO_CODECS: usize = 8;
/// Longest name in `hello.codecs`.
pub const MAX_CODEC_NAME_LEN: usize = 16;

/// A call id: a small integer chosen by the server, unique per connection; also the `call`
/// field of audio frames (hence 16 bits).
pub type CallId = u16;

/// The `codec` byte of audio frames: RTP static payload types for G.711, and the number this
/// server announces for Opus in `welcome.payload_types`.
pub mod codec {
    /// G.711 µ-law.
    pub const PCMU: u8 = 0;
    /// G.711 A-law.
    pub const PCMA: u8 = 8;
    /// Opus (RFC 6716; 48 kHz timestamps as RFC 7587), only on connections that negotiated it.
    pub const OPUS: u8 = 111;

    /// The number of a codec name of `hello.codecs` / `welcome.codecs`.
    pub fn number(name: &str) -> Option<u8> {
        match name {
            "pcmu" => Some(PCMU),
            "pcma" => Some(PCMA),
            "opus" => Some(OPUS),
            _ => None,
        }
    }
}

/// A message from the browser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Authenticate; must be first.
    Hello {
        /// Protocol version (1).
        version: u32,
        /// Bearer token (optional when auth is off), ≤ 256 bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Codecs the client encodes and decodes, preferred first (`"opus"`, `"pcmu"`,
        /// `"pcma"`; unknown names are ignored), ≤ 8 names of ≤ 16 bytes. Absent: G.711.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        codecs: Option<Vec<String>>,
    },
    /// Place a call to a dial-plan name (≤ 64 bytes).
    Call {
        /// Dial-plan name.
        target: String,
    },
    /// Answer an incoming call.
    Answer {
        /// Call id.
        call: CallId,
    },
    /// Refuse an incoming call (486 by default, or 603).
    Reject {
        /// Call id.
        call: CallId,
        /// SIP status: 486 or 603.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
    },
    /// End a call.
    Hangup {
        /// Call id.
        call: CallId,
    },
    /// Send DTMF digits (`0-9*#A-D`, ≤ 32).
    Dtmf {
        /// Call id.
        call: CallId,
        /// Digits.
        digits: String,
    },
    /// Put a call on hold (re-INVITE sendonly).
    Hold {
        /// Call id.
        call: CallId,
    },
    /// Resume a held call.
    Unhold {
        /// Call id.
        call: CallId,
    },
    /// Ask for statistics of one call or all.
    Stats {
        /// Call id, or all calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<CallId>,
    },
    /// Liveness; the server answers `pong`.
    Ping,
}

impl ClientMessage {
    /// The `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Hello { .. } => "hello",
            ClientMessage::Call { .. } => "call",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Reject { .. } => "reject",
            ClientMessage::Hangup { .. } => "hangup",
            ClientMessage::Dtmf { .. } => "dtmf",
            ClientMessage::Hold { .. } => "hold",
            ClientMessage::Unhold { .. } => "unhold",
            ClientMessage::Stats { .. } => "stats",
            ClientMessage::Ping => "ping",
        }
    }
}

/// Every `type` a client may send.
pub const CLIENT_TYPES: [&str; 10] = [
    "hello", "call", "answer", "reject", "hangup", "dtmf", "hold", "unhold", "stats", "ping",
];

/// Who put a call on hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldBy {
    /// This client.
    Local,
    /// The far end.
    Remote,
}

/// A message to the browser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Authentication succeeded.
    Welcome {
        /// Protocol version (1).
        version: u32,
        /// Authenticated user.
        user: String,
        /// Codec names this connection uses, e.g. `["pcmu","pcma"]`, or `["opus","pcmu","pcma"]`
        /// when the client offered Opus.
        codecs: Vec<String>,
        /// The `codec` byte of each of `codecs` in binary frames, e.g. `{"opus":111,"pcmu":0}`
        /// (absent from servers that predate it: G.711's static numbers).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        payload_types: BTreeMap<String, u8>,
        /// Server name and version.
        server: String,
    },
    /// Our outgoing call got this id.
    Calling {
        /// Call id.
        call: CallId,
        /// Target as dialled.
        target: String,
    },
    /// The far end is ringing (180) or sent early media (183).
    Ringing {
        /// Call id.
        call: CallId,
        /// SIP status.
        code: u16,
    },
    /// The call is up.
    Answered {
        /// Call id.
        call: CallId,
        /// The codec this client gets and sends on the call: `pcmu`, `pcma` or `opus`.
        codec: String,
    },
    /// An incoming call.
    Incoming {
        /// Call id.
        call: CallId,
        /// Caller: display name or URI.
        from: String,
        /// The codec this client will get: `pcmu`, `pcma` or `opus`.
        codec: String,
    },
    /// Another session of the same user answered.
    AnsweredElsewhere {
        /// Call id.
        call: CallId,
    },
    /// The call ended.
    Hangup {
        /// Call id.
        call: CallId,
        /// SIP status.
        code: u16,
        /// Human reason.
        reason: String,
    },
    /// A DTMF digit from the far end.
    Dtmf {
        /// Call id.
        call: CallId,
        /// One of `0-9*#A-D`.
        digit: String,
    },
    /// The call is on hold.
    Held {
        /// Call id.
        call: CallId,
        /// Who held it.
        by: HoldBy,
    },
    /// The call was resumed.
    Unheld {
        /// Call id.
        call: CallId,
        /// Who resumed it.
        by: HoldBy,
    },
    /// Call statistics.
    Stats {
        /// Call id.
        call: CallId,
        /// RTP packets received from the network.
        packets_in: u64,
        /// RTP packets sent to the network.
        packets_out: u64,
        /// Frames dropped (late, malformed, backed up).
        dropped: u64,
        /// Interarrival jitter in milliseconds.
        jitter_ms: u32,
        /// Call duration in milliseconds.
        duration_ms: u64,
        /// Codec on this client's leg (once answered).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        codec: Option<String>,
        /// Codec on the SIP leg (once answered).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sip_codec: Option<String>,
        /// Whether the call converts between the two (once answered).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transcoding: Option<bool>,
    },
    /// Answer to `ping`.
    Pong,
    /// Something went wrong.
    Error {
        /// Short code: `bad_token`, `not_allowed`, `unknown_call`, `bad_message`, …
        code: Cow<'static, str>,
        /// Human text.
        reason: Cow<'static, str>,
        /// The call concerned, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<CallId>,
    },
}

impl ServerMessage {
    /// An `error` message.
    pub fn error(
        code: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
        call: Option<CallId>,
    ) -> Self {
        ServerMessage::Error {
            code: code.into(),
            reason: reason.into(),
            call,
        }
    }
}

/// Why a signalling or audio message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// Text message over 16 KiB.
    #[error("message too big")]
    TooLong,
    /// Not UTF-8.
    #[error("message is not UTF-8")]
    NotUtf8,
    /// Not a JSON object (syntax error, or another JSON value).
    #[error("message is not a JSON object")]
    NotJson,
    /// A JSON object without a string `type`.
    #[error("message has no type")]
    MissingType,
    /// A `type` we do not know.
    #[error("unknown message type")]
    UnknownType,
    /// A known type with missing, mistyped or out-of-range fields.
    #[error("bad message fields")]
    BadFields,
    /// Audio frame shorter than its header.
    #[error("audio frame too short")]
    AudioTooShort,
    /// Audio frame version is not 1.
    #[error("bad audio frame version")]
    AudioVersion,
    /// Audio codec is not 0 (PCMU), 8 (PCMA) or a number the connection negotiated (Opus).
    #[error("unknown audio codec")]
    AudioCodec,
    /// Binary message over 2 KiB or payload over 1024 bytes.
    #[error("audio frame too big")]
    AudioTooLong,
}

impl SignalError {
    /// The close code this error calls for; `None`: answer with an `error` message and stay open.
    pub fn close_code(self) -> Option<u16> {
        match self {
            SignalError::TooLong | SignalError::AudioTooLong => Some(1009),
            SignalError::NotUtf8 | SignalError::NotJson => Some(1007),
            SignalError::UnknownType => Some(1008),
            SignalError::AudioTooShort | SignalError::AudioVersion | SignalError::AudioCodec => {
                Some(1003)
            }
            SignalError::MissingType | SignalError::BadFields => None,
        }
    }

    /// Human reason text (close reason or `error.reason`).
    pub fn reason(self) -> &'static str {
        match self {
            SignalError::TooLong => "message too big",
            SignalError::NotUtf8 => "message is not UTF-8",
            SignalError::NotJson => "message is not JSON",
            SignalError::MissingType => "message has no type",
            SignalError::UnknownType => "unknown message type",
            SignalError::BadFields => "bad message fields",
            SignalError::AudioTooShort => "audio frame too short",
            SignalError::AudioVersion => "bad audio frame version",
            SignalError::AudioCodec => "unknown audio codec",
            SignalError::AudioTooLong => "audio frame too big",
        }
    }

    /// The `error.code` to send for this error.
    pub fn error_code(self) -> &'static str {
        match self {
            SignalError::UnknownType => "unknown_type",
            _ => "bad_message",
        }
    }
}

#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
}

/// Decodes a client text message (see the module docs for how failures are sorted). String
/// fields are capped (`target` ≤ 64, `digits` ≤ 32 of `0-9*#A-D`, `token` ≤ 256), `version`
/// must be 1 and `reject.code` 486 or 603.
pub fn decode_client(data: &[u8]) -> Result<ClientMessage, SignalError> {
    if data.len() > MAX_TEXT_LEN {
        return Err(SignalError::TooLong);
    }
    let text = std::str::from_utf8(data).map_err(|_| SignalError::NotUtf8)?;
    let probe: TypeOnly<'_> = match serde_json::from_str(text) {
        Ok(p) => p,
        Err(e) if e.is_data() => return Err(SignalError::MissingType),
        Err(_) => return Err(SignalError::NotJson),
    };
    let Some(ty) = probe.ty else {
        return Err(SignalError::MissingType);
    };
    if !CLIENT_TYPES.contains(&ty.as_ref()) {
        return Err(SignalError::UnknownType);
    }
    let msg: ClientMessage = serde_json::from_str(text).map_err(|_| SignalError::BadFields)?;
    validate(&msg)?;
    Ok(msg)
}

fn validate(msg: &ClientMessage) -> Result<(), SignalError> {
    let ok = match msg {
        ClientMessage::Hello {
            version,
            token,
            codecs,
        } => {
            *version == PROTOCOL_VERSION
                && token
                    .as_ref()
                    .is_none_or(|t| t.len() <= MAX_TOKEN_LEN && !t.is_empty())
                && codecs.as_ref().is_none_or(|c| {
                    c.len() <= MAX_HELLO_CODECS
                        && c.iter()
                            .all(|n| !n.is_empty() && n.len() <= MAX_CODEC_NAME_LEN)
                })
        }
        ClientMessage::Call { target } => {
            !target.is_empty()
                && target.len() <= MAX_TARGET_LEN
                && !target.chars().any(char::is_control)
        }
        ClientMessage::Reject { code, .. } => code.is_none_or(|c| c == 486 || c == 603),
        ClientMessage::Dtmf { digits, .. } => {
            !digits.is_empty()
                && digits.len() <= MAX_DIGITS_LEN
                && digits
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'A'..=b'D'))
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(SignalError::BadFields)
    }
}

/// Encodes a server message as one JSON object.
pub fn encode_server(msg: &ServerMessage) -> String {
    // Serialization of these types cannot fail (no maps with non-string keys, no floats).
    serde_json::to_string(msg).unwrap_or_else(|_| {
        r#"{"type":"error","code":"server_error","reason":"encoding failed"}"#.to_owned()
    })
}

/// The header of a binary audio frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioFrameHeader {
    /// RTP static payload type (0 PCMU, 8 PCMA).
    pub codec: u8,
    /// Call id.
    pub call: CallId,
    /// Timestamp in the codec clock.
    pub timestamp: u32,
}

/// Parses a binary audio frame of a G.711-only connection:
/// `ver:8 (=1) codec:8 (0|8) call:16 timestamp:32 payload:(≤ 1024 bytes)`, big endian.
/// Returns the header and the payload's range within `data`.
pub fn parse_audio_frame(data: &[u8]) -> Result<(AudioFrameHeader, Range<usize>), SignalError> {
    parse_audio_frame_with(data, false)
}

/// Parses a binary audio frame like [`parse_audio_frame`]; `opus`: the connection negotiated
/// Opus, so [`codec::OPUS`] is a valid `codec` too (its payload is checked by
/// [`opus_packet_ticks`], not here).
pub fn parse_audio_frame_with(
    data: &[u8],
    opus: bool,
) -> Result<(AudioFrameHeader, Range<usize>), SignalError> {
    if data.len() > MAX_BINARY_LEN || data.len() > AUDIO_HEADER_LEN + MAX_AUDIO_PAYLOAD {
        return Err(SignalError::AudioTooLong);
    }
    let Some(&[ver, codec, c0, c1, t0, t1, t2, t3]) = data.first_chunk::<AUDIO_HEADER_LEN>() else {
        return Err(SignalError::AudioTooShort);
    };
    if ver != AUDIO_VERSION {
        return Err(SignalError::AudioVersion);
    }
    if codec != codec::PCMU && codec != codec::PCMA && !(opus && codec == codec::OPUS) {
        return Err(SignalError::AudioCodec);
    }
    Ok((
        AudioFrameHeader {
            codec,
            call: u16::from_be_bytes([c0, c1]),
            timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
        },
        AUDIO_HEADER_LEN..data.len(),
    ))
}

/// The duration in 48 kHz ticks of a well-formed Opus packet (RFC 6716 §3.1 TOC byte, §3.2
/// frame packing), or `None` for one that is not: empty, code 1 with an odd body, code 2 with
/// a first frame longer than the packet, code 3 with no frame count or 0 frames, or more than
/// 120 ms of audio.
///
/// `packet = toc:8 [count:8 (code 3)] frames…`; TOC = `config:5 s:1 c:2`.
pub fn opus_packet_ticks(packet: &[u8]) -> Option<u32> {
    let (&toc, rest) = packet.split_first()?;
    let config = toc >> 3;
    // Frame length in 48 kHz ticks per configuration (RFC 6716 table 2).
    let frame: u32 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames: u32 = match toc & 0x03 {
        0 => 1,
        1 if rest.len() % 2 == 0 => 2,
        1 => return None,
        2 => {
            // First frame's length: one byte (< 252) or two (§3.2.1).
            let (&b0, after) = rest.split_first()?;
            let (len, body) = if b0 < 252 {
                (usize::from(b0), after)
            } else {
                let (&b1, body) = after.split_first()?;
                (usize::from(b1) * 4 + usize::from(b0), body)
            };
            if len > body.len() {
                return None;
            }
            2
        }
        _ => {
            let (&count, _) = rest.split_first()?;
            let m = u32::from(count & 0x3F);
            if m == 0 {
                return None;
            }
            m
        }
    };
    let ticks = frame * frames;
    (ticks <= 5760).then_some(ticks)
}

/// Writes the 8-byte audio frame header.
pub fn write_audio_header(out: &mut [u8; AUDIO_HEADER_LEN], header: AudioFrameHeader) {
    out[0] = AUDIO_VERSION;
    out[1] = header.codec;
    out[2..4].copy_from_slice(&header.call.to_be_bytes());
    out[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_message_decodes() {
        let cases = [
            (
                r#"{"type":"hello","version":1,"token":"abc"}"#,
                ClientMessage::Hello {
                    version: 1,
                    token: Some("abc".into()),
                    codecs: None,
                },
            ),
            (
                r#"{"type":"hello","version":1}"#,
                ClientMessage::Hello {
                    version: 1,
                    token: None,
                    codecs: None,
                },
            ),
            (
                r#"{"type":"hello","version":1,"codecs":["opus","pcmu","x-future"]}"#,
                ClientMessage::Hello {
                    version: 1,
                    token: None,
                    codecs: Some(vec!["opus".into(), "pcmu".into(), "x-future".into()]),
                },
            ),
            (
                r#"{"type":"call","target":"echo"}"#,
                ClientMessage::Call {
                    target: "echo".into(),
                },
            ),
            (
                r#"{"type":"answer","call":3}"#,
                ClientMessage::Answer { call: 3 },
            ),
            (
                r#"{"type":"reject","call":3}"#,
                ClientMessage::Reject {
                    call: 3,
                    code: None,
                },
            ),
            (
                r#"{"type":"reject","call":3,"code":603}"#,
                ClientMessage::Reject {
                    call: 3,
                    code: Some(603),
                },
            ),
            (
                r#"{"type":"hangup","call":3}"#,
                ClientMessage::Hangup { call: 3 },
            ),
            (
                r#"{"type":"dtmf","call":3,"digits":"12*#AD"}"#,
                ClientMessage::Dtmf {
                    call: 3,
                    digits: "12*#AD".into(),
                },
            ),
            (
                r#"{"type":"hold","call":3}"#,
                ClientMessage::Hold { call: 3 },
            ),
            (
                r#"{"type":"unhold","call":3}"#,
                ClientMessage::Unhold { call: 3 },
            ),
            (r#"{"type":"stats"}"#, ClientMessage::Stats { call: None }),
            (
                r#"{"type":"stats","call":2}"#,
                ClientMessage::Stats { call: Some(2) },
            ),
            (r#"{"type":"ping"}"#, ClientMessage::Ping),
            (
                r#" {"call":3, "type":"hangup", "extra":[1,{"x":null}]} "#,
                ClientMessage::Hangup { call: 3 },
            ),
        ];
        for (json, want) in cases {
            let got = decode_client(json.as_bytes()).unwrap();
            assert_eq!(got.type_name(), want.type_name());
            assert_eq!(got, want, "{json}");
        }
    }

    #[test]
    fn client_messages_round_trip_through_serde() {
        let m = ClientMessage::Dtmf {
            call: 1,
            digits: "5".into(),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"type":"dtmf","call":1,"digits":"5"}"#);
        assert_eq!(decode_client(json.as_bytes()), Ok(m));
    }

    #[test]
    fn not_utf8_and_not_json_close_with_1007() {
        assert_eq!(
            decode_client(b"{\"type\":\"ping\xff\"}"),
            Err(SignalError::NotUtf8)
        );
        assert_eq!(decode_client(b"{\"type\":"), Err(SignalError::NotJson));
        assert_eq!(decode_client(b"hello"), Err(SignalError::NotJson));
        assert_eq!(decode_client(b""), Err(SignalError::NotJson));
        assert_eq!(SignalError::NotUtf8.close_code(), Some(1007));
        assert_eq!(SignalError::NotJson.close_code(), Some(1007));
    }

    #[test]
    fn unknown_type_closes_with_1008() {
        assert_eq!(
            decode_client(br#"{"type":"reboot"}"#),
            Err(SignalError::UnknownType)
        );
        assert_eq!(
            decode_client(br#"{"type":"Hello","version":1}"#),
            Err(SignalError::UnknownType)
        );
        assert_eq!(SignalError::UnknownType.close_code(), Some(1008));
        assert_eq!(SignalError::UnknownType.reason(), "unknown message type");
    }

    #[test]
    fn missing_type_or_non_object_is_a_bad_message_not_a_close() {
        for json in [r#"{"call":1}"#, r#"{"type":5}"#, "[1,2]", "42", "null"] {
            assert_eq!(
                decode_client(json.as_bytes()),
                Err(SignalError::MissingType),
                "{json}"
            );
        }
        assert_eq!(SignalError::MissingType.close_code(), None);
    }

    #[test]
    fn bad_fields_are_an_error_message_not_a_close() {
        let long_target = format!(r#"{{"type":"call","target":"{}"}}"#, "a".repeat(65));
        let long_token = format!(
            r#"{{"type":"hello","version":1,"token":"{}"}}"#,
            "t".repeat(257)
        );
        let long_digits = format!(
            r#"{{"type":"dtmf","call":1,"digits":"{}"}}"#,
            "1".repeat(33)
        );
        let bad: Vec<&str> = vec![
            r#"{"type":"call"}"#,
            r#"{"type":"call","target":""}"#,
            r#"{"type":"call","target":"a\nb"}"#,
            r#"{"type":"call","target":7}"#,
            r#"{"type":"answer","call":-1}"#,
            r#"{"type":"answer","call":70000}"#,
            r#"{"type":"answer","call":"3"}"#,
            r#"{"type":"hello"}"#,
            r#"{"type":"hello","version":2}"#,
            r#"{"type":"hello","version":1,"codecs":"opus"}"#,
            r#"{"type":"hello","version":1,"codecs":[""]}"#,
            r#"{"type":"hello","version":1,"codecs":["a","b","c","d","e","f","g","h","i"]}"#,
            r#"{"type":"hello","version":1,"codecs":["opus-with-a-very-long-name"]}"#,
            r#"{"type":"reject","call":1,"code":200}"#,
            r#"{"type":"dtmf","call":1,"digits":"12x"}"#,
            r#"{"type":"dtmf","call":1,"digits":""}"#,
            &long_target,
            &long_token,
            &long_digits,
        ];
        for json in bad {
            assert_eq!(
                decode_client(json.as_bytes()),
                Err(SignalError::BadFields),
                "{json}"
            );
        }
        assert_eq!(SignalError::BadFields.close_code(), None);
        assert_eq!(SignalError::BadFields.error_code(), "bad_message");
        let max = format!(r#"{{"type":"call","target":"{}"}}"#, "a".repeat(64));
        assert!(decode_client(max.as_bytes()).is_ok());
    }

    #[test]
    fn one_mebibyte_json_is_too_big_with_1009() {
        let mut big = br#"{"type":"call","target":""#.to_vec();
        big.resize(1024 * 1024, b'a');
        big.extend_from_slice(b"\"}");
        assert_eq!(decode_client(&big), Err(SignalError::TooLong));
        assert_eq!(SignalError::TooLong.close_code(), Some(1009));
    }

    #[test]
    fn deeply_nested_json_is_refused_without_overflow() {
        let mut s = String::from(r#"{"type":"ping","x":"#);
        s.push_str(&"[".repeat(8000));
        s.push_str(&"]".repeat(8000));
        s.push('}');
        assert!(decode_client(s.as_bytes()).is_err());
    }

    #[test]
    fn server_messages_encode_with_snake_case_types() {
        let cases = [
            (
                ServerMessage::AnsweredElsewhere { call: 2 },
                r#"{"type":"answered_elsewhere","call":2}"#,
            ),
            (ServerMessage::Pong, r#"{"type":"pong"}"#),
            (
                ServerMessage::Held {
                    call: 1,
                    by: HoldBy::Remote,
                },
                r#"{"type":"held","call":1,"by":"remote"}"#,
            ),
            (
                ServerMessage::error("bad_token", "token expired", None),
                r#"{"type":"error","code":"bad_token","reason":"token expired"}"#,
            ),
            (
                ServerMessage::error("unknown_call", "no such call", Some(9)),
                r#"{"type":"error","code":"unknown_call","reason":"no such call","call":9}"#,
            ),
            (
                ServerMessage::Welcome {
                    version: 1,
                    user: "alice".into(),
                    codecs: vec!["pcmu".into(), "pcma".into()],
                    payload_types: BTreeMap::new(),
                    server: "skybridge".into(),
                },
                r#"{"type":"welcome","version":1,"user":"alice","codecs":["pcmu","pcma"],"server":"skybridge"}"#,
            ),
            (
                ServerMessage::Welcome {
                    version: 1,
                    user: "alice".into(),
                    codecs: vec!["opus".into(), "pcmu".into()],
                    payload_types: [("opus".to_owned(), 111), ("pcmu".to_owned(), 0)].into(),
                    server: "skybridge".into(),
                },
                r#"{"type":"welcome","version":1,"user":"alice","codecs":["opus","pcmu"],"payload_types":{"opus":111,"pcmu":0},"server":"skybridge"}"#,
            ),
            (
                ServerMessage::Hangup {
                    call: 4,
                    code: 486,
                    reason: "Busy \"Here\"".into(),
                },
                r#"{"type":"hangup","call":4,"code":486,"reason":"Busy \"Here\""}"#,
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(encode_server(&msg), want);
            assert_eq!(serde_json::from_str::<ServerMessage>(want).unwrap(), msg);
        }
    }

    #[test]
    fn audio_frame_round_trips() {
        let mut frame = [0u8; AUDIO_HEADER_LEN + 160];
        let h = AudioFrameHeader {
            codec: codec::PCMA,
            call: 0x1234,
            timestamp: 0xDEAD_BEEF,
        };
        let (head, _) = frame.split_first_chunk_mut::<AUDIO_HEADER_LEN>().unwrap();
        write_audio_header(head, h);
        assert_eq!(&frame[..8], &[1, 8, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF]);
        assert_eq!(parse_audio_frame(&frame), Ok((h, 8..168)));
        assert_eq!(parse_audio_frame(&frame[..8]), Ok((h, 8..8)));
    }

    #[test]
    fn invalid_audio_frames_are_refused_with_their_close_code() {
        assert_eq!(
            parse_audio_frame(&[1, 0, 0]),
            Err(SignalError::AudioTooShort)
        );
        assert_eq!(
            parse_audio_frame(&[2, 0, 0, 1, 0, 0, 0, 0]),
            Err(SignalError::AudioVersion)
        );
        assert_eq!(
            parse_audio_frame(&[1, 9, 0, 1, 0, 0, 0, 0]),
            Err(SignalError::AudioCodec)
        );
        let mut big = vec![1u8, 0, 0, 1, 0, 0, 0, 0];
        big.resize(8 + 1025, 0);
        assert_eq!(parse_audio_frame(&big), Err(SignalError::AudioTooLong));
        big.truncate(8 + 1024);
        assert!(parse_audio_frame(&big).is_ok());
        assert_eq!(SignalError::AudioTooShort.close_code(), Some(1003));
        assert_eq!(SignalError::AudioTooLong.close_code(), Some(1009));
    }

    #[test]
    fn opus_frames_are_valid_only_where_opus_was_negotiated() {
        let frame = [1u8, codec::OPUS, 0, 7, 0, 0, 0x03, 0xC0, 0x78, 1, 2, 3];
        assert_eq!(parse_audio_frame(&frame), Err(SignalError::AudioCodec));
        assert_eq!(
            parse_audio_frame_with(&frame, false),
            Err(SignalError::AudioCodec)
        );
        let (h, range) = parse_audio_frame_with(&frame, true).unwrap();
        assert_eq!(
            h,
            AudioFrameHeader {
                codec: codec::OPUS,
                call: 7,
                timestamp: 960,
            }
        );
        assert_eq!(range, 8..12);
        let other = [1u8, 96, 0, 7, 0, 0, 0, 0];
        assert_eq!(
            parse_audio_frame_with(&other, true),
            Err(SignalError::AudioCodec),
            "only the announced number"
        );
        assert_eq!(codec::number("opus"), Some(codec::OPUS));
        assert_eq!(codec::number("g729"), None);
    }

    #[test]
    fn opus_packet_durations_follow_the_toc_and_malformed_packets_are_refused() {
        // config 9 (SILK WB 20 ms), 11 (60 ms) code 0; CELT FB 20 ms (config 31) code 0; hybrid 10 ms.
        assert_eq!(opus_packet_ticks(&[9 << 3, 0xAA]), Some(960));
        assert_eq!(opus_packet_ticks(&[11 << 3, 0xAA]), Some(2880));
        assert_eq!(opus_packet_ticks(&[31 << 3, 1, 2, 3]), Some(960));
        assert_eq!(opus_packet_ticks(&[12 << 3]), Some(480));
        // Code 1: two equal frames, the body must split evenly.
        assert_eq!(opus_packet_ticks(&[(31 << 3) | 1, 1, 2]), Some(1920));
        assert_eq!(opus_packet_ticks(&[(31 << 3) | 1, 1, 2, 3]), None);
        // Code 2: the first frame's length must fit.
        assert_eq!(opus_packet_ticks(&[(31 << 3) | 2, 2, 9, 9, 9]), Some(1920));
        assert_eq!(opus_packet_ticks(&[(31 << 3) | 2, 5, 9]), None);
        assert_eq!(opus_packet_ticks(&[(31 << 3) | 2, 252]), None);
        // Code 3: a count of 1..=48 frames, at most 120 ms.
        assert_eq!(opus_packet_ticks(&[(31 << 3) | 3, 3, 0, 0, 0]), Some(2880));
        assert_eq!(opus_packet_ticks(&[(31 << 3) | 3, 0]), None);
        assert_eq!(opus_packet_ticks(&[(31 << 3) | 3]), None);
        assert_eq!(opus_packet_ticks(&[(3 << 3) | 3, 3]), None, "180 ms");
        assert_eq!(opus_packet_ticks(&[]), None);
    }
}
