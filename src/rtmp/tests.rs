#![allow(clippy::unwrap_used)] // tests may unwrap

use super::*;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;

/// An rml_rtmp client wired to our server in memory.
struct Pair {
    server: RtmpServerSession,
    client: ClientSession,
    server_in: BytesMut,
    now: Instant,
    client_events: Vec<ClientSessionEvent>,
    server_events: Vec<RtmpEvent>,
    /// Our own writer for raw messages the rml client cannot send (csids >= 10 only).
    raw: ChunkWriter,
    /// Decodes everything the server wrote after the handshake.
    tap: ChunkReader,
    tap_buf: BytesMut,
    seen: Vec<RtmpMessage>,
}

impl Pair {
    fn new(tc_url: Option<&str>) -> Pair {
        let now = Instant::now();
        let mut server = RtmpServerSession::new(RtmpSessionConfig::default(), now);
        let mut hs = Handshake::new(PeerType::Client);
        let mut server_in = BytesMut::from(&hs.generate_outbound_p0_and_p1().unwrap()[..]);
        server.handle_input(now, &mut server_in).unwrap();
        let s012 = drain(&mut server);
        let (c2, rest) = match hs.process_bytes(&s012).unwrap() {
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => (response_bytes, remaining_bytes),
            other => panic!("{other:?}"),
        };
        assert!(rest.is_empty());
        server_in.extend_from_slice(&c2);
        server.handle_input(now, &mut server_in).unwrap();
        let mut config = ClientSessionConfig::new();
        config.tc_url = tc_url.map(str::to_owned);
        let (client, _) = ClientSession::new(config).unwrap();
        let mut pair = Pair {
            server,
            client,
            server_in,
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            raw: ChunkWriter::new(),
            tap: ChunkReader::new(ChunkLimits::default()),
            tap_buf: BytesMut::new(),
            seen: Vec::new(),
        };
        pair.pump();
        pair
    }

    fn client_results(&mut self, results: Vec<ClientSessionResult>) {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => {
                    self.server_in.extend_from_slice(&p.bytes)
                }
                ClientSessionResult::RaisedEvent(e) => self.client_events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
    }

    fn send(&mut self, r: ClientSessionResult) {
        self.client_results(vec![r]);
        self.pump();
    }

    /// Moves bytes both ways until nothing is left.
    fn pump(&mut self) {
        self.try_pump().unwrap();
    }

    fn try_pump(&mut self) -> Result<(), RtmpError> {
        loop {
            let r = self.server.handle_input(self.now, &mut self.server_in);
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            r?;
            let out = self.drain();
            if out.is_empty() {
                return Ok(());
            }
            let results = self.client.handle_input(&out).unwrap();
            self.client_results(results);
        }
    }

    /// Sends a raw command message from the "client" on a chunk stream rml does not use.
    fn raw_command(&mut self, stream_id: u32, values: &[Amf0Value<'_>]) {
        let mut p = Vec::new();
        amf0::encode_all(values, &mut p);
        self.raw_message(20, stream_id, &p);
    }

    fn raw_message(&mut self, type_id: u8, stream_id: u32, payload: &[u8]) {
        let mut b = BytesMut::new();
        let size = self.server.reader.chunk_size();
        if self.raw.chunk_size() != size {
            // Match the rml client's chunk size; the Set Chunk Size itself is not sent.
            self.raw.set_chunk_size(size, &mut BytesMut::new());
        }
        let h = OutboundHeader {
            csid: 10,
            type_id,
            stream_id,
            timestamp: 0,
        };
        self.raw.write(&mut b, h, &[payload]);
        self.server_in.extend_from_slice(&b);
    }

    /// Server output, also decoded into `seen`.
    fn drain(&mut self) -> Vec<u8> {
        let out = drain(&mut self.server);
        self.tap_buf.extend_from_slice(&out);
        while let Some(m) = self.tap.read(&mut self.tap_buf).unwrap() {
            self.seen.push(m);
        }
        out
    }

    /// Commands the server sent since the last call, as (name, txn, rest).
    fn commands(&mut self) -> Vec<(String, f64, String)> {
        self.drain();
        std::mem::take(&mut self.seen)
            .into_iter()
            .filter(|m| m.type_id == message_type::COMMAND_AMF0)
            .map(|m| command_tuple(&m.payload))
            .collect()
    }

    fn take_server_events(&mut self) -> Vec<RtmpEvent> {
        std::mem::take(&mut self.server_events)
    }

    fn connect(&mut self) {
        let r = self.client.request_connection("call".into()).unwrap();
        self.send(r);
        assert!(matches!(
            self.take_server_events()[..],
            [RtmpEvent::Connect { .. }]
        ));
        self.server.accept_connect();
        self.pump();
        assert!(self
            .client_events
            .contains(&ClientSessionEvent::ConnectionRequestAccepted));
    }
}

fn drain(server: &mut RtmpServerSession) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some(b) = server.poll_output() {
        v.extend_from_slice(&b);
    }
    v
}

/// Decodes every command our server wrote, as (name, txn, values after the command object).
fn decode_commands(wire: &[u8]) -> Vec<(String, f64, String)> {
    let mut reader = ChunkReader::new(ChunkLimits::default());
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    while let Some(m) = reader.read(&mut buf).unwrap() {
        if m.type_id == message_type::COMMAND_AMF0 {
            out.push(command_tuple(&m.payload));
        }
    }
    out
}

fn command_tuple(payload: &[u8]) -> (String, f64, String) {
    let v = amf0::decode_all(payload).unwrap();
    (
        v[0].as_str().unwrap().to_owned(),
        v[1].as_number().unwrap(),
        format!("{:?}", &v[2..]),
    )
}

/// A session past the handshake, with the handshake output discarded.
fn after_handshake() -> (RtmpServerSession, BytesMut, Instant) {
    let pair = Pair::new(None);
    let mut s = pair.server;
    drain(&mut s);
    (s, BytesMut::new(), pair.now)
}

#[test]
fn connect_with_token_in_tc_url_then_publish_delivers_the_same_audio_bytes() {
    let mut p = Pair::new(Some("rtmp://127.0.0.1/call?token=T"));
    let r = p.client.request_connection("call".into()).unwrap();
    p.send(r);
    assert_eq!(
        p.take_server_events(),
        [RtmpEvent::Connect {
            app: "call".into(),
            tc_url: Some("rtmp://127.0.0.1/call?token=T".into()),
            token: Some("T".into()),
            audio_codecs: None,
        }]
    );
    assert!(
        p.server.poll_timeout().is_none(),
        "deadline cleared by connect"
    );
    p.server.accept_connect();
    p.pump();
    assert!(p
        .client_events
        .contains(&ClientSessionEvent::ConnectionRequestAccepted));

    let r = p
        .client
        .request_publishing("bob?token=P&x=1".into(), PublishRequestType::Live)
        .unwrap();
    p.send(r);
    assert_eq!(
        p.take_server_events(),
        [RtmpEvent::Publish {
            stream_id: 1,
            name: "bob".into(),
            token: Some("P".into()),
        }]
    );
    p.server.accept_publish(1);
    p.pump();
    assert!(p
        .client_events
        .contains(&ClientSessionEvent::PublishRequestAccepted));

    let mut sent = Vec::new();
    for i in 0..20u32 {
        let mut data = vec![0x82u8]; // format 8 (µ-law), 5.5 kHz, 16-bit flag 0, mono
        data.extend((0..160).map(|j| (i as u8).wrapping_add(j as u8)));
        sent.push(data.clone());
        let r = p
            .client
            .publish_audio_data(Bytes::from(data), RtmpTimestamp::new(i * 20), false)
            .unwrap();
        p.send(r);
    }
    let events = p.take_server_events();
    assert_eq!(events.len(), 20);
    for (i, (e, data)) in events.iter().zip(&sent).enumerate() {
        match e {
            RtmpEvent::Audio {
                stream_id,
                timestamp,
                tag_header,
                payload,
            } => {
                assert_eq!(
                    (*stream_id, *timestamp, *tag_header),
                    (1, i as u32 * 20, 0x82)
                );
                assert_eq!(&payload[..], &data[1..]);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(p.server.stats().audio_messages, 20);
}

#[test]
fn play_gets_play_start_and_audio_we_send_decodes_on_the_client() {
    let mut p = Pair::new(None);
    p.connect();
    let r = p
        .client
        .request_playback("bob?token=Q&codec=speex".into())
        .unwrap();
    p.send(r);
    assert_eq!(
        p.take_server_events(),
        [RtmpEvent::Play {
            stream_id: 1,
            name: "bob".into(),
            token: Some("Q".into()),
            codec: Some("speex".into()),
        }]
    );
    // Audio before accept is not sent.
    assert!(!p.server.send_audio(1, 0, 0x82, &[1, 2, 3]));
    p.server.accept_play(1);
    p.pump();
    assert!(p
        .client_events
        .contains(&ClientSessionEvent::PlaybackRequestAccepted));
    let payload: Vec<u8> = (0..160).map(|i| i as u8).collect();
    for i in 0..5 {
        assert!(p.server.send_audio(1, i * 20, 0x82, &payload));
    }
    p.pump();
    let audio: Vec<_> = p
        .client_events
        .iter()
        .filter_map(|e| match e {
            ClientSessionEvent::AudioDataReceived { timestamp, data } => {
                Some((timestamp.value, data.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(audio.len(), 5);
    // The first audio is followed by an audio-only onMetaData (for ffmpeg's FLV demuxer).
    let metas = p
        .client_events
        .iter()
        .filter(|e| matches!(e, ClientSessionEvent::StreamMetadataReceived { .. }))
        .count();
    assert_eq!(metas, 1);
    for (i, (ts, data)) in audio.iter().enumerate() {
        assert_eq!(*ts, i as u32 * 20);
        assert_eq!(data[0], 0x82);
        assert_eq!(&data[1..], &payload[..]);
    }
}

#[test]
fn rejected_connect_sends_error_and_closes() {
    let mut p = Pair::new(None);
    let r = p.client.request_connection("call".into()).unwrap();
    p.send(r);
    p.server
        .reject_connect("NetConnection.Connect.Rejected", "bad token");
    assert!(p.server.is_closing());
    p.pump();
    assert!(p
        .client_events
        .contains(&ClientSessionEvent::ConnectionRequestRejected {
            description: "bad token".into()
        }));
}

#[test]
fn call_answer_hangup_dtmf_are_surfaced_and_acknowledged() {
    let mut p = Pair::new(None);
    p.connect();
    p.commands();
    p.raw_command(
        0,
        &[
            Amf0Value::String("call"),
            Amf0Value::Number(5.0),
            Amf0Value::Null,
            Amf0Value::String("+15551234"),
        ],
    );
    p.raw_command(
        0,
        &[
            Amf0Value::String("answer"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
        ],
    );
    p.raw_command(
        0,
        &[
            Amf0Value::String("dtmf"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::String("12#"),
        ],
    );
    p.raw_command(
        0,
        &[
            Amf0Value::String("hangup"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
        ],
    );
    p.server.handle_input(p.now, &mut p.server_in).unwrap();
    let events: Vec<_> = std::iter::from_fn(|| p.server.poll_event()).collect();
    assert_eq!(
        events,
        [
            RtmpEvent::Call {
                target: "+15551234".into()
            },
            RtmpEvent::Answer,
            RtmpEvent::Dtmf {
                digits: "12#".into()
            },
            RtmpEvent::Hangup,
        ]
    );
    let cmds = p.commands();
    assert_eq!(cmds.len(), 1);
    assert_eq!((cmds[0].0.as_str(), cmds[0].1), ("_result", 5.0));
}

#[test]
fn unknown_command_gets_error_result_and_session_continues() {
    let mut p = Pair::new(None);
    p.connect();
    p.commands();
    p.raw_command(
        0,
        &[
            Amf0Value::String("frobnicate"),
            Amf0Value::Number(7.0),
            Amf0Value::Null,
        ],
    );
    p.server.handle_input(p.now, &mut p.server_in).unwrap();
    let cmds = p.commands();
    assert_eq!((cmds[0].0.as_str(), cmds[0].1), ("_error", 7.0));
    assert!(!p.server.is_closing());
    p.raw_command(
        0,
        &[
            Amf0Value::String("hangup"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
        ],
    );
    p.server.handle_input(p.now, &mut p.server_in).unwrap();
    assert_eq!(p.server.poll_event(), Some(RtmpEvent::Hangup));
}

#[test]
fn commands_before_connect_get_error_and_no_event() {
    let mut p = Pair::new(None);
    p.raw_command(
        0,
        &[
            Amf0Value::String("call"),
            Amf0Value::Number(2.0),
            Amf0Value::Null,
            Amf0Value::String("x"),
        ],
    );
    p.server.handle_input(p.now, &mut p.server_in).unwrap();
    assert_eq!(p.server.poll_event(), None);
    let cmds = p.commands();
    assert_eq!((cmds[0].0.as_str(), cmds[0].1), ("_error", 2.0));
}

#[test]
fn connect_token_from_app_query_or_extra_argument() {
    let mut p = Pair::new(None);
    let obj = Amf0Value::Object(vec![("app", Amf0Value::String("call?token=A%20B"))]);
    p.raw_command(
        0,
        &[Amf0Value::String("connect"), Amf0Value::Number(1.0), obj],
    );
    p.server.handle_input(p.now, &mut p.server_in).unwrap();
    assert_eq!(
        p.server.poll_event(),
        Some(RtmpEvent::Connect {
            app: "call".into(),
            tc_url: None,
            token: Some("A B".into()),
            audio_codecs: None,
        })
    );
    let mut p = Pair::new(None);
    let obj = Amf0Value::Object(vec![("app", Amf0Value::String("call"))]);
    p.raw_command(
        0,
        &[
            Amf0Value::String("connect"),
            Amf0Value::Number(1.0),
            obj,
            Amf0Value::String("tok"),
        ],
    );
    p.server.handle_input(p.now, &mut p.server_in).unwrap();
    assert_eq!(
        p.server.poll_event(),
        Some(RtmpEvent::Connect {
            app: "call".into(),
            tc_url: None,
            token: Some("tok".into()),
            audio_codecs: None,
        })
    );
}

#[test]
fn delete_stream_while_publishing_surfaces_unpublish_then_delete() {
    let mut p = Pair::new(None);
    p.connect();
    let r = p
        .client
        .request_publishing("bob".into(), PublishRequestType::Live)
        .unwrap();
    p.send(r);
    p.take_server_events();
    p.server.accept_publish(1);
    p.pump();
    p.raw_command(
        0,
        &[
            Amf0Value::String("FCUnpublish"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::String("bob"),
        ],
    );
    p.raw_command(
        0,
        &[
            Amf0Value::String("deleteStream"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::Number(1.0),
        ],
    );
    p.pump();
    assert_eq!(
        p.take_server_events(),
        [
            RtmpEvent::Unpublish { stream_id: 1 },
            RtmpEvent::DeleteStream { stream_id: 1 }
        ]
    );
    // Audio on the deleted stream is dropped.
    p.raw_message(8, 1, &[0x82, 1, 2, 3]);
    p.pump();
    assert!(p.take_server_events().is_empty());
    assert_eq!(p.server.stats().audio_dropped, 1);
}

#[test]
fn client_ping_request_gets_a_ping_response() {
    let mut p = Pair::new(None);
    p.connect();
    let (packet, _) = p.client.send_ping_request().unwrap();
    p.send(ClientSessionResult::OutboundResponse(packet));
    assert!(p
        .client_events
        .iter()
        .any(|e| matches!(e, ClientSessionEvent::PingResponseReceived { .. })));
}

#[test]
fn server_pings_at_the_configured_interval_once_connected() {
    let mut p = Pair::new(None);
    p.connect();
    p.commands();
    let at = p.server.poll_timeout().unwrap();
    assert_eq!(at, p.now + Duration::from_secs(5));
    p.server.handle_timeout(at).unwrap();
    p.drain();
    let m = p.seen.pop().unwrap();
    assert_eq!(
        (m.type_id, &m.payload[..2]),
        (message_type::USER_CONTROL, &[0u8, 6][..])
    );
    assert!(p.server.poll_timeout().unwrap() > at);
}

#[test]
fn a_connected_peer_that_sends_nothing_is_declared_dead_after_dead_peer() {
    let mut p = Pair::new(None);
    p.connect();
    let start = p.now;
    let dead_at = start + Duration::from_secs(15);
    assert_eq!(p.server.dead_peer_deadline(), Some(dead_at));
    // Pings go out at 5 s and 10 s; the client (blackholed) never sees them.
    let mut pings = 0;
    loop {
        let at = p.server.poll_timeout().unwrap();
        if at >= dead_at {
            break;
        }
        p.server.handle_timeout(at).unwrap();
        pings += 1;
    }
    assert_eq!(pings, 2);
    let just_before = dead_at - Duration::from_millis(1);
    assert_eq!(p.server.handle_timeout(just_before), Ok(()));
    assert_eq!(p.server.handle_timeout(dead_at), Err(RtmpError::DeadPeer));
    assert_eq!(RtmpError::DeadPeer.reason(), "dead_peer");
    assert!(p.server.is_closing());
    assert_eq!(p.server.poll_timeout(), None);
}

#[test]
fn ping_responses_keep_a_play_only_client_alive_past_dead_peer() {
    let mut p = Pair::new(None);
    p.connect();
    p.commands();
    let start = p.now;
    // A minute of server pings, each answered by the rml client (a ping response is all the
    // input there is, as from a play-only ffmpeg).
    while p.now < start + Duration::from_secs(60) {
        let at = p.server.poll_timeout().unwrap();
        assert_eq!(
            at - p.now,
            Duration::from_secs(5),
            "the next wake is a ping"
        );
        p.now = at;
        p.server.handle_timeout(at).unwrap();
        p.pump();
    }
    assert!(p.server.dead_peer_deadline().unwrap() > p.now);
    assert!(!p.server.is_closing());
}

#[test]
fn input_before_connect_is_left_to_the_handshake_deadline() {
    let now = Instant::now();
    let s = RtmpServerSession::new(RtmpSessionConfig::default(), now);
    assert_eq!(s.dead_peer_deadline(), None);
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(10)));
}

#[test]
fn peer_window_ack_size_is_honoured_with_acknowledgements() {
    let mut p = Pair::new(None);
    p.connect();
    p.raw_message(message_type::WINDOW_ACK_SIZE, 0, &1000u32.to_be_bytes());
    p.server.handle_input(p.now, &mut p.server_in).unwrap();
    p.commands();
    for _ in 0..10 {
        p.raw_message(message_type::VIDEO, 1, &[0u8; 200]);
    }
    p.server.handle_input(p.now, &mut p.server_in).unwrap();
    p.drain();
    let acks: Vec<u32> = p
        .seen
        .iter()
        .filter(|m| m.type_id == message_type::ACKNOWLEDGEMENT)
        .map(|m| u32::from_be_bytes(m.payload[..4].try_into().unwrap()))
        .collect();
    // About 2200 bytes of video after the window was set: two acks, increasing.
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert!(acks[0] < acks[1]);
    assert_eq!(p.server.stats().ignored_messages, 10);
}

#[test]
fn garbage_instead_of_handshake_is_an_error() {
    let now = Instant::now();
    let mut s = RtmpServerSession::new(RtmpSessionConfig::default(), now);
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
    assert_eq!(s.handle_input(now, &mut buf), Err(RtmpError::Handshake));
}

#[test]
fn handshake_deadline_expires_without_connect() {
    let now = Instant::now();
    let mut s = RtmpServerSession::new(RtmpSessionConfig::default(), now);
    let mut buf = BytesMut::from(&[3u8, 0, 0][..]);
    s.handle_input(now, &mut buf).unwrap();
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline, now + Duration::from_secs(10));
    assert_eq!(s.handle_timeout(now + Duration::from_secs(5)), Ok(()));
    assert_eq!(s.handle_timeout(deadline), Err(RtmpError::HandshakeTimeout));
}

#[test]
fn handshake_never_buffers_more_than_c0_c1_c2() {
    let now = Instant::now();
    let mut s = RtmpServerSession::new(RtmpSessionConfig::default(), now);
    let mut c0c1 = Handshake::new(PeerType::Client)
        .generate_outbound_p0_and_p1()
        .unwrap();
    c0c1.extend_from_slice(&[0u8; 1536]); // C2 (not checked)
    c0c1.extend_from_slice(&[0xC3; 100]); // more bytes: must stay in our buffer
    let mut buf = BytesMut::from(&c0c1[..]);
    let r = s.handle_input(now, &mut buf);
    // The trailing fmt-3 chunk has no previous header: a chunk error, after the handshake.
    assert_eq!(r, Err(RtmpError::Chunk(ChunkError::NoPreviousHeader(3))));
}

#[test]
fn too_short_amf0_command_is_an_error_result_and_error_not_a_panic() {
    for payload in [
        &[0x02u8, 0x00, 0x07, b'c', b'o'][..], // truncated string
        &[0x02, 0x00, 0x01, b'x'][..],         // name without transaction id
        &[][..],                               // empty
        &[0x00][..],                           // truncated number
    ] {
        let (mut s, mut buf, now) = after_handshake();
        let mut w = ChunkWriter::new();
        let h = OutboundHeader {
            csid: 3,
            type_id: 20,
            stream_id: 0,
            timestamp: 0,
        };
        w.write(&mut buf, h, &[payload]);
        let r = s.handle_input(now, &mut buf);
        assert!(r.is_err(), "{payload:?}");
        let cmds = decode_commands(&drain(&mut s));
        assert_eq!(cmds[0].0, "_error");
    }
}

#[test]
fn deeply_nested_connect_is_rejected_with_error_result() {
    let (mut s, mut buf, now) = after_handshake();
    let mut p = Vec::new();
    amf0::encode_all(
        &[Amf0Value::String("connect"), Amf0Value::Number(1.0)],
        &mut p,
    );
    p.push(0x03);
    for _ in 0..50_000 {
        p.extend_from_slice(&[0x00, 0x01, b'a', 0x03]);
    }
    let mut w = ChunkWriter::new();
    let h = OutboundHeader {
        csid: 3,
        type_id: 20,
        stream_id: 0,
        timestamp: 0,
    };
    w.write(&mut buf, h, &[&p]);
    let r = s.handle_input(now, &mut buf);
    assert_eq!(r, Err(RtmpError::MalformedCommand(Amf0Error::TooDeep)));
    assert_eq!(r.unwrap_err().reason(), "amf0_depth");
    assert_eq!(decode_commands(&drain(&mut s))[0].0, "_error");
    assert_eq!(s.poll_event(), None);
}

#[test]
fn huge_chunk_size_then_16_mib_message_is_rejected_with_bounded_buffering() {
    let (mut s, mut buf, now) = after_handshake();
    buf.extend_from_slice(&[
        0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF,
    ]);
    buf.extend_from_slice(&[0x04, 0, 0, 0, 0xFF, 0xFF, 0xFF, 8, 1, 0, 0, 0]);
    buf.extend_from_slice(&[0u8; 100]);
    let r = s.handle_input(now, &mut buf);
    assert_eq!(
        r,
        Err(RtmpError::Chunk(ChunkError::MessageTooLong(0x00FF_FFFF)))
    );
    assert_eq!(r.unwrap_err().reason(), "message_too_long");
    assert_eq!(s.reader.reassembly_bytes(), 0);
}

#[test]
fn set_chunk_size_zero_closes() {
    let (mut s, mut buf, now) = after_handshake();
    buf.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    let r = s.handle_input(now, &mut buf);
    assert_eq!(r, Err(RtmpError::Chunk(ChunkError::InvalidChunkSize(0))));
    assert_eq!(r.unwrap_err().reason(), "chunk_size");
}

#[test]
fn event_backpressure_leaves_input_in_the_buffer() {
    let mut p = Pair::new(None);
    p.connect();
    let r = p
        .client
        .request_publishing("bob".into(), PublishRequestType::Live)
        .unwrap();
    p.send(r);
    p.take_server_events();
    p.server.accept_publish(1);
    p.pump();
    for i in 0..300u32 {
        let r = p
            .client
            .publish_audio_data(Bytes::from_static(&[0x82, 0]), RtmpTimestamp::new(i), false)
            .unwrap();
        p.client_results(vec![r]);
    }
    p.server.handle_input(p.now, &mut p.server_in).unwrap();
    assert!(!p.server_in.is_empty());
    let first: Vec<_> = std::iter::from_fn(|| p.server.poll_event()).collect();
    assert_eq!(first.len(), 256);
    p.server.handle_input(p.now, &mut p.server_in).unwrap();
    assert_eq!(std::iter::from_fn(|| p.server.poll_event()).count(), 44);
}
