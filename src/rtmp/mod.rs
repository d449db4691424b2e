//! RTMP client transport (sans-IO session).
