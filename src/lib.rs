//! skybridge: an edge media relay between client-friendly transports and SIP/RTP.
#![deny(unsafe_code)]

pub mod media;
pub mod rtmp;
pub mod sip;
