//! HTTP Digest client side for SIP (RFC 2617, RFC 7616, RFC 8760): MD5 and SHA-256, with
//! `qop=auth` (cnonce/nc) or without qop.
//!
//! This module only computes; *whether* a challenge may be answered (our transaction, the peer
//! we sent to, the configured realm: HOSTILE-INPUTS row 13) is decided by the user agent before
//! it calls [`authorize`].

use md5::Md5;
use sha2::Sha256;
use std::fmt::Write as _;

/// Hash algorithm of a digest challenge (RFC 7616 §3.3, RFC 8760).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// `MD5` (also the default when the challenge names none).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    /// Parses the `algorithm` parameter; `None` (absent) means MD5. Unknown names (SHA-512-256,
    /// AKAv1-MD5, ...) return `None`.
    pub fn from_param(value: Option<&str>) -> Option<Self> {
        let Some(v) = value else {
            return Some(Self::Md5);
        };
        let v = v.trim().trim_matches('"');
        [
            ("MD5", Self::Md5),
            ("MD5-sess", Self::Md5Sess),
            ("SHA-256", Self::Sha256),
            ("SHA-256-sess", Self::Sha256Sess),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(v))
        .map(|(_, a)| a)
    }

    /// Token as written in the Authorization header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Preference when several challenges are offered (RFC 8760 §2.4: strongest first).
    pub fn strength(self) -> u8 {
        match self {
            Self::Md5 | Self::Md5Sess => 1,
            Self::Sha256 | Self::Sha256Sess => 2,
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }

    /// Lower-case hex of the hash of `parts` joined by `:`.
    pub fn hex(self, parts: &[&str]) -> String {
        fn run<D: md5::Digest>(parts: &[&str]) -> String {
            let mut h = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    h.update(b":");
                }
                h.update(p.as_bytes());
            }
            let out = h.finalize();
            let mut s = String::with_capacity(out.len() * 2);
            for b in out.iter() {
                let _ = write!(s, "{b:02x}");
            }
            s
        }
        match self {
            Self::Md5 | Self::Md5Sess => run::<Md5>(parts),
            Self::Sha256 | Self::Sha256Sess => run::<Sha256>(parts),
        }
    }
}

/// The fields of a challenge the computation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChallengeParams<'a> {
    /// `realm`.
    pub realm: &'a str,
    /// `nonce`.
    pub nonce: &'a str,
    /// `opaque`, echoed back.
    pub opaque: Option<&'a str>,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Whether the challenge offered `qop=auth` (we then answer with qop=auth, cnonce, nc).
    pub qop_auth: bool,
}

/// Client-chosen values for a qop response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientNonce<'a> {
    /// `cnonce`.
    pub cnonce: &'a str,
    /// Nonce count (written as 8 hex digits).
    pub nc: u32,
}

/// Whether a challenge's `qop` list (`"auth,auth-int"`) includes `auth`.
pub fn qop_offers_auth(qop: &str) -> bool {
    qop.trim_matches('"')
        .split(',')
        .any(|q| q.trim().eq_ignore_ascii_case("auth"))
}

/// The `response` value (RFC 7616 §3.4.1; RFC 2617 §3.2.2.1 when there is no qop).
///
/// `HA1 = H(user:realm:pass)` (`-sess`: `H(HA1:nonce:cnonce)`), `HA2 = H(method:uri)`,
/// `response = H(HA1:nonce:nc:cnonce:qop:HA2)` or `H(HA1:nonce:HA2)` without qop.
pub fn response(
    ch: &ChallengeParams<'_>,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    client: ClientNonce<'_>,
) -> String {
    let alg = ch.algorithm;
    let mut ha1 = alg.hex(&[username, ch.realm, password]);
    if alg.is_sess() {
        ha1 = alg.hex(&[&ha1, ch.nonce, client.cnonce]);
    }
    let ha2 = alg.hex(&[method, uri]);
    if ch.qop_auth {
        let nc = format!("{:08x}", client.nc);
        alg.hex(&[&ha1, ch.nonce, &nc, client.cnonce, "auth", &ha2])
    } else {
        alg.hex(&[&ha1, ch.nonce, &ha2])
    }
}

/// Quotes `s` as a quoted-string, escaping `"` and `\`.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The full `Authorization` / `Proxy-Authorization` header value.
pub fn authorize(
    ch: &ChallengeParams<'_>,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    client: ClientNonce<'_>,
) -> String {
    let resp = response(ch, username, password, method, uri, client);
    let mut v = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{}\", algorithm={}",
        quoted(username),
        quoted(ch.realm),
        quoted(ch.nonce),
        quoted(uri),
        resp,
        ch.algorithm.as_str()
    );
    if ch.qop_auth {
        let _ = write!(
            v,
            ", cnonce={}, qop=auth, nc={:08x}",
            quoted(client.cnonce),
            client.nc
        );
    }
    if let Some(opaque) = ch.opaque {
        let _ = write!(v, ", opaque={}", quoted(opaque));
    }
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn md5_qop_auth_matches_rfc2617_example() {
        // RFC 2617 §3.5.
        let ch = ChallengeParams {
            realm: "testrealm@host.com",
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            opaque: Some("5ccc069c403ebaf9f0171e9517f40e41"),
            algorithm: Algorithm::Md5,
            qop_auth: true,
        };
        let client = ClientNonce {
            cnonce: "0a4f113b",
            nc: 1,
        };
        let r = response(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            client,
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn md5_and_sha256_match_rfc7616_examples() {
        // RFC 7616 §3.9.1.
        let mut ch = ChallengeParams {
            realm: "http-auth@example.org",
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            opaque: Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"),
            algorithm: Algorithm::Md5,
            qop_auth: true,
        };
        let client = ClientNonce {
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            nc: 1,
        };
        let args = ("Mufasa", "Circle of Life", "GET", "/dir/index.html");
        assert_eq!(
            response(&ch, args.0, args.1, args.2, args.3, client),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        ch.algorithm = Algorithm::Sha256;
        assert_eq!(
            response(&ch, args.0, args.1, args.2, args.3, client),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn no_qop_uses_rfc2069_form() {
        let ch = ChallengeParams {
            realm: "r",
            nonce: "n",
            opaque: None,
            algorithm: Algorithm::Md5,
            qop_auth: false,
        };
        let client = ClientNonce { cnonce: "c", nc: 1 };
        let a = Algorithm::Md5;
        let expected = a.hex(&[&a.hex(&["u", "r", "p"]), "n", &a.hex(&["BYE", "sip:x"])]);
        assert_eq!(response(&ch, "u", "p", "BYE", "sip:x", client), expected);
        let header = authorize(&ch, "u", "p", "BYE", "sip:x", client);
        assert!(!header.contains("qop"));
        assert!(!header.contains("cnonce"));
        assert!(header.starts_with("Digest username=\"u\", realm=\"r\", nonce=\"n\""));
    }

    #[test]
    fn authorization_header_carries_qop_nc_cnonce_opaque() {
        let ch = ChallengeParams {
            realm: "asterisk",
            nonce: "abc",
            opaque: Some("op"),
            algorithm: Algorithm::Sha256,
            qop_auth: true,
        };
        let h = authorize(
            &ch,
            "alice",
            "pw",
            "INVITE",
            "sip:bob@pbx",
            ClientNonce {
                cnonce: "cn",
                nc: 1,
            },
        );
        assert!(h.contains("algorithm=SHA-256"));
        assert!(h.contains("qop=auth, nc=00000001"));
        assert!(h.contains("cnonce=\"cn\""));
        assert!(h.contains("opaque=\"op\""));
        assert!(h.contains("uri=\"sip:bob@pbx\""));
    }

    #[test]
    fn algorithm_names_parse_case_insensitively_and_unknown_is_refused() {
        assert_eq!(Algorithm::from_param(None), Some(Algorithm::Md5));
        assert_eq!(
            Algorithm::from_param(Some("sha-256")),
            Some(Algorithm::Sha256)
        );
        assert_eq!(
            Algorithm::from_param(Some("\"MD5-sess\"")),
            Some(Algorithm::Md5Sess)
        );
        assert_eq!(Algorithm::from_param(Some("SHA-512-256")), None);
        assert!(qop_offers_auth("\"auth,auth-int\""));
        assert!(!qop_offers_auth("auth-int"));
    }
}
