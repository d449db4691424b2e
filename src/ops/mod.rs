//! Operations: Prometheus metrics and the HTTP endpoints that expose health and readiness.

pub mod http;
pub mod metrics;
