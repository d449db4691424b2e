//! Client sessions: who a client is (token check) and what it may dial (dial plan).
//!
//! Authentication happens here, before any SIP message is sent or any RTP port is spent.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use crate::config::{Config, UserConfig, BUILTIN_TARGETS};

/// An authenticated client identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// Authentication is off (loopback-only default mode).
    Anonymous,
    User(String),
}

impl Identity {
    pub fn name(&self) -> &str {
        match self {
            Identity::Anonymous => "anonymous",
            Identity::User(name) => name,
        }
    }
}

/// Why a client was refused (a metric label and the text the client is told).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    MissingToken,
    BadToken,
    TargetNotAllowed,
    UnknownTarget,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MissingToken => "missing_token",
            Refusal::BadToken => "bad_token",
            Refusal::TargetNotAllowed => "target_not_allowed",
            Refusal::UnknownTarget => "unknown_target",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Refusal::MissingToken => "authentication required: pass ?token=… in the URL",
            Refusal::BadToken => "invalid token",
            Refusal::TargetNotAllowed => "this target may not be dialled by this user",
            Refusal::UnknownTarget => "unknown target",
        }
    }
}

/// Where a call goes, resolved from the dial plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub target: String,
    pub request_uri: String,
    pub next_hop: SocketAddr,
}

/// Checks tokens and resolves targets against the configuration.
#[derive(Clone, Debug)]
pub struct Authority {
    config: std::sync::Arc<Config>,
}

/// SHA-256 of a token as lowercase hex, as stored in `token_sha256`.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Compares two equal-length strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authority {
    pub fn new(config: std::sync::Arc<Config>) -> Authority {
        Authority { config }
    }

    /// Authenticates a client by token. With `auth.required = false` a missing token is
    /// anonymous; a token that is present must still be valid.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Identity, Refusal> {
        match token {
            None | Some("") if !self.config.auth.required => Ok(Identity::Anonymous),
            None | Some("") => Err(Refusal::MissingToken),
            Some(token) => {
                let hash = hash_token(token);
                let mut found = None;
                // Check every user so the time does not depend on which one matched.
                for user in &self.config.users {
                    if constant_time_eq(
                        hash.as_bytes(),
                        user.token_sha256.to_ascii_lowercase().as_bytes(),
                    ) {
                        found = Some(user.name.clone());
                    }
                }
                found.map(Identity::User).ok_or(Refusal::BadToken)
            }
        }
    }

    pub fn user(&self, identity: &Identity) -> Option<&UserConfig> {
        match identity {
            Identity::Anonymous => None,
            Identity::User(name) => self.config.users.iter().find(|u| &u.name == name),
        }
    }

    /// Resolves `target` for `identity`: only names in the user's list (or the anonymous list)
    /// and in the dial plan; never a client-supplied URI.
    pub fn route(&self, identity: &Identity, target: &str) -> Result<Route, Refusal> {
        let allowed = match identity {
            Identity::Anonymous => self
                .config
                .auth
                .anonymous_targets
                .iter()
                .any(|t| t == target),
            Identity::User(_) => self
                .user(identity)
                .is_some_and(|u| u.targets.iter().any(|t| t == target)),
        };
        if !allowed {
            return Err(if self.config.target_exists(target) {
                Refusal::TargetNotAllowed
            } else {
                Refusal::UnknownTarget
            });
        }
        if let Some(uri) = self.config.dialplan.get(target) {
            let next_hop = self
                .config
                .sip
                .upstream
                .or_else(|| crate::config::uri_host_port(uri))
                .ok_or(Refusal::UnknownTarget)?;
            return Ok(Route {
                target: target.to_string(),
                request_uri: uri.clone(),
                next_hop,
            });
        }
        if self.config.builtin.enabled && BUILTIN_TARGETS.contains(&target) {
            let addr = self.config.builtin.listen;
            return Ok(Route {
                target: target.to_string(),
                request_uri: format!("sip:{target}@{addr}"),
                next_hop: addr,
            });
        }
        Err(Refusal::UnknownTarget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn authority(toml: &str) -> Authority {
        Authority::new(Arc::new(Config::from_toml(toml).expect("config")))
    }

    const WITH_USER: &str = "[auth]\nrequired = true\nanonymous_targets = []\n\
        [dialplan]\nbob = \"sip:bob@127.0.0.1:5062\"\ncarol = \"sip:carol@127.0.0.1:5064\"\n\
        [[users]]\nname = \"alice\"\n\
        token_sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n\
        targets = [\"bob\", \"echo\"]\n";

    #[test]
    fn hash_matches_the_documented_value() {
        assert_eq!(
            hash_token("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn valid_token_authenticates_the_user() {
        let a = authority(WITH_USER);
        assert_eq!(
            a.authenticate(Some("test")),
            Ok(Identity::User("alice".into()))
        );
    }

    #[test]
    fn missing_or_wrong_token_is_refused_when_required() {
        let a = authority(WITH_USER);
        assert_eq!(a.authenticate(None), Err(Refusal::MissingToken));
        assert_eq!(a.authenticate(Some("nope")), Err(Refusal::BadToken));
    }

    #[test]
    fn anonymous_reaches_only_builtin_targets_by_default() {
        let a = Authority::new(Arc::new(Config::default()));
        let id = a.authenticate(None).expect("anonymous");
        let route = a.route(&id, "echo").expect("echo");
        assert_eq!(route.next_hop, Config::default().builtin.listen);
        assert_eq!(
            a.route(&id, "sip:+88212345@evil.example"),
            Err(Refusal::UnknownTarget)
        );
    }

    #[test]
    fn user_may_dial_only_listed_targets() {
        let a = authority(WITH_USER);
        let id = Identity::User("alice".into());
        assert_eq!(
            a.route(&id, "bob").expect("bob").request_uri,
            "sip:bob@127.0.0.1:5062"
        );
        assert_eq!(a.route(&id, "carol"), Err(Refusal::TargetNotAllowed));
        assert_eq!(a.route(&id, "+882123"), Err(Refusal::UnknownTarget));
    }
}
