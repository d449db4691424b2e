#![allow(clippy::unwrap_used)] // tests may unwrap

use super::*;
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::messages::MessagePayload;
use rml_rtmp::time::RtmpTimestamp;

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn rml_serialize(
    ser: &mut ChunkSerializer,
    ts: u32,
    sid: u32,
    type_id: u8,
    data: &[u8],
) -> Vec<u8> {
    let msg = MessagePayload {
        timestamp: RtmpTimestamp::new(ts),
        message_stream_id: sid,
        type_id,
        data: Bytes::copy_from_slice(data),
    };
    ser.serialize(&msg, false, false).unwrap().bytes
}

/// Feeds `wire` in pieces of `step` bytes, collecting every message.
fn read_all(reader: &mut ChunkReader, wire: &[u8], step: usize) -> Vec<RtmpMessage> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in wire.chunks(step) {
        buf.extend_from_slice(piece);
        while let Some(m) = reader.read(&mut buf).unwrap() {
            out.push(m);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

#[test]
fn reads_rml_serialized_messages_at_several_chunk_sizes_and_splits() {
    for chunk_size in [1u32, 128, 4096, 60_000] {
        let mut ser = ChunkSerializer::new();
        let mut wire = ser
            .set_max_chunk_size(chunk_size, RtmpTimestamp::new(0))
            .unwrap()
            .bytes;
        let mut expected = Vec::new();
        for (i, len) in [1usize, 127, 128, 129, 161, 5000, 200_000]
            .into_iter()
            .enumerate()
        {
            let data = payload(len, i as u8);
            let ts = 20 * i as u32;
            wire.extend(rml_serialize(&mut ser, ts, 1, 8, &data));
            expected.push((ts, data));
        }
        for step in [1usize, 7, 4096, wire.len()] {
            if chunk_size == 1 && step == 1 {
                continue; // slow and adds nothing over step 7
            }
            let mut reader = ChunkReader::new(ChunkLimits::default());
            let msgs = read_all(&mut reader, &wire, step);
            assert_eq!(msgs.len(), expected.len() + 1);
            assert_eq!(msgs[0].type_id, message_type::SET_CHUNK_SIZE);
            assert_eq!(reader.chunk_size(), chunk_size);
            for (m, (ts, data)) in msgs[1..].iter().zip(&expected) {
                assert_eq!(m.type_id, 8);
                assert_eq!(m.stream_id, 1);
                assert_eq!(m.timestamp, *ts, "chunk size {chunk_size} step {step}");
                assert_eq!(&m.payload[..], &data[..]);
            }
            assert_eq!(reader.reassembly_bytes(), 0);
        }
    }
}

#[test]
fn timestamp_deltas_of_compressed_headers_give_absolute_timestamps() {
    let mut ser = ChunkSerializer::new();
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    // Constant frame size and interval: rml uses fmt 0, then 1/2/3 headers.
    for i in 0..50u32 {
        let ts = 1000 + i * 20 + if i > 30 { 3 } else { 0 };
        let data = payload(100, i as u8);
        wire.extend(rml_serialize(&mut ser, ts, 1, 8, &data));
        expected.push(ts);
    }
    // The compressed stream is much smaller than 50 full headers.
    assert!(wire.len() < 50 * (100 + 12));
    let mut reader = ChunkReader::new(ChunkLimits::default());
    let got: Vec<u32> = read_all(&mut reader, &wire, 3)
        .iter()
        .map(|m| m.timestamp)
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn extended_timestamps_including_fmt3_continuations() {
    let mut ser = ChunkSerializer::new();
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for (i, ts) in [
        0x00FF_FFFEu32,
        0x00FF_FFFF,
        0x0100_0000,
        0x0200_0000,
        0x0200_0014,
    ]
    .into_iter()
    .enumerate()
    {
        let data = payload(300, i as u8); // 3 chunks at chunk size 128
        wire.extend(rml_serialize(&mut ser, ts, 1, 9, &data));
        expected.push((ts, data));
    }
    let mut reader = ChunkReader::new(ChunkLimits::default());
    let msgs = read_all(&mut reader, &wire, 5);
    assert_eq!(msgs.len(), expected.len());
    for (m, (ts, data)) in msgs.iter().zip(&expected) {
        assert_eq!(m.timestamp, *ts);
        assert_eq!(&m.payload[..], &data[..]);
    }
}

/// Splits one rml-serialized message (default chunk size 128, timestamp < 0xFFFFFF) into chunks.
fn split_chunks(wire: &[u8], len: usize) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let first = 12 + len.min(128);
    chunks.push(wire[..first].to_vec());
    let mut pos = first;
    let mut left = len - len.min(128);
    while left > 0 {
        let n = left.min(128);
        chunks.push(wire[pos..pos + 1 + n].to_vec());
        pos += 1 + n;
        left -= n;
    }
    assert_eq!(pos, wire.len());
    chunks
}

#[test]
fn interleaved_chunk_streams_are_reassembled_separately() {
    let mut ser = ChunkSerializer::new();
    let audio = payload(1000, 1);
    let video = payload(700, 2);
    let a = split_chunks(&rml_serialize(&mut ser, 40, 1, 8, &audio), audio.len());
    let v = split_chunks(&rml_serialize(&mut ser, 50, 1, 9, &video), video.len());
    let mut wire = Vec::new();
    for i in 0..a.len().max(v.len()) {
        if let Some(c) = a.get(i) {
            wire.extend_from_slice(c);
        }
        if let Some(c) = v.get(i) {
            wire.extend_from_slice(c);
        }
    }
    let mut reader = ChunkReader::new(ChunkLimits::default());
    let msgs = read_all(&mut reader, &wire, 11);
    assert_eq!(msgs.len(), 2);
    let (m_video, m_audio) = (&msgs[0], &msgs[1]); // video has fewer chunks: completes first
    assert_eq!((m_video.type_id, m_video.timestamp), (9, 50));
    assert_eq!(&m_video.payload[..], &video[..]);
    assert_eq!((m_audio.type_id, m_audio.timestamp), (8, 40));
    assert_eq!(&m_audio.payload[..], &audio[..]);
}

#[test]
fn single_chunk_message_payload_is_a_slice_of_the_input_buffer() {
    let mut ser = ChunkSerializer::new();
    let data = payload(100, 9);
    let wire = rml_serialize(&mut ser, 0, 1, 8, &data);
    let mut buf = BytesMut::from(&wire[..]);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let mut reader = ChunkReader::new(ChunkLimits::default());
    let m = reader.read(&mut buf).unwrap().unwrap();
    assert_eq!(&m.payload[..], &data[..]);
    assert!(
        range.contains(&(m.payload.as_ptr() as usize)),
        "payload was copied"
    );
    assert_eq!(reader.reassembly_bytes(), 0);
}

#[test]
fn two_and_three_byte_chunk_stream_ids() {
    let mut w = ChunkWriter::new();
    let mut wire = BytesMut::new();
    for (i, csid) in [2u32, 63, 64, 319, 320, 65_599].into_iter().enumerate() {
        let h = OutboundHeader {
            csid,
            type_id: 20,
            stream_id: 0,
            timestamp: i as u32,
        };
        w.write(&mut wire, h, &[&payload(200, i as u8)]);
    }
    let mut reader = ChunkReader::new(ChunkLimits::default());
    let msgs = read_all(&mut reader, &wire, 1);
    let csids: Vec<u32> = msgs.iter().map(|m| m.csid).collect();
    assert_eq!(csids, [2, 63, 64, 319, 320, 65_599]);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(&m.payload[..], &payload(200, i as u8)[..]);
    }
}

#[test]
fn set_chunk_size_huge_is_clamped_and_16_mib_message_is_rejected_before_allocating() {
    let mut wire = BytesMut::new();
    // SetChunkSize 0x7FFFFFFF on csid 2.
    wire.extend_from_slice(&[
        0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF,
    ]);
    let mut reader = ChunkReader::new(ChunkLimits::default());
    let m = reader.read(&mut wire).unwrap().unwrap();
    assert_eq!(m.type_id, message_type::SET_CHUNK_SIZE);
    assert_eq!(reader.chunk_size(), MAX_CHUNK_SIZE);
    for csid in [3u32, 100, 65_599] {
        let mut r = ChunkReader::new(ChunkLimits::default());
        let mut b = BytesMut::new();
        b.extend_from_slice(&[
            0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF,
        ]);
        r.read(&mut b).unwrap();
        let mut hdr = BytesMut::new();
        write_basic_header(&mut hdr, 0, csid);
        b.extend_from_slice(&hdr);
        b.extend_from_slice(&[0, 0, 0, 0xFF, 0xFF, 0xFF, 8, 1, 0, 0, 0]); // 16 MiB - 1
        b.extend_from_slice(&[0xAB; 100]);
        assert_eq!(r.read(&mut b), Err(ChunkError::MessageTooLong(0x00FF_FFFF)));
        assert_eq!(r.reassembly_bytes(), 0);
    }
}

#[test]
fn many_chunk_streams_with_large_partial_messages_stay_under_the_reassembly_cap() {
    let limits = ChunkLimits::default();
    let mut reader = ChunkReader::new(limits);
    let mut result = Ok(None);
    let mut buf = BytesMut::new();
    for csid in 3..=65_599u32 {
        let mut hdr = BytesMut::new();
        write_basic_header(&mut hdr, 0, csid);
        buf.extend_from_slice(&hdr);
        // Declares 200 KiB (under the message cap), sends one 128-byte chunk of it.
        buf.extend_from_slice(&[0, 0, 0, 0x03, 0x20, 0x00, 8, 1, 0, 0, 0]);
        buf.extend_from_slice(&[0xCD; 128]);
        result = reader.read(&mut buf);
        assert!(reader.reassembly_bytes() <= limits.max_reassembly_bytes);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(ChunkError::ReassemblyLimit));
}

#[test]
fn too_many_chunk_streams_is_an_error() {
    let mut reader = ChunkReader::new(ChunkLimits::default());
    let mut w = ChunkWriter::new();
    let mut buf = BytesMut::new();
    for csid in 3..3 + 65 {
        let h = OutboundHeader {
            csid,
            type_id: 8,
            stream_id: 1,
            timestamp: 0,
        };
        w.write(&mut buf, h, &[&[1, 2, 3]]);
    }
    let mut n = 0;
    let err = loop {
        match reader.read(&mut buf) {
            Ok(Some(_)) => n += 1,
            Ok(None) => panic!("accepted all"),
            Err(e) => break e,
        }
    };
    assert_eq!(n, 64);
    assert_eq!(err, ChunkError::TooManyChunkStreams);
}

#[test]
fn set_chunk_size_zero_or_top_bit_is_an_error() {
    for v in [0u32, 0x8000_0000, 0xFFFF_FFFF] {
        let mut buf = BytesMut::from(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0][..]);
        buf.extend_from_slice(&v.to_be_bytes());
        let mut reader = ChunkReader::new(ChunkLimits::default());
        assert_eq!(reader.read(&mut buf), Err(ChunkError::InvalidChunkSize(v)));
    }
    let mut short = BytesMut::from(&[0x02, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 1][..]);
    let mut reader = ChunkReader::new(ChunkLimits::default());
    assert_eq!(
        reader.read(&mut short),
        Err(ChunkError::MalformedControl(message_type::SET_CHUNK_SIZE))
    );
}

#[test]
fn compressed_header_without_a_previous_header_is_an_error() {
    for first in [0x43u8, 0x83, 0xC3] {
        let mut buf = BytesMut::from(&[first, 0, 0, 0, 0, 0, 1, 8, 0][..]);
        let mut reader = ChunkReader::new(ChunkLimits::default());
        assert_eq!(reader.read(&mut buf), Err(ChunkError::NoPreviousHeader(3)));
    }
}

#[test]
fn new_header_while_a_message_is_incomplete_is_an_error() {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0x03, 0, 0, 0, 0, 1, 0, 8, 1, 0, 0, 0]); // 256-byte message
    buf.extend_from_slice(&[0; 128]);
    buf.extend_from_slice(&[0x03, 0, 0, 0, 0, 0, 4, 8, 1, 0, 0, 0, 1, 2, 3, 4]);
    let mut reader = ChunkReader::new(ChunkLimits::default());
    assert_eq!(reader.read(&mut buf), Err(ChunkError::UnfinishedMessage(3)));
}

#[test]
fn abort_discards_the_partial_message_and_frees_its_reservation() {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0x03, 0, 0, 0, 0, 1, 0, 8, 1, 0, 0, 0]); // 256-byte message
    buf.extend_from_slice(&[0; 128]);
    let mut reader = ChunkReader::new(ChunkLimits::default());
    assert_eq!(reader.read(&mut buf), Ok(None));
    assert_eq!(reader.reassembly_bytes(), 256);
    // Abort csid 3, then a fresh fmt-0 message on csid 3 is accepted.
    buf.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 3]);
    let m = reader.read(&mut buf).unwrap().unwrap();
    assert_eq!(m.type_id, message_type::ABORT);
    assert_eq!(reader.reassembly_bytes(), 0);
    buf.extend_from_slice(&[0x03, 0, 0, 5, 0, 0, 2, 8, 1, 0, 0, 0, 7, 7]);
    let m = reader.read(&mut buf).unwrap().unwrap();
    assert_eq!((m.timestamp, &m.payload[..]), (5, &[7u8, 7][..]));
}

#[test]
fn incomplete_chunk_consumes_nothing() {
    let mut buf = BytesMut::from(&[0x03, 0, 0, 0, 0, 0, 10, 8, 1, 0, 0, 0, 1, 2, 3][..]);
    let mut reader = ChunkReader::new(ChunkLimits::default());
    assert_eq!(reader.read(&mut buf), Ok(None));
    assert_eq!(buf.len(), 15);
}

#[test]
fn writer_output_is_read_by_rml_and_by_our_reader() {
    let mut w = ChunkWriter::new();
    let mut wire = BytesMut::new();
    w.set_chunk_size(100, &mut wire);
    let mut expected = Vec::new();
    let stamps = [
        0u32,
        20,
        40,
        60,
        60,
        90,
        0x00FF_FFFF,
        0x0100_0010,
        0x0100_0024,
        5,
    ];
    for (i, ts) in stamps.into_iter().enumerate() {
        let len = if i == 4 { 50 } else { 250 };
        let data = payload(len, i as u8);
        let h = OutboundHeader {
            csid: 6,
            type_id: 8,
            stream_id: 1,
            timestamp: ts,
        };
        let (a, b) = data.split_at(1);
        w.write(&mut wire, h, &[a, b]);
        expected.push((ts, data));
    }
    let mut rml = ChunkDeserializer::new();
    let first = rml.get_next_message(&wire).unwrap().unwrap();
    assert_eq!(first.type_id, 1);
    rml.set_max_chunk_size(100).unwrap();
    for (ts, data) in &expected {
        let m = rml.get_next_message(&[]).unwrap().unwrap();
        assert_eq!(m.timestamp.value, *ts);
        assert_eq!(&m.data[..], &data[..]);
    }
    let mut reader = ChunkReader::new(ChunkLimits::default());
    let msgs = read_all(&mut reader, &wire, 13);
    assert_eq!(msgs.len(), expected.len() + 1);
    for (m, (ts, data)) in msgs[1..].iter().zip(&expected) {
        assert_eq!(m.timestamp, *ts);
        assert_eq!(&m.payload[..], &data[..]);
    }
}

#[test]
fn writer_compresses_repeated_audio_headers_to_one_byte() {
    let mut w = ChunkWriter::new();
    let mut wire = BytesMut::new();
    let h = |ts| OutboundHeader {
        csid: 4,
        type_id: 8,
        stream_id: 1,
        timestamp: ts,
    };
    w.write(&mut wire, h(0), &[&[0; 10]]);
    assert_eq!(wire.len(), 12 + 10);
    w.write(&mut wire, h(20), &[&[0; 10]]);
    assert_eq!(wire.len(), 22 + 4 + 10); // fmt 2
    w.write(&mut wire, h(40), &[&[0; 10]]);
    assert_eq!(wire.len(), 36 + 1 + 10); // fmt 3
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic stand-in for the fuzz target.
    let mut seed = 0x1234_5678u32;
    for _ in 0..2000 {
        let mut data = Vec::new();
        for _ in 0..(seed % 300) {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            data.push((seed >> 16) as u8);
        }
        let mut reader = ChunkReader::new(ChunkLimits::default());
        let mut buf = BytesMut::new();
        for piece in data.chunks(1 + (seed as usize % 17)) {
            buf.extend_from_slice(piece);
            while let Ok(Some(_)) = reader.read(&mut buf) {}
        }
        assert!(reader.reassembly_bytes() <= ChunkLimits::default().max_reassembly_bytes);
    }
}
