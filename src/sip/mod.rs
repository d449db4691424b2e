//! SIP user agent (sans-IO transactions, dialogs, digest).
