//! SIP user agent (sans-IO transactions, dialogs, digest).

pub mod digest;
pub mod timer;
mod transaction;
