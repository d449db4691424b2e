//! Inbound calls and registration on behalf of signed-in users.
//!
//! An INVITE from the network for `sip:<user>@…` rings every signed-in session of that user
//! (first answer wins); with nobody signed in it gets 480. While a user has a session,
//! skybridge keeps them registered at `sip.registrar` with their configured credentials.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::call::driver::{new_leg_id, Calls, Inbound};
use crate::config::{Config, UserConfig};
use crate::presence::{Change, Presence};
use crate::session::Identity;
use crate::sip::{Credentials, RegHandle, Registration};
use crate::sip_endpoint::{IncomingCall, RegistrationEvent, SipHandle};

/// The user an inbound Request-URI names: its user part against each user's `name` or
/// `sip_username`.
pub fn user_for_uri<'c>(config: &'c Config, request_uri: &str) -> Option<&'c UserConfig> {
    let rest = request_uri
        .strip_prefix("sip:")
        .or_else(|| request_uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    config
        .users
        .iter()
        .find(|u| u.name == user || u.sip_username.as_deref() == Some(user))
}

/// Offers every inbound INVITE to the sessions of its user.
pub async fn serve(
    mut incoming: mpsc::UnboundedReceiver<IncomingCall>,
    config: Arc<Config>,
    sip: SipHandle,
    presence: Presence,
    calls: Calls,
) {
    while let Some(call) = incoming.recv().await {
        let Some(user) = user_for_uri(&config, &call.request_uri) else {
            debug!(uri = %call.request_uri, "inbound call for nobody we know");
            sip.respond(call.call, 404, None);
            continue;
        };
        let sessions = presence.sessions(&user.name);
        if sessions.is_empty() {
            info!(user = %user.name, "inbound call while the user is offline");
            sip.respond(call.call, 480, None);
            continue;
        }
        let legs = sessions.into_iter().map(|s| (new_leg_id(), s)).collect();
        let identity = Identity::User(user.name.clone());
        let offer = Inbound {
            handle: call.call,
            from: call.from,
            offer: call.sdp,
        };
        if let Err(code) = calls.offer(&identity, offer, legs) {
            warn!(user = %user.name, code, "inbound call refused");
            sip.respond(call.call, code, None);
        }
    }
}

/// Registers users while they are online.
pub async fn registrar(
    mut changes: mpsc::UnboundedReceiver<Change>,
    config: Arc<Config>,
    sip: SipHandle,
) {
    let Some(registrar) = config.sip.registrar else {
        // Nothing to register with: drain the changes so the channel never fills.
        while changes.recv().await.is_some() {}
        return;
    };
    let domain = config
        .sip
        .domain
        .clone()
        .unwrap_or_else(|| registrar.ip().to_string());
    let mut active: HashMap<String, RegHandle> = HashMap::new();
    while let Some(change) = changes.recv().await {
        match change {
            Change::Online(name) => {
                let Some(user) = config.users.iter().find(|u| u.name == name) else {
                    continue;
                };
                let aor_user = user
                    .sip_username
                    .clone()
                    .unwrap_or_else(|| user.name.clone());
                let registration = Registration {
                    registrar,
                    aor: format!("sip:{aor_user}@{domain}"),
                    contact_user: user.name.clone(),
                    expires: config.sip.register_expires_secs,
                    credentials: user.sip_password.clone().map(|password| Credentials {
                        username: aor_user.clone(),
                        password,
                        realm: user.sip_realm.clone(),
                    }),
                };
                let (tx, mut rx) = mpsc::unbounded_channel();
                if let Some(handle) = sip.register(registration, tx).await {
                    active.insert(name.clone(), handle);
                    tokio::spawn(async move {
                        while let Some(ev) = rx.recv().await {
                            match ev {
                                RegistrationEvent::Registered { expires } => {
                                    info!(user = %name, expires, "registered");
                                }
                                RegistrationEvent::Failed { code, reason } => {
                                    warn!(user = %name, code, %reason, "registration failed");
                                }
                                RegistrationEvent::Unregistered => {
                                    info!(user = %name, "unregistered");
                                    break;
                                }
                            }
                        }
                    });
                }
            }
            Change::Offline(name) => {
                if let Some(handle) = active.remove(&name) {
                    sip.unregister(handle);
                }
            }
            Change::Shutdown => {
                for (_, handle) in active.drain() {
                    sip.unregister(handle);
                }
                return;
            }
        }
    }
}
