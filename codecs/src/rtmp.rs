//! RTMP chunk stream (RTMP 1.0 spec, section 5.3): a bounded, zero-copy reassembler for inbound
//! chunks and a writer for outbound messages.
//!
//! Chunk grammar (5.3.1):
//! `chunk = basic-header message-header [extended-timestamp] chunk-data`
//! - basic header: `fmt(2 bits) csid(6 bits)`; csid 0 → one more byte (`64 + b1`),
//!   csid 1 → two more bytes (`64 + b1 + 256 * b2`); csid range 2..=65599.
//! - message header by fmt: 0 → `timestamp(u24) length(u24) type(u8) stream-id(u32 LE)`,
//!   1 → `delta(u24) length(u24) type(u8)`, 2 → `delta(u24)`, 3 → nothing.
//! - extended timestamp `u32` when the 24-bit field is `0xFFFFFF`; also present on fmt-3 chunks
//!   of a chunk stream whose last header carried one (as ffmpeg, librtmp and rml_rtmp write it).
//! - chunk data: `min(chunk size, bytes left in the message)` bytes.
//!
//! [`ChunkReader`] applies Set Chunk Size (type 1) and Abort (type 2) itself and still returns
//! them. Messages that arrive in a single chunk are returned as a slice of the input buffer
//! (`split_to(n).freeze()`, no copy); multi-chunk messages are collected in a buffer sized from
//! the (checked) declared length. Declared lengths, chunk streams and reassembly bytes are capped
//! by [`ChunkLimits`] (HOSTILE-INPUTS row 1).

use bytes::BufMut;
/// Re-exported so users (the fuzz crate, drivers) need no direct `bytes` dependency.
pub use bytes::{Bytes, BytesMut};

/// RTMP message type ids (spec sections 5.4, 6.2, 7.1).
pub mod message_type {
    /// Set Chunk Size (protocol control).
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message (protocol control).
    pub const ABORT: u8 = 2;
    /// Acknowledgement (protocol control).
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size (protocol control).
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth (protocol control).
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video data.
    pub const VIDEO: u8 = 9;
    /// AMF3 data message.
    pub const DATA_AMF3: u8 = 15;
    /// AMF3 shared object message.
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// AMF3 command message.
    pub const COMMAND_AMF3: u8 = 17;
    /// AMF0 data message (`@setDataFrame`, `onMetaData`).
    pub const DATA_AMF0: u8 = 18;
    /// AMF0 shared object message.
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// AMF0 command message.
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message.
    pub const AGGREGATE: u8 = 22;
}

/// Chunk size every RTMP peer starts with (5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size honoured: larger Set Chunk Size values are clamped to it.
pub const MAX_CHUNK_SIZE: u32 = 0x00FF_FFFF;
/// Largest chunk stream id expressible in a basic header.
pub const MAX_CSID: u32 = 65_599;
/// Longest possible chunk header (3-byte basic header + 11 + 4).
pub const MAX_CHUNK_HEADER_LEN: usize = 18;
const EXTENDED_TIMESTAMP: u32 = 0x00FF_FFFF;

/// Limits on what a peer can make the reader hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Largest declared message length accepted (checked before anything is allocated).
    pub max_message_len: u32,
    /// Most distinct chunk stream ids a connection may use.
    pub max_chunk_streams: usize,
    /// Most bytes reserved for partially received messages, over all chunk streams.
    pub max_reassembly_bytes: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_message_len: 256 * 1024,
            max_chunk_streams: 64,
            max_reassembly_bytes: 1024 * 1024,
        }
    }
}

/// Why the chunk stream cannot continue; the connection should be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Set Chunk Size of 0 or with the top bit set.
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
    /// A header declared a message longer than the limit.
    #[error("declared message length {0} exceeds the limit")]
    MessageTooLong(u32),
    /// More chunk stream ids than the limit.
    #[error("too many chunk streams")]
    TooManyChunkStreams,
    /// Partially received messages would exceed the per-connection reassembly cap.
    #[error("reassembly buffer limit exceeded")]
    ReassemblyLimit,
    /// A fmt 1/2/3 chunk on a chunk stream that never had a fmt 0 header.
    #[error("chunk stream {0} has no previous header")]
    NoPreviousHeader(u32),
    /// A fmt 0/1/2 header arrived while a message on that chunk stream was incomplete.
    #[error("new message header on chunk stream {0} before the previous message completed")]
    UnfinishedMessage(u32),
    /// A protocol control message with a payload too short for its type.
    #[error("malformed protocol control message type {0}")]
    MalformedControl(u8),
}

/// A complete RTMP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtmpMessage {
    /// Chunk stream id it arrived on.
    pub csid: u32,
    /// Message type id (see [`message_type`]).
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// Absolute timestamp in milliseconds (wrapping).
    pub timestamp: u32,
    /// Message payload.
    pub payload: Bytes,
}

#[derive(Debug)]
struct StreamState {
    csid: u32,
    /// Absolute timestamp of the current/last message.
    timestamp: u32,
    /// Raw timestamp field of the last fmt 0/1/2 header (absolute for fmt 0, else a delta).
    ts_field: u32,
    /// Whether the last fmt 0/1/2 header carried an extended timestamp.
    extended: bool,
    len: u32,
    type_id: u8,
    stream_id: u32,
    /// Bytes collected for an incomplete message.
    partial: Option<BytesMut>,
}

/// Incremental reader of an inbound chunk stream. See the module docs.
#[derive(Debug)]
pub struct ChunkReader {
    limits: ChunkLimits,
    chunk_size: u32,
    streams: Vec<StreamState>,
    reassembly_bytes: usize,
}

/// Outcome of consuming (or not) one chunk.
enum Step {
    NeedMore,
    Progress,
    Message(RtmpMessage),
}

/// A parsed chunk header, not yet applied to the state.
struct Header {
    fmt: u8,
    csid: u32,
    header_len: usize,
    ts_field: Option<u32>,
    extended: bool,
    len: Option<u32>,
    type_id: Option<u8>,
    stream_id: Option<u32>,
}

fn be24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(u32::from(s[0]) << 16 | u32::from(s[1]) << 8 | u32::from(s[2]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

impl ChunkReader {
    /// A reader with the initial chunk size of 128.
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkReader {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            reassembly_bytes: 0,
        }
    }

    /// Current inbound chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Bytes currently reserved for incomplete messages.
    pub fn reassembly_bytes(&self) -> usize {
        self.reassembly_bytes
    }

    /// The limits in force.
    pub fn limits(&self) -> ChunkLimits {
        self.limits
    }

    /// Consumes whole chunks from the front of `buf` until a message completes.
    ///
    /// Returns `Ok(None)` when more input is needed (a partial chunk is left in `buf`
    /// untouched). The caller's buffer must be able to hold one whole chunk: at most
    /// `max_message_len + MAX_CHUNK_HEADER_LEN` bytes.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<RtmpMessage>, ChunkError> {
        loop {
            let Some(header) = self.parse_header(buf)? else {
                return Ok(None);
            };
            match self.take_chunk(header, buf)? {
                Step::NeedMore => return Ok(None),
                Step::Progress => {}
                Step::Message(msg) => {
                    self.apply_control(&msg)?;
                    return Ok(Some(msg));
                }
            }
        }
    }

    fn stream_index(&self, csid: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.csid == csid)
    }

    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, ChunkError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3F {
            0 => match buf.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(None),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + 256 * u32::from(b2), 3),
                _ => return Ok(None),
            },
            n => (u32::from(n), 1),
        };
        let state = self.stream_index(csid).and_then(|i| self.streams.get(i));
        if fmt != 0 && state.is_none() {
            return Err(ChunkError::NoPreviousHeader(csid));
        }
        let mut h = Header {
            fmt,
            csid,
            header_len: 0,
            ts_field: None,
            extended: false,
            len: None,
            type_id: None,
            stream_id: None,
        };
        let need = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        if buf.len() < pos + need {
            return Ok(None);
        }
        if fmt <= 2 {
            let ts = be24(buf, pos).unwrap_or(0);
            h.extended = ts == EXTENDED_TIMESTAMP;
            h.ts_field = Some(ts);
        }
        if fmt <= 1 {
            h.len = be24(buf, pos + 3);
            h.type_id = buf.get(pos + 6).copied();
        }
        if fmt == 0 {
            h.stream_id = buf
                .get(pos + 7..pos + 11)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_le_bytes);
        }
        pos += need;
        if fmt == 3 {
            h.extended = state.is_some_and(|s| s.extended);
        }
        if h.extended {
            let Some(ext) = be32(buf, pos) else {
                return Ok(None);
            };
            pos += 4;
            h.ts_field = Some(ext);
        }
        h.header_len = pos;
        Ok(Some(h))
    }

    /// Applies one chunk whose header is `h` if the whole chunk is in `buf`.
    fn take_chunk(&mut self, h: Header, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        let idx = self.stream_index(h.csid);
        let continuing = idx
            .and_then(|i| self.streams.get(i))
            .is_some_and(|s| s.partial.is_some());

        if continuing {
            if h.fmt != 3 {
                return Err(ChunkError::UnfinishedMessage(h.csid));
            }
            let chunk_size = self.chunk_size as usize;
            let Some(st) = idx.and_then(|i| self.streams.get_mut(i)) else {
                return Err(ChunkError::NoPreviousHeader(h.csid));
            };
            let Some(partial) = st.partial.as_mut() else {
                return Err(ChunkError::NoPreviousHeader(h.csid));
            };
            let remaining = (st.len as usize).saturating_sub(partial.len());
            let n = remaining.min(chunk_size);
            let Some(data) = buf.get(h.header_len..h.header_len + n) else {
                return Ok(Step::NeedMore);
            };
            partial.extend_from_slice(data);
            let _ = buf.split_to(h.header_len + n);
            if n < remaining {
                return Ok(Step::Progress);
            }
            let payload = st.partial.take().map(BytesMut::freeze).unwrap_or_default();
            self.reassembly_bytes = self.reassembly_bytes.saturating_sub(st.len as usize);
            return Ok(Step::Message(RtmpMessage {
                csid: st.csid,
                type_id: st.type_id,
                stream_id: st.stream_id,
                timestamp: st.timestamp,
                payload,
            }));
        }

        // A new message: work out its header from this chunk and the previous one.
        let prev = idx.and_then(|i| self.streams.get(i));
        let (timestamp, ts_field, extended) = match (h.fmt, prev) {
            (0, _) => {
                let f = h.ts_field.unwrap_or(0);
                (f, f, h.extended)
            }
            (1 | 2, Some(p)) => {
                let f = h.ts_field.unwrap_or(0);
                (p.timestamp.wrapping_add(f), f, h.extended)
            }
            (_, Some(p)) => {
                let f = if p.extended {
                    h.ts_field.unwrap_or(p.ts_field)
                } else {
                    p.ts_field
                };
                (p.timestamp.wrapping_add(f), f, p.extended)
            }
            (_, None) => return Err(ChunkError::NoPreviousHeader(h.csid)),
        };
        let len = h.len.or(prev.map(|p| p.len)).unwrap_or(0);
        let type_id = h.type_id.or(prev.map(|p| p.type_id)).unwrap_or(0);
        let stream_id = h.stream_id.or(prev.map(|p| p.stream_id)).unwrap_or(0);

        if len > self.limits.max_message_len {
            return Err(ChunkError::MessageTooLong(len));
        }
        if idx.is_none() && self.streams.len() >= self.limits.max_chunk_streams {
            return Err(ChunkError::TooManyChunkStreams);
        }
        let n = (len as usize).min(self.chunk_size as usize);
        let single = n == len as usize;
        if !single
            && self.reassembly_bytes.saturating_add(len as usize) > self.limits.max_reassembly_bytes
        {
            return Err(ChunkError::ReassemblyLimit);
        }
        if buf.len() < h.header_len + n {
            return Ok(Step::NeedMore);
        }

        // The whole chunk is here: commit.
        let _ = buf.split_to(h.header_len);
        let state = StreamState {
            csid: h.csid,
            timestamp,
            ts_field,
            extended,
            len,
            type_id,
            stream_id,
            partial: None,
        };
        let slot = match idx {
            Some(i) => {
                if let Some(st) = self.streams.get_mut(i) {
                    *st = state;
                }
                i
            }
            None => {
                self.streams.push(state);
                self.streams.len() - 1
            }
        };
        let Some(st) = self.streams.get_mut(slot) else {
            return Err(ChunkError::NoPreviousHeader(h.csid));
        };
        if single {
            return Ok(Step::Message(RtmpMessage {
                csid: h.csid,
                type_id,
                stream_id,
                timestamp,
                payload: buf.split_to(n).freeze(),
            }));
        }
        let mut partial = BytesMut::with_capacity(len as usize);
        partial.extend_from_slice(&buf.split_to(n));
        st.partial = Some(partial);
        self.reassembly_bytes += len as usize;
        Ok(Step::Progress)
    }

    fn apply_control(&mut self, msg: &RtmpMessage) -> Result<(), ChunkError> {
        match msg.type_id {
            message_type::SET_CHUNK_SIZE => {
                let v = be32(&msg.payload, 0)
                    .ok_or(ChunkError::MalformedControl(message_type::SET_CHUNK_SIZE))?;
                if v == 0 || v & 0x8000_0000 != 0 {
                    return Err(ChunkError::InvalidChunkSize(v));
                }
                self.chunk_size = v.min(MAX_CHUNK_SIZE);
            }
            message_type::ABORT => {
                let csid = be32(&msg.payload, 0)
                    .ok_or(ChunkError::MalformedControl(message_type::ABORT))?;
                if let Some(st) = self.streams.iter_mut().find(|s| s.csid == csid) {
                    if st.partial.take().is_some() {
                        self.reassembly_bytes =
                            self.reassembly_bytes.saturating_sub(st.len as usize);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Header fields of an outbound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboundHeader {
    /// Chunk stream id (2..=65599; out-of-range values are clamped).
    pub csid: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// Absolute timestamp in milliseconds.
    pub timestamp: u32,
}

#[derive(Debug)]
struct OutState {
    csid: u32,
    timestamp: u32,
    ts_field: u32,
    field_is_delta: bool,
    len: u32,
    type_id: u8,
    stream_id: u32,
}

/// Serializer of outbound messages into chunks, with header compression (fmt 1/2/3).
#[derive(Debug)]
pub struct ChunkWriter {
    chunk_size: u32,
    streams: Vec<OutState>,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkWriter {
    /// A writer using the initial chunk size of 128.
    pub fn new() -> Self {
        ChunkWriter {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
        }
    }

    /// Current outbound chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Writes a Set Chunk Size message (csid 2) and uses `size` (clamped to 1..=0xFFFFFF) from now on.
    pub fn set_chunk_size(&mut self, size: u32, out: &mut BytesMut) {
        let size = size.clamp(1, MAX_CHUNK_SIZE);
        let header = OutboundHeader {
            csid: 2,
            type_id: message_type::SET_CHUNK_SIZE,
            stream_id: 0,
            timestamp: 0,
        };
        self.write(out, header, &[&size.to_be_bytes()]);
        self.chunk_size = size;
    }

    /// Appends `parts` (concatenated, at most 0xFFFFFF bytes; any excess is dropped) as one
    /// message to `out`, split into chunks.
    pub fn write(&mut self, out: &mut BytesMut, header: OutboundHeader, parts: &[&[u8]]) {
        let csid = header.csid.clamp(2, MAX_CSID);
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let len = u32::try_from(total).unwrap_or(u32::MAX).min(0x00FF_FFFF);
        let idx = self.streams.iter().position(|s| s.csid == csid);
        let prev = idx.and_then(|i| self.streams.get(i));

        let (fmt, ts_field, field_is_delta) = match prev {
            Some(p) if p.stream_id == header.stream_id && header.timestamp >= p.timestamp => {
                let delta = header.timestamp - p.timestamp;
                if p.len != len || p.type_id != header.type_id {
                    (1, delta, true)
                } else if p.field_is_delta && p.ts_field == delta && delta < EXTENDED_TIMESTAMP {
                    (3, delta, true)
                } else {
                    (2, delta, true)
                }
            }
            _ => (0, header.timestamp, false),
        };
        let extended = ts_field >= EXTENDED_TIMESTAMP;
        let state = OutState {
            csid,
            timestamp: header.timestamp,
            ts_field,
            field_is_delta,
            len,
            type_id: header.type_id,
            stream_id: header.stream_id,
        };
        match idx.and_then(|i| self.streams.get_mut(i)) {
            Some(s) => *s = state,
            None => self.streams.push(state),
        }

        out.reserve(total + MAX_CHUNK_HEADER_LEN + total / self.chunk_size.max(1) as usize * 5);
        write_basic_header(out, fmt, csid);
        if fmt <= 2 {
            put_u24(out, ts_field.min(EXTENDED_TIMESTAMP));
        }
        if fmt <= 1 {
            put_u24(out, len);
            out.put_u8(header.type_id);
        }
        if fmt == 0 {
            out.put_u32_le(header.stream_id);
        }
        if extended {
            out.put_u32(ts_field);
        }

        let chunk_size = self.chunk_size.max(1) as usize;
        let mut left = len as usize;
        let mut in_chunk = 0usize;
        for part in parts {
            let mut part: &[u8] = part;
            while !part.is_empty() && left > 0 {
                if in_chunk == chunk_size {
                    write_basic_header(out, 3, csid);
                    if extended {
                        out.put_u32(ts_field);
                    }
                    in_chunk = 0;
                }
                let n = part.len().min(chunk_size - in_chunk).min(left);
                let (now, rest) = part.split_at(n);
                out.put_slice(now);
                part = rest;
                in_chunk += n;
                left -= n;
            }
        }
    }
}

fn put_u24(out: &mut BytesMut, v: u32) {
    out.put_slice(&v.to_be_bytes()[1..]);
}

fn write_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    let f = fmt << 6;
    match csid {
        2..=63 => out.put_u8(f | csid as u8),
        64..=319 => {
            out.put_u8(f);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let v = csid.saturating_sub(64);
            out.put_u8(f | 1);
            out.put_u8((v & 0xFF) as u8);
            out.put_u8((v >> 8) as u8);
        }
    }
}

#[cfg(test)]
mod tests;
