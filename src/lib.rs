//! skybridge: an edge media relay between client-friendly transports and SIP/RTP.
//!
//! ```text
//!   client legs (TCP)                                       network leg (UDP)
//!   RTMP ──► door ──► transport ──► session ──► call ──┬── sip (UserAgent) ── PBX / proxy
//!            (caps,    (sans-IO      (token,     (sans-IO └── rtp_leg ───────── media peer
//!             deadlines) session)     dial plan)  core + driver)
//! ```
//! Cores (`call::core`, `sip`, `rtmp`, everything in `skybridge-codecs`) are sans-IO: bytes
//! and `now` in, transmits/events/next wake-up out. Drivers (`call::driver`, `sip_endpoint`,
//! `door::*`, `builtin`) own sockets, timers and channels and stay thin.
#![deny(unsafe_code)]

pub mod builtin;
pub mod call;
pub mod config;
pub mod door;
pub mod inbound;
pub mod media;
pub mod ops;
pub mod presence;
pub mod relay;
pub mod rtmp;
pub mod rtp_leg;
pub mod session;
pub mod sip;
pub mod sip_endpoint;
pub mod transcode;
pub mod tunnel;
pub mod web;
pub mod ws;
