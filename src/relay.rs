//! Wires the layers together: listeners, SIP endpoint, calls. (Being written by the lead.)

use crate::config::Config;

/// A running relay.
pub struct Relay {
    _config: Config,
}

impl Relay {
    /// Binds every listener named in `config` and starts serving.
    pub async fn start(config: Config) -> std::io::Result<Relay> {
        Ok(Relay { _config: config })
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        0
    }

    /// Stops accepting, hangs up every call cleanly (BYE/CANCEL) and returns when done.
    pub async fn shutdown(self) {}
}
