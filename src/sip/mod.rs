//! SIP user agent (sans-IO transactions, dialogs, digest).

mod dialog;
pub mod digest;
pub mod timer;
mod transaction;
mod ua;

pub use ua::{
    CallHandle, Credentials, OutgoingCall, Transmit, UaConfig, UaEvent, UserAgent,
    DEFAULT_MAX_TRANSACTIONS,
};
