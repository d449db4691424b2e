//! skybridge: an edge media relay between client-friendly transports and SIP/RTP.
#![deny(unsafe_code)]

pub mod call;
pub mod config;
pub mod media;
pub mod ops;
pub mod relay;
pub mod session;
pub mod rtmp;
pub mod sip;
