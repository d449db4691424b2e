//! The hostile-input tests' view of skybridge: per-section config lines, on top of the one
//! launcher in [`super::skybridge`].

use std::path::Path;

#[allow(unused_imports)] // not every test binary names it
pub use super::skybridge::Skybridge as Relay;
use super::skybridge::{Skybridge, SkybridgeOpts};

/// Extra lines per section of the generated configuration (appended after the port settings).
#[derive(Debug, Clone, Default)]
pub struct RelayOpts {
    pub rtmp: Vec<String>,
    pub sip: Vec<String>,
    pub auth: Vec<String>,
    pub limits: Vec<String>,
    /// `name = "sip:…"` lines.
    pub dialplan: Vec<String>,
    /// Raw TOML appended at the end (e.g. `[[users]]` blocks).
    pub tail: String,
}

impl RelayOpts {
    /// Starts skybridge with these lines (every port free-allocated on loopback), waiting for
    /// `/readyz`.
    pub fn start(&self, dir: &Path) -> Skybridge {
        let lines = |v: &[String]| v.join("\n");
        // The generated config ends with `[dialplan]` then the tail: dial-plan lines lead it.
        let tail = format!("{}\n{}", lines(&self.dialplan), self.tail);
        Skybridge::start(
            dir,
            &SkybridgeOpts {
                rtmp: lines(&self.rtmp),
                sip: lines(&self.sip),
                auth: lines(&self.auth),
                limits: lines(&self.limits),
                tail,
                ..Default::default()
            },
        )
    }
}
