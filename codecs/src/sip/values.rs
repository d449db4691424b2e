//! Parsers for structured SIP header values (RFC 3261 §20, §25.1): CSeq, Via, name-addr,
//! SIP-URI, digest challenges, generic parameters, comma lists and quoted strings.
//!
//! All parsers borrow from the input. Folded whitespace (CRLF followed by SP/HT) is treated as
//! ordinary linear whitespace (LWS).

use nom::bytes::complete::{tag_no_case, take_while, take_while1};
use nom::character::complete::char;
use nom::combinator::opt;
use nom::{IResult, Parser};

use super::{Method, SipError};

/// nom result over `&str` with a unit error (no allocation, no error detail needed).
pub(crate) type R<'a, O> = IResult<&'a str, O, ()>;

/// LWS character, including the CR/LF of a fold (RFC 3261 §25.1 `LWS`).
pub(crate) fn is_lws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Trims linear whitespace (including folds) from both ends.
pub(crate) fn trim_lws(s: &str) -> &str {
    s.trim_matches(is_lws)
}

/// `token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")`
pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '!' | '%' | '*' | '_' | '+' | '`' | '\'' | '~'
        )
}

pub(crate) fn token(i: &str) -> R<'_, &str> {
    take_while1(is_token_char)(i)
}

/// `SWS = [LWS]`
fn sws(i: &str) -> R<'_, &str> {
    take_while(is_lws)(i)
}

/// `quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE`; returns the raw inner text
/// (escapes left in place).
pub(crate) fn quoted_string(i: &str) -> R<'_, &str> {
    let (body, _) = char('"').parse(i)?;
    let mut escaped = false;
    for (idx, c) in body.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            let inner = body.get(..idx).ok_or(nom::Err::Error(()))?;
            let rest = body.get(idx + 1..).ok_or(nom::Err::Error(()))?;
            return Ok((rest, inner));
        }
    }
    Err(nom::Err::Error(()))
}

/// Splits on `sep` at the top level: separators inside quoted strings (with backslash escapes)
/// or inside `<...>` are not split points.
#[derive(Clone, Debug)]
pub(crate) struct SplitTop<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> SplitTop<'a> {
    pub(crate) fn new(s: &'a str, sep: u8) -> Self {
        SplitTop { rest: Some(s), sep }
    }
}

impl<'a> Iterator for SplitTop<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let (mut in_quote, mut escaped, mut in_angle) = (false, false, false);
        for (i, &b) in s.as_bytes().iter().enumerate() {
            if in_quote {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_quote = false;
                }
                continue;
            }
            if in_angle {
                if b == b'>' {
                    in_angle = false;
                }
                continue;
            }
            match b {
                b'"' => in_quote = true,
                b'<' => in_angle = true,
                _ if b == self.sep => {
                    // `sep` is ASCII, so `i` and `i + 1` are char boundaries.
                    self.rest = s.get(i + 1..);
                    return s.get(..i);
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(s)
    }
}

/// Removes one pair of surrounding double quotes, if present (escapes are left in place).
fn unquote(v: &str) -> &str {
    match quoted_string(v) {
        Ok(("", inner)) => inner,
        _ => v,
    }
}

/// Looks up `name` (case-insensitive) in a `;`-separated parameter list (without the leading
/// `;`). `Some(None)` is a flag parameter (`;lr`), `Some(Some(v))` has a value (unquoted).
pub(crate) fn param_lookup<'a>(params: &'a str, name: &str) -> Option<Option<&'a str>> {
    for piece in SplitTop::new(params, b';') {
        let piece = trim_lws(piece);
        let (n, v) = match piece.split_once('=') {
            Some((n, v)) => (trim_lws(n), Some(unquote(trim_lws(v)))),
            None => (piece, None),
        };
        if n.eq_ignore_ascii_case(name) {
            return Some(v);
        }
    }
    None
}

/// `generic-param = token [ EQUAL gen-value ]`, `gen-value = token / host / quoted-string`,
/// applied to every element of a `;` list. Empty values (`tag=`) are rejected.
fn validate_params(params: &str) -> Result<(), ()> {
    if params.is_empty() {
        return Ok(());
    }
    for piece in SplitTop::new(params, b';') {
        let piece = trim_lws(piece);
        let (n, v) = match piece.split_once('=') {
            Some((n, v)) => (trim_lws(n), Some(trim_lws(v))),
            None => (piece, None),
        };
        if n.is_empty() || !n.chars().all(is_token_char) {
            return Err(());
        }
        if let Some(v) = v {
            if v.starts_with('"') {
                match quoted_string(v) {
                    Ok(("", _)) => {}
                    _ => return Err(()),
                }
            } else if v.is_empty()
                || v.chars()
                    .any(|c| is_lws(c) || matches!(c, '"' | ',' | '<' | '>' | ';'))
            {
                return Err(());
            }
        }
    }
    Ok(())
}

/// Parses a decimal of at most `max_digits` digits with no sign or spaces.
fn decimal(s: &str, max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `port = 1*DIGIT`, 0..=65535.
pub(crate) fn parse_port(s: &str) -> Option<u16> {
    decimal(s, 5).and_then(|p| u16::try_from(p).ok())
}

/// `host = hostname / IPv4address / IPv6reference` (lenient: `_` allowed in names).
fn host(i: &str) -> R<'_, &str> {
    if i.starts_with('[') {
        let (rest, inner) = nom::sequence::delimited(
            char('['),
            take_while1(|c: char| c.is_ascii_hexdigit() || c == ':' || c == '.'),
            char(']'),
        )
        .parse(i)?;
        let len = inner.len() + 2;
        Ok((rest, i.get(..len).ok_or(nom::Err::Error(()))?))
    } else {
        take_while1(|c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))(i)
    }
}

/// `hostport = host [ ":" port ]` with optional LWS around the colon when `lws` is true (Via).
fn hostport(i: &str, lws: bool) -> R<'_, (&str, Option<u16>)> {
    let (i, h) = host(i)?;
    let (after_ws, _) = if lws { sws(i)? } else { (i, "") };
    if let Ok((i2, _)) = char::<_, ()>(':').parse(after_ws) {
        let (i2, _) = if lws { sws(i2)? } else { (i2, "") };
        let (i2, digits) = take_while1(|c: char| c.is_ascii_digit())(i2)?;
        let port = parse_port(digits).ok_or(nom::Err::Error(()))?;
        Ok((i2, (h, Some(port))))
    } else {
        Ok((i, (h, None)))
    }
}

/// CSeq header value (RFC 3261 §20.16): `CSeq = 1*DIGIT LWS Method`; the number is < 2^31.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number, always < 2^31.
    pub seq: u32,
    /// Method the sequence number belongs to.
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Parses a CSeq header value.
    pub fn parse(value: &'a str) -> Result<Self, SipError> {
        let v = trim_lws(value);
        let res: R<'_, (&str, &str, &str)> = (
            take_while1(|c: char| c.is_ascii_digit()),
            take_while1(is_lws),
            token,
        )
            .parse(v);
        let (rest, (digits, _, method)) = res.map_err(|_| SipError::BadCSeq)?;
        if !rest.is_empty() {
            return Err(SipError::BadCSeq);
        }
        let seq = decimal(digits, 10).ok_or(SipError::BadCSeq)?;
        if seq >= 1 << 31 {
            return Err(SipError::BadCSeq);
        }
        let seq = u32::try_from(seq).map_err(|_| SipError::BadCSeq)?;
        Ok(CSeq {
            seq,
            method: Method::parse(method),
        })
    }
}

/// One `via-parm` (RFC 3261 §20.42):
/// `sent-protocol LWS sent-by *( SEMI via-params )`, `sent-protocol = "SIP" SLASH "2.0" SLASH transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport token as written (`UDP`, `TCP`, `TLS`, `WS`, ...).
    pub transport: &'a str,
    /// Host (IPv6 references keep their brackets).
    pub host: &'a str,
    /// Port, if present.
    pub port: Option<u16>,
    /// Parameters after the first `;` (without it), trimmed; `""` when none.
    pub params: &'a str,
}

impl<'a> Via<'a> {
    /// Parses one via-parm (one element of a comma-separated Via header value).
    pub fn parse(value: &'a str) -> Result<Self, SipError> {
        fn sent_protocol(i: &str) -> R<'_, (&str, &str, &str)> {
            let (i, (name, _, _, _, ver, _, _, _, transport)) = (
                token,
                sws,
                char('/'),
                sws,
                token,
                sws,
                char('/'),
                sws,
                token,
            )
                .parse(i)?;
            Ok((i, (name, ver, transport)))
        }
        let v = trim_lws(value);
        let (rest, (name, ver, transport)) = sent_protocol(v).map_err(|_| SipError::BadVia)?;
        if !name.eq_ignore_ascii_case("SIP") || ver != "2.0" {
            return Err(SipError::BadVia);
        }
        let res: R<'_, &str> = take_while1(is_lws)(rest);
        let (rest, _) = res.map_err(|_| SipError::BadVia)?;
        let (rest, (host, port)) = hostport(rest, true).map_err(|_| SipError::BadVia)?;
        let rest = trim_lws(rest);
        let params = if rest.is_empty() {
            ""
        } else {
            let p = rest.strip_prefix(';').ok_or(SipError::BadVia)?;
            trim_lws(p)
        };
        validate_params(params).map_err(|_| SipError::BadVia)?;
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// `branch` parameter value, if present and non-empty.
    pub fn branch(&self) -> Option<&'a str> {
        self.param("branch").flatten().filter(|b| !b.is_empty())
    }

    /// `received` parameter value (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<&'a str> {
        self.param("received").flatten()
    }

    /// `rport` (RFC 3581): `Some(None)` for the bare flag, `Some(Some(port))` when filled in.
    /// A non-numeric value reads as `Some(None)`.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.and_then(parse_port))
    }

    /// Generic parameter lookup (case-insensitive name, value unquoted).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        param_lookup(self.params, name)
    }
}

/// `name-addr / addr-spec` with header parameters (RFC 3261 §20.10, §20.20, §20.39):
/// `[ display-name ] LAQUOT addr-spec RAQUOT *( SEMI param )` or `addr-spec *( SEMI param )`.
/// Also accepts `*` (Contact wildcard) as `uri = "*"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name: inner text of a quoted string (escapes left raw) or the trimmed tokens.
    pub display: Option<&'a str>,
    /// The URI, without angle brackets.
    pub uri: &'a str,
    /// Header parameters after the first `;` (without it); `""` when none.
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    /// Parses a To/From/Contact/Route/Record-Route element.
    pub fn parse(s: &'a str) -> Result<Self, SipError> {
        const E: SipError = SipError::BadNameAddr;
        let s = trim_lws(s);
        if s == "*" {
            return Ok(NameAddr {
                display: None,
                uri: s,
                params: "",
            });
        }
        let (display, rest) = if s.starts_with('"') {
            let (rest, inner) = quoted_string(s).map_err(|_| E)?;
            let rest = trim_lws(rest);
            if !rest.starts_with('<') {
                return Err(E);
            }
            (Some(inner), rest)
        } else if let Some(lt) = s.find('<') {
            let d = trim_lws(s.get(..lt).ok_or(E)?);
            if d.chars().any(|c| matches!(c, '"' | '>' | ',' | ';' | '\\')) {
                return Err(E);
            }
            (
                if d.is_empty() { None } else { Some(d) },
                s.get(lt..).ok_or(E)?,
            )
        } else {
            // Bare addr-spec: parameters after the first ';' belong to the header.
            let (uri, params) = match s.split_once(';') {
                Some((u, p)) => (trim_lws(u), trim_lws(p)),
                None => (s, ""),
            };
            if uri.is_empty()
                || !uri.contains(':')
                || uri
                    .chars()
                    .any(|c| is_lws(c) || matches!(c, ',' | '?' | '<' | '>' | '"'))
            {
                return Err(E);
            }
            validate_params(params).map_err(|_| E)?;
            return Ok(NameAddr {
                display: None,
                uri,
                params,
            });
        };
        let res: R<'_, (char, &str, char)> = (
            char('<'),
            take_while1(|c: char| !is_lws(c) && !matches!(c, '<' | '>' | '"')),
            char('>'),
        )
            .parse(rest);
        let (rest, (_, uri, _)) = res.map_err(|_| E)?;
        let rest = trim_lws(rest);
        let params = if rest.is_empty() {
            ""
        } else {
            trim_lws(rest.strip_prefix(';').ok_or(E)?)
        };
        validate_params(params).map_err(|_| E)?;
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    /// `tag` parameter (RFC 3261 §19.3), if present and non-empty.
    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").flatten().filter(|t| !t.is_empty())
    }

    /// Generic header-parameter lookup (case-insensitive name, value unquoted).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        param_lookup(self.params, name)
    }
}

/// SIP/SIPS URI (RFC 3261 §19.1.1, §25.1):
/// `sip: [ userinfo "@" ] hostport uri-parameters [ headers ]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sip` or `sips` as written (compare case-insensitively).
    pub scheme: &'a str,
    /// User part (still %-escaped), if any.
    pub user: Option<&'a str>,
    /// Password (still %-escaped), if any.
    pub password: Option<&'a str>,
    /// Host; IPv6 references keep their brackets (`[2001:db8::1]`).
    pub host: &'a str,
    /// Port, if present.
    pub port: Option<u16>,
    /// URI parameters after the first `;` (without it); `""` when none.
    pub params: &'a str,
    /// Headers after `?` (without it); `""` when none.
    pub headers: &'a str,
}

impl<'a> SipUri<'a> {
    /// Parses a `sip:` or `sips:` URI.
    pub fn parse(s: &'a str) -> Result<Self, SipError> {
        const E: SipError = SipError::BadUri;
        if s.is_empty()
            || s.chars()
                .any(|c| is_lws(c) || c.is_control() || matches!(c, '<' | '>' | '"'))
        {
            return Err(E);
        }
        let res: R<'_, &str> = nom::branch::alt((tag_no_case("sips"), tag_no_case("sip"))).parse(s);
        let (rest, scheme) = res.map_err(|_| E)?;
        let res: R<'_, char> = char(':').parse(rest);
        let (rest, _) = res.map_err(|_| E)?;
        let (user, password, hostpart) = match rest.split_once('@') {
            Some((userinfo, hp)) => {
                let (u, p) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                if u.is_empty() {
                    return Err(E);
                }
                (Some(u), p, hp)
            }
            None => (None, None, rest),
        };
        let (rest, (host, port)) = hostport(hostpart, false).map_err(|_| E)?;
        let (params, headers) = if rest.is_empty() {
            ("", "")
        } else if let Some(p) = rest.strip_prefix(';') {
            p.split_once('?').unwrap_or((p, ""))
        } else if let Some(h) = rest.strip_prefix('?') {
            ("", h)
        } else {
            return Err(E);
        };
        validate_params(params).map_err(|_| E)?;
        Ok(SipUri {
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// URI parameter lookup (case-insensitive name).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        param_lookup(self.params, name)
    }
}

/// A WWW-Authenticate / Proxy-Authenticate value (RFC 3261 §20.44, §25.1 `challenge`;
/// RFC 2617 §3.2.1): `auth-scheme LWS auth-param *(COMMA auth-param)`.
/// Values are unquoted; quoted strings with backslash escapes are returned raw-inner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// Auth scheme as written (`Digest`; compare case-insensitively).
    pub scheme: &'a str,
    /// `realm`.
    pub realm: Option<&'a str>,
    /// `nonce`.
    pub nonce: Option<&'a str>,
    /// `opaque`.
    pub opaque: Option<&'a str>,
    /// `algorithm` (`MD5`, `SHA-256`, ...).
    pub algorithm: Option<&'a str>,
    /// `qop` options, e.g. `auth,auth-int`.
    pub qop: Option<&'a str>,
    /// `stale=true` (case-insensitive).
    pub stale: bool,
}

/// Parses a WWW-Authenticate / Proxy-Authenticate header value. Duplicate known parameters
/// are rejected; unknown parameters are skipped.
pub fn parse_challenge(value: &str) -> Result<Challenge<'_>, SipError> {
    const E: SipError = SipError::BadChallenge;
    let v = trim_lws(value);
    let res: R<'_, &str> = token(v);
    let (rest, scheme) = res.map_err(|_| E)?;
    let mut c = Challenge {
        scheme,
        realm: None,
        nonce: None,
        opaque: None,
        algorithm: None,
        qop: None,
        stale: false,
    };
    if rest.is_empty() {
        return Ok(c);
    }
    if !rest.starts_with(is_lws) {
        return Err(E);
    }
    let mut stale_seen = false;
    for piece in SplitTop::new(rest, b',') {
        let piece = trim_lws(piece);
        let res: R<'_, (&str, &str, char, &str)> = (token, sws, char('='), sws).parse(piece);
        let (val, (name, _, _, _)) = res.map_err(|_| E)?;
        let val = if val.starts_with('"') {
            match quoted_string(val) {
                Ok((rest, inner)) if trim_lws(rest).is_empty() => inner,
                _ => return Err(E),
            }
        } else if !val.is_empty()
            && val
                .chars()
                .all(|ch| is_token_char(ch) || ch == '/' || ch == '=')
        {
            val
        } else {
            return Err(E);
        };
        let slot = match name.to_ascii_lowercase().as_str() {
            "realm" => &mut c.realm,
            "nonce" => &mut c.nonce,
            "opaque" => &mut c.opaque,
            "algorithm" => &mut c.algorithm,
            "qop" => &mut c.qop,
            "stale" => {
                if stale_seen {
                    return Err(E);
                }
                stale_seen = true;
                c.stale = val.eq_ignore_ascii_case("true");
                continue;
            }
            _ => continue,
        };
        if slot.is_some() {
            return Err(E);
        }
        *slot = Some(val);
    }
    Ok(c)
}

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT` (returns the version number text).
pub(crate) fn sip_version(i: &str) -> R<'_, &str> {
    let (rest, _) = tag_no_case("SIP/").parse(i)?;
    let (rest2, ver) = take_while1(|c: char| c.is_ascii_digit() || c == '.')(rest)?;
    Ok((rest2, ver))
}

/// `Status-Line = SIP-Version SP Status-Code SP Reason-Phrase` (reason may be absent).
pub(crate) fn status_line(i: &str) -> R<'_, (&str, &str, &str)> {
    let (i, ver) = sip_version(i)?;
    let (i, _) = char(' ').parse(i)?;
    let (i, code) = nom::bytes::complete::take_while_m_n(3, 3, |c: char| c.is_ascii_digit())(i)?;
    let (i, reason) = opt((char(' '), nom::combinator::rest)).parse(i)?;
    match reason {
        Some((_, r)) => Ok((i, (ver, code, r))),
        None if i.is_empty() => Ok((i, (ver, code, ""))),
        None => Err(nom::Err::Error(())),
    }
}

/// `Request-Line = Method SP Request-URI SP SIP-Version`
pub(crate) fn request_line(i: &str) -> R<'_, (&str, &str, &str)> {
    let (i, (method, _, uri, _, ver)) = (
        token,
        char(' '),
        take_while1(|c: char| !is_lws(c)),
        char(' '),
        sip_version,
    )
        .parse(i)?;
    let (i, _) = nom::combinator::eof(i)?;
    Ok((i, (method, uri, ver)))
}

/// Resolves `quoted-pair`s (`\x` → `x`, RFC 3261 §25.1) in the raw inner text of a quoted
/// string, as returned by [`NameAddr::display`] or [`Challenge`] fields. Borrows when there is
/// nothing to unescape. (Re-quoting the raw inner text as `"…"` needs no escaping.)
pub fn unescape_quoted(raw: &str) -> std::borrow::Cow<'_, str> {
    if !raw.contains('\\') {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    std::borrow::Cow::Owned(out)
}
