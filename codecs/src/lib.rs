//! Pure encode/decode for skybridge: wire formats and audio codecs.
//!
//! No sockets, no tokio, no clock. Every parser takes borrowed bytes, has a size limit,
//! never panics on untrusted input and has a fuzz target in `fuzz/`.
#![forbid(unsafe_code)]

pub mod aac;
pub mod amf0;
pub mod classify;
pub mod flv;
pub mod g711;
pub mod g722;
pub mod l16;
pub mod nellymoser;
pub mod opus;
pub mod resample;
pub mod rfc4571;
pub mod rtcp;
pub mod rtmp;
pub mod rtp;
pub mod sdp;
pub mod signal;
pub mod sip;
pub mod speex;
pub mod tone;
pub mod websocket;
