//! A B2BUA call: one client leg bridged to one SIP dialog and one RTP leg.

pub mod client_queue;
pub mod core;
pub mod driver;
pub mod pacer;

pub use self::core::{CallCore, CallSettings, ClientCommand, Output, State};
