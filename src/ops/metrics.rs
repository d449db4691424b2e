//! Metric names, their descriptions, and the Prometheus recorder.
//!
//! Names follow `skybridge_<area>_<what>_<unit>`. Cores emit events; drivers record them with the
//! `metrics` macros using the constants below, e.g.
//! `metrics::counter!(CALLS_TOTAL, label::OUTCOME => outcome::ANSWERED).increment(1)`.
//! The recorder is installed once by the binary ([`install`]); `/metrics` renders its handle.

use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Client connections accepted. Labels: `transport`.
pub const CLIENT_CONNECTIONS_TOTAL: &str = "skybridge_client_connections_total";
/// Client connections open now (gauge). Labels: `transport`.
pub const CLIENT_CONNECTIONS_ACTIVE: &str = "skybridge_client_connections_active";
/// Client connections or requests refused. Labels: `transport`, `reason`.
pub const CLIENT_REJECTED_TOTAL: &str = "skybridge_client_rejected_total";
/// Client connections closed because nothing arrived from the peer for `limits.dead_peer_secs`
/// (its calls are hung up). Labels: `transport`.
pub const CLIENT_DEAD_PEER_TOTAL: &str = "skybridge_client_dead_peer_total";

/// Calls in progress (gauge).
pub const CALLS_ACTIVE: &str = "skybridge_calls_active";
/// Calls ended. Labels: `outcome` (see [`outcome`]).
pub const CALLS_TOTAL: &str = "skybridge_calls_total";
/// Time from a client's dial to the SIP answer (histogram, seconds).
pub const CALL_SETUP_SECONDS: &str = "skybridge_call_setup_seconds";

/// SIP responses. Labels: `code`, `direction`.
pub const SIP_RESPONSES_TOTAL: &str = "skybridge_sip_responses_total";
/// SIP requests. Labels: `method`, `direction`.
pub const SIP_REQUESTS_TOTAL: &str = "skybridge_sip_requests_total";
/// SIP datagrams or messages discarded. Labels: `reason`.
pub const SIP_DROPPED_TOTAL: &str = "skybridge_sip_dropped_total";

/// Media packets relayed. Labels: `leg`, `direction`.
pub const PACKETS_TOTAL: &str = "skybridge_packets_total";
/// Media bytes relayed (payload plus the leg's packet header). Labels: `leg`, `direction`.
pub const BYTES_TOTAL: &str = "skybridge_bytes_total";
/// Media packets discarded. Labels: `reason` (see [`drop_reason`]); late and queue-full drops
/// also carry `leg`: [`leg::RTP`] for the pacer toward SIP, the client's transport for the
/// queue toward a client.
pub const PACKETS_DROPPED_TOTAL: &str = "skybridge_packets_dropped_total";
/// Current delay of the client leg (gauge, seconds): how long the audio frame most recently
/// written toward (or discarded before) a client of this transport waited in skybridge.
/// Labels: `transport`.
pub const CLIENT_DELAY_SECONDS: &str = "skybridge_client_delay_seconds";

/// RTP ports allocated from the pool (gauge).
pub const RTP_PORTS_IN_USE: &str = "skybridge_rtp_ports_in_use";

/// Calls by the codec of their client leg and of their SIP leg (gauge). Labels: `client`,
/// `sip` (codec names such as `pcmu`, `g722`, `nellymoser`).
pub const CALLS_BY_CODEC_PAIR: &str = "skybridge_calls_by_codec_pair";
/// Calls transcoding now (gauge): a leg's codec differs from the other's beyond a µ⇄A-law
/// table lookup.
pub const TRANSCODING_CALLS: &str = "skybridge_transcoding_calls";
/// Audio frames synthesised toward clients by packet loss concealment (repeat and fade).
pub const PLC_FRAMES_TOTAL: &str = "skybridge_plc_frames_total";

/// Counter: lost frames toward a client decoded from the next Opus packet's in-band FEC data
/// (libopus conceals instead when that packet carries none).
pub const FEC_DECODED_FRAMES_TOTAL: &str = "skybridge_fec_decoded_frames_total";

/// Every metric name, for documentation and tests.
pub const ALL: [&str; 19] = [
    CLIENT_CONNECTIONS_TOTAL,
    CLIENT_CONNECTIONS_ACTIVE,
    CLIENT_REJECTED_TOTAL,
    CLIENT_DEAD_PEER_TOTAL,
    CALLS_ACTIVE,
    CALLS_TOTAL,
    CALL_SETUP_SECONDS,
    SIP_RESPONSES_TOTAL,
    SIP_REQUESTS_TOTAL,
    SIP_DROPPED_TOTAL,
    PACKETS_TOTAL,
    BYTES_TOTAL,
    PACKETS_DROPPED_TOTAL,
    CLIENT_DELAY_SECONDS,
    RTP_PORTS_IN_USE,
    CALLS_BY_CODEC_PAIR,
    TRANSCODING_CALLS,
    PLC_FRAMES_TOTAL,
    FEC_DECODED_FRAMES_TOTAL,
];

/// Label keys.
pub mod label {
    /// `rtmp`, `ws`, `rfc4571`, `http`.
    pub const TRANSPORT: &str = "transport";
    /// Why something was refused or dropped.
    pub const REASON: &str = "reason";
    /// See [`super::outcome`].
    pub const OUTCOME: &str = "outcome";
    /// SIP status code, e.g. `"486"`.
    pub const CODE: &str = "code";
    /// SIP method, e.g. `"INVITE"`.
    pub const METHOD: &str = "method";
    /// [`super::direction::IN`] or [`super::direction::OUT`].
    pub const DIRECTION: &str = "direction";
    /// [`super::leg::RTP`] or a client transport ([`super::leg::RTMP`], `websocket`,
    /// `rfc4571`).
    pub const LEG: &str = "leg";
}

/// Label keys of [`CALLS_BY_CODEC_PAIR`].
pub mod codec_label {
    /// Codec of the client leg.
    pub const CLIENT: &str = "client";
    /// Codec of the SIP leg.
    pub const SIP: &str = "sip";
}

/// Values of the `outcome` label of [`CALLS_TOTAL`].
pub mod outcome {
    pub const ANSWERED: &str = "answered";
    pub const FAILED: &str = "failed";
    pub const REJECTED: &str = "rejected";
    pub const CANCELLED: &str = "cancelled";
}

/// Values of the `direction` label.
pub mod direction {
    /// Received by the relay.
    pub const IN: &str = "in";
    /// Sent by the relay.
    pub const OUT: &str = "out";
}

/// Values of the `leg` label.
pub mod leg {
    pub const RTP: &str = "rtp";
    pub const RTMP: &str = "rtmp";
}

/// Common values of the `reason` label of [`PACKETS_DROPPED_TOTAL`].
pub mod drop_reason {
    /// Older than `rtp.max_delay_ms` on its way to RTP (`leg="rtp"`) or to a client
    /// (`leg=<transport>`).
    pub const LATE: &str = "late";
    /// A bounded queue was full.
    pub const QUEUE_FULL: &str = "queue_full";
    /// RTP from an address other than the negotiated peer.
    pub const WRONG_SOURCE: &str = "wrong_source";
    /// Did not parse.
    pub const MALFORMED: &str = "malformed";
    /// Payload type / codec not negotiated.
    pub const UNSUPPORTED_CODEC: &str = "unsupported_codec";
    /// The transcoding pool's queue for this call was full (the frame was not converted).
    pub const TRANSCODE_BUSY: &str = "transcode_busy";
    /// A frame that could not be decoded (malformed for its codec, too long).
    pub const TRANSCODE_ERROR: &str = "transcode_error";
}

/// Histogram buckets of [`CALL_SETUP_SECONDS`] (seconds).
pub const CALL_SETUP_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0,
];

/// How often [`spawn_upkeep`] drains histogram buffers.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Registers a description (and unit) for every metric with the current recorder.
pub fn describe() {
    describe_counter!(
        CLIENT_CONNECTIONS_TOTAL,
        Unit::Count,
        "Client connections accepted, by transport."
    );
    describe_gauge!(
        CLIENT_CONNECTIONS_ACTIVE,
        Unit::Count,
        "Client connections open now, by transport."
    );
    describe_counter!(
        CLIENT_REJECTED_TOTAL,
        Unit::Count,
        "Client connections or requests refused, by transport and reason."
    );
    describe_counter!(
        CLIENT_DEAD_PEER_TOTAL,
        Unit::Count,
        "Client connections closed as dead (nothing arrived for limits.dead_peer_secs), by transport."
    );
    describe_gauge!(CALLS_ACTIVE, Unit::Count, "Calls in progress.");
    describe_counter!(
        CALLS_TOTAL,
        Unit::Count,
        "Calls ended, by outcome (answered, failed, rejected, cancelled)."
    );
    describe_histogram!(
        CALL_SETUP_SECONDS,
        Unit::Seconds,
        "Time from a client's dial to the SIP answer."
    );
    describe_counter!(
        SIP_RESPONSES_TOTAL,
        Unit::Count,
        "SIP responses, by status code and direction."
    );
    describe_counter!(
        SIP_REQUESTS_TOTAL,
        Unit::Count,
        "SIP requests, by method and direction."
    );
    describe_counter!(
        SIP_DROPPED_TOTAL,
        Unit::Count,
        "SIP messages discarded, by reason."
    );
    describe_counter!(
        PACKETS_TOTAL,
        Unit::Count,
        "Media packets relayed, by leg and direction."
    );
    describe_counter!(
        BYTES_TOTAL,
        Unit::Bytes,
        "Media bytes relayed, by leg and direction."
    );
    describe_counter!(
        PACKETS_DROPPED_TOTAL,
        Unit::Count,
        "Media packets discarded, by reason."
    );
    describe_gauge!(
        CLIENT_DELAY_SECONDS,
        Unit::Seconds,
        "How long the audio frame most recently written toward (or discarded before) a client waited in skybridge, by transport."
    );
    describe_gauge!(
        RTP_PORTS_IN_USE,
        Unit::Count,
        "RTP ports allocated from the pool."
    );
    describe_gauge!(
        CALLS_BY_CODEC_PAIR,
        Unit::Count,
        "Calls in progress by client-leg codec and SIP-leg codec."
    );
    describe_gauge!(
        TRANSCODING_CALLS,
        Unit::Count,
        "Calls in progress that transcode (beyond a G.711 law swap)."
    );
    describe_counter!(
        PLC_FRAMES_TOTAL,
        Unit::Count,
        "Audio frames synthesised toward clients by packet loss concealment."
    );
    describe_counter!(
        FEC_DECODED_FRAMES_TOTAL,
        Unit::Count,
        "Lost audio frames toward clients decoded from the next Opus packet's in-band FEC data (libopus conceals instead when that packet carries none)."
    );
}

/// Sets the unlabelled gauges to 0 so `/metrics` shows them before the first call.
pub fn publish_initial_values() {
    metrics::gauge!(CALLS_ACTIVE).set(0.0);
    metrics::gauge!(RTP_PORTS_IN_USE).set(0.0);
}

/// The builder with skybridge's histogram buckets; [`install`] uses it, tests build local
/// recorders from it.
pub fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Full(CALL_SETUP_SECONDS.to_string()),
        &CALL_SETUP_BUCKETS,
    )
}

/// Installs the global Prometheus recorder and returns the handle `/metrics` renders.
/// Call [`describe`] afterwards and keep [`spawn_upkeep`] running.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    builder()?.install_recorder()
}

/// Runs `handle.run_upkeep()` every `period` until the task is aborted.
pub fn spawn_upkeep(handle: PrometheusHandle, period: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn record_one_of_each() {
        metrics::counter!(CLIENT_CONNECTIONS_TOTAL, label::TRANSPORT => "rtmp").increment(1);
        metrics::gauge!(CLIENT_CONNECTIONS_ACTIVE, label::TRANSPORT => "rtmp").set(1.0);
        metrics::counter!(CLIENT_REJECTED_TOTAL, label::TRANSPORT => "rtmp", label::REASON => "per_ip")
            .increment(1);
        metrics::gauge!(CALLS_ACTIVE).set(1.0);
        metrics::counter!(CALLS_TOTAL, label::OUTCOME => outcome::ANSWERED).increment(1);
        metrics::histogram!(CALL_SETUP_SECONDS).record(0.7);
        metrics::counter!(SIP_RESPONSES_TOTAL, label::CODE => "200", label::DIRECTION => direction::IN)
            .increment(1);
        metrics::counter!(SIP_REQUESTS_TOTAL, label::METHOD => "INVITE", label::DIRECTION => direction::OUT)
            .increment(1);
        metrics::counter!(SIP_DROPPED_TOTAL, label::REASON => "malformed").increment(1);
        metrics::counter!(PACKETS_TOTAL, label::LEG => leg::RTP, label::DIRECTION => direction::IN)
            .increment(1);
        metrics::counter!(BYTES_TOTAL, label::LEG => leg::RTP, label::DIRECTION => direction::IN)
            .increment(172);
        metrics::counter!(PACKETS_DROPPED_TOTAL, label::REASON => drop_reason::LATE, label::LEG => leg::RTP).increment(1);
        metrics::gauge!(CLIENT_DELAY_SECONDS, label::TRANSPORT => "websocket").set(0.02);
        metrics::gauge!(RTP_PORTS_IN_USE).set(2.0);
        metrics::counter!(CLIENT_DEAD_PEER_TOTAL, label::TRANSPORT => "rtmp").increment(1);
        metrics::gauge!(CALLS_BY_CODEC_PAIR, codec_label::CLIENT => "nellymoser", codec_label::SIP => "pcmu").set(1.0);
        metrics::gauge!(TRANSCODING_CALLS).set(1.0);
        metrics::counter!(PLC_FRAMES_TOTAL).increment(1);
        metrics::counter!(FEC_DECODED_FRAMES_TOTAL).increment(1);
    }

    #[test]
    fn every_metric_renders_with_its_description() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            record_one_of_each();
        });
        let text = handle.render();
        for name in ALL {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing from:\n{text}"
            );
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP line:\n{text}"
            );
        }
    }

    #[test]
    fn names_follow_the_naming_scheme_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for name in ALL {
            assert!(name.starts_with("skybridge_"), "{name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert!(seen.insert(name), "duplicate {name}");
        }
    }

    #[test]
    fn call_setup_is_a_histogram_with_configured_buckets() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!(CALL_SETUP_SECONDS).record(0.07);
        });
        let text = handle.render();
        assert!(
            text.contains(&format!("{CALL_SETUP_SECONDS}_bucket{{le=\"0.05\"}} 0")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{CALL_SETUP_SECONDS}_bucket{{le=\"0.1\"}} 1")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{CALL_SETUP_SECONDS}_bucket{{le=\"30\"}} 1")),
            "{text}"
        );
    }
}
