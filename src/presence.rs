//! Who is signed in: every authenticated client session, per user. Inbound calls ring every
//! session of their user; the first session of a user registers them upstream and the last one
//! to leave unregisters them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::call::driver::ClientSink;

/// A user came online (first session) or went offline (last session left).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Online(String),
    Offline(String),
    /// The relay is stopping: unregister everyone.
    Shutdown,
}

/// The set of signed-in sessions.
#[derive(Clone, Debug)]
pub struct Presence {
    inner: Arc<Mutex<Inner>>,
    changes: mpsc::UnboundedSender<Change>,
}

#[derive(Debug, Default)]
struct Inner {
    users: HashMap<String, Vec<(u64, ClientSink)>>,
    next: u64,
}

/// Keeps a session signed in; dropping it signs the session out.
#[derive(Debug)]
pub struct PresenceGuard {
    presence: Presence,
    user: String,
    id: u64,
}

impl Presence {
    /// A presence set and the stream of online/offline changes.
    pub fn new() -> (Presence, mpsc::UnboundedReceiver<Change>) {
        let (changes, rx) = mpsc::unbounded_channel();
        (
            Presence {
                inner: Arc::new(Mutex::new(Inner::default())),
                changes,
            },
            rx,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signs a session of `user` in; inbound calls for `user` are offered to `sink`.
    pub fn sign_in(&self, user: &str, sink: ClientSink) -> PresenceGuard {
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        let sessions = inner.users.entry(user.to_string()).or_default();
        sessions.push((id, sink));
        if sessions.len() == 1 {
            let _ = self.changes.send(Change::Online(user.to_string()));
        }
        PresenceGuard {
            presence: self.clone(),
            user: user.to_string(),
            id,
        }
    }

    /// Every signed-in session of `user`.
    pub fn sessions(&self, user: &str) -> Vec<ClientSink> {
        self.lock()
            .users
            .get(user)
            .map(|v| v.iter().map(|(_, s)| s.clone()).collect())
            .unwrap_or_default()
    }

    /// Tells the registrar the relay is stopping.
    pub fn shutdown(&self) {
        let _ = self.changes.send(Change::Shutdown);
    }

    /// Users with at least one session.
    pub fn online(&self) -> usize {
        self.lock().users.len()
    }
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let mut inner = self.presence.lock();
        if let Some(sessions) = inner.users.get_mut(&self.user) {
            sessions.retain(|(id, _)| *id != self.id);
            if sessions.is_empty() {
                inner.users.remove(&self.user);
                let _ = self
                    .presence
                    .changes
                    .send(Change::Offline(self.user.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> ClientSink {
        let (audio, _) = crate::call::client_queue::channel(
            std::time::Duration::from_millis(200),
            1,
            "test",
            false,
        );
        let (control, _) = mpsc::unbounded_channel();
        ClientSink {
            audio,
            control,
            caps: crate::media::ClientCaps::G711,
            wants_audio: true,
        }
    }

    #[test]
    fn first_session_brings_the_user_online_and_the_last_takes_them_offline() {
        let (presence, mut changes) = Presence::new();
        let a = presence.sign_in("alice", sink());
        let b = presence.sign_in("alice", sink());
        assert_eq!(changes.try_recv(), Ok(Change::Online("alice".into())));
        assert!(
            changes.try_recv().is_err(),
            "a second session changes nothing"
        );
        assert_eq!(presence.sessions("alice").len(), 2);
        drop(a);
        assert!(changes.try_recv().is_err());
        drop(b);
        assert_eq!(changes.try_recv(), Ok(Change::Offline("alice".into())));
        assert_eq!(presence.online(), 0);
        assert!(presence.sessions("alice").is_empty());
    }
}
