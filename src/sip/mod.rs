//! SIP user agent (sans-IO transactions, dialogs, digest).

mod dialog;
pub mod digest;
pub mod timer;
mod transaction;
mod ua;

pub use ua::{
    CallHandle, Credentials, OutgoingCall, RegHandle, Registration, Transmit, UaConfig, UaEvent,
    UserAgent, DEFAULT_MAX_REGISTRATIONS, DEFAULT_MAX_TRANSACTIONS, REINVITE_ANSWER_TIMEOUT,
};
