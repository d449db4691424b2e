//! Shared harness for skybridge's integration tests: real peers (baresip, SIPp, Kamailio,
//! ffmpeg) on loopback, plus audio analysis to check media end to end.
//!
//! Every test binary includes this with `mod common;` and uses a subset, hence the allows.
//! Network rule: everything binds and advertises 127.0.0.1 only; every wait is bounded; every
//! child process is killed when its guard drops.
#![allow(dead_code, unreachable_pub)]

pub mod audio;
pub mod baresip;
pub mod ffmpeg;
pub mod kamailio;
pub mod linkproxy;
pub mod procs;
pub mod relay;
pub mod rtmp_client;
pub mod scenario;
pub mod sipp;
pub mod skybridge;
pub mod tlsutil;
pub mod uas;
pub mod ws_client;
