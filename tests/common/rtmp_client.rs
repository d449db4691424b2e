//! A blocking RTMP client (rml_rtmp's `ClientSession` over a std `TcpStream`) that can see the
//! commands a server sends, e.g. skybridge's `onRinging` / `onAnswered` / `onHangup`.

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A command the server sent: name and the values after the command object.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerCommand {
    pub name: String,
    pub args: Vec<Amf0Value>,
}

impl ServerCommand {
    /// The `i`th argument as a number.
    pub fn number(&self, i: usize) -> Option<f64> {
        match self.args.get(i) {
            Some(Amf0Value::Number(n)) => Some(*n),
            _ => None,
        }
    }

    /// The `i`th argument as a string.
    pub fn string(&self, i: usize) -> Option<&str> {
        match self.args.get(i) {
            Some(Amf0Value::Utf8String(s)) => Some(s),
            _ => None,
        }
    }
}

/// A connected RTMP client.
pub struct RtmpClient {
    stream: TcpStream,
    session: ClientSession,
    /// Every event raised so far (commands are also in `commands`).
    pub events: Vec<String>,
    /// Unhandled server commands (`onHangup`, `onRinging`, …), in order.
    pub commands: Vec<ServerCommand>,
    /// The server closed the connection.
    pub closed: bool,
    publish_accepted: bool,
    play_accepted: bool,
}

impl std::fmt::Debug for RtmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpClient")
            .field("events", &self.events)
            .field("commands", &self.commands)
            .field("closed", &self.closed)
            .finish()
    }
}

const IO_TIMEOUT: Duration = Duration::from_secs(5);

impl RtmpClient {
    /// Connects, handshakes and `connect`s to application `app` (≤ 5 s).
    pub fn connect(addr: SocketAddr, app: &str) -> Result<RtmpClient, String> {
        let mut stream =
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let mut hs = Handshake::new(PeerType::Client);
        let p01 = hs
            .generate_outbound_p0_and_p1()
            .map_err(|e| format!("{e:?}"))?;
        stream.write_all(&p01).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut buf = [0u8; 8192];
        let leftover = loop {
            if Instant::now() >= deadline {
                return Err("handshake timed out".into());
            }
            let n = match stream.read(&mut buf) {
                Ok(0) => return Err("closed during handshake".into()),
                Ok(n) => n,
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(format!("handshake read: {e}")),
            };
            match hs.process_bytes(&buf[..n]).map_err(|e| format!("{e:?}"))? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    stream
                        .write_all(&response_bytes)
                        .map_err(|e| e.to_string())?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    stream
                        .write_all(&response_bytes)
                        .map_err(|e| e.to_string())?;
                    break remaining_bytes;
                }
            }
        };
        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(format!("rtmp://{addr}/{app}"));
        let (session, initial) = ClientSession::new(config).map_err(|e| format!("{e:?}"))?;
        let mut c = RtmpClient {
            stream,
            session,
            events: Vec::new(),
            commands: Vec::new(),
            closed: false,
            publish_accepted: false,
            play_accepted: false,
        };
        c.handle_results(initial)?;
        if !leftover.is_empty() {
            let r = c
                .session
                .handle_input(&leftover)
                .map_err(|e| format!("{e:?}"))?;
            c.handle_results(r)?;
        }
        let r = c
            .session
            .request_connection(app.to_string())
            .map_err(|e| format!("{e:?}"))?;
        c.handle_results(vec![r])?;
        let ok = c.pump_until(IO_TIMEOUT, |c| {
            c.events.iter().any(|e| e.starts_with("ConnectionRequest"))
        });
        if !ok || !c.events.iter().any(|e| e == "ConnectionRequestAccepted") {
            return Err(format!("connect not accepted: {c:?}"));
        }
        Ok(c)
    }

    /// Starts publishing `name` (does not wait for the answer).
    pub fn publish(&mut self, name: &str) -> Result<(), String> {
        let r = self
            .session
            .request_publishing(name.to_string(), PublishRequestType::Live)
            .map_err(|e| format!("{e:?}"))?;
        self.handle_results(vec![r])
    }

    /// Starts playing `name` (does not wait for the answer).
    pub fn play(&mut self, name: &str) -> Result<(), String> {
        let r = self
            .session
            .request_playback(name.to_string())
            .map_err(|e| format!("{e:?}"))?;
        self.handle_results(vec![r])
    }

    pub fn publish_accepted(&self) -> bool {
        self.publish_accepted
    }

    pub fn play_accepted(&self) -> bool {
        self.play_accepted
    }

    /// Reads and handles input until `done` holds, the connection closes, or `timeout` passes.
    /// Returns whether `done` held.
    pub fn pump_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&RtmpClient) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if done(self) {
                return true;
            }
            if self.closed || Instant::now() >= deadline {
                return false;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => {
                    let results = match self.session.handle_input(&buf[..n]) {
                        Ok(r) => r,
                        Err(e) => {
                            self.events.push(format!("session error: {e:?}"));
                            self.closed = true;
                            continue;
                        }
                    };
                    if self.handle_results(results).is_err() {
                        self.closed = true;
                    }
                }
                Err(e) if is_timeout(&e) => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// Waits ≤ `timeout` for the server command `name`; returns the first one received.
    pub fn wait_command(&mut self, name: &str, timeout: Duration) -> Option<ServerCommand> {
        self.pump_until(timeout, |c| c.commands.iter().any(|x| x.name == name));
        self.commands.iter().find(|x| x.name == name).cloned()
    }

    fn handle_results(&mut self, results: Vec<ClientSessionResult>) -> Result<(), String> {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => {
                    self.stream
                        .write_all(&p.bytes)
                        .map_err(|e| format!("write: {e}"))?;
                }
                ClientSessionResult::RaisedEvent(e) => self.on_event(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    fn on_event(&mut self, e: ClientSessionEvent) {
        let label = match &e {
            ClientSessionEvent::ConnectionRequestAccepted => "ConnectionRequestAccepted".into(),
            ClientSessionEvent::ConnectionRequestRejected { description } => {
                format!("ConnectionRequestRejected: {description}")
            }
            ClientSessionEvent::PlaybackRequestAccepted => {
                self.play_accepted = true;
                "PlaybackRequestAccepted".into()
            }
            ClientSessionEvent::PublishRequestAccepted => {
                self.publish_accepted = true;
                "PublishRequestAccepted".into()
            }
            ClientSessionEvent::AudioDataReceived { .. } => return,
            ClientSessionEvent::UnhandleableAmf0Command {
                command_name,
                additional_values,
                ..
            } => {
                self.commands.push(ServerCommand {
                    name: command_name.clone(),
                    args: additional_values.clone(),
                });
                format!("command {command_name} {additional_values:?}")
            }
            ClientSessionEvent::UnhandleableOnStatusCode { code } => format!("onStatus {code}"),
            other => format!("{other:?}"),
        };
        self.events.push(label);
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
