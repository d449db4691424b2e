//! Dialog state (RFC 3261 §12): identifiers, CSeq spaces, route set and remote target, and the
//! request template used to (re)build requests.

use std::net::SocketAddr;

use skybridge_codecs::sip::MessageBuilder;

/// Max-Forwards on every request we originate (RFC 3261 §8.1.1.6).
const MAX_FORWARDS: &str = "70";

/// Content type of session descriptions.
pub(crate) const SDP: &str = "application/sdp";

/// Everything needed to (re)render one request except Via, CSeq and credentials.
#[derive(Clone, Debug)]
pub(crate) struct RequestTemplate {
    pub(crate) method: &'static str,
    pub(crate) uri: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) call_id: String,
    pub(crate) routes: Vec<String>,
    pub(crate) contact: Option<String>,
    /// Further headers written after Contact (e.g. Expires on REGISTER).
    pub(crate) extra: Vec<(&'static str, String)>,
    /// Content-Type of a non-empty body.
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
}

impl RequestTemplate {
    /// Serializes with the given Via, CSeq number/method and optional credentials header.
    pub(crate) fn render(
        &self,
        via: &str,
        cseq: u32,
        cseq_method: &str,
        auth: Option<(&str, &str)>,
        user_agent: &str,
    ) -> Vec<u8> {
        let mut b = MessageBuilder::request(self.method, &self.uri);
        b.header("Via", via).header("Max-Forwards", MAX_FORWARDS);
        for r in &self.routes {
            b.header("Route", r);
        }
        b.header("From", &self.from)
            .header("To", &self.to)
            .header("Call-ID", &self.call_id)
            .header("CSeq", &format!("{cseq} {cseq_method}"));
        if let Some(c) = &self.contact {
            b.header("Contact", c);
        }
        for (name, value) in &self.extra {
            b.header(name, value);
        }
        if let Some((name, value)) = auth {
            b.header(name, value);
        }
        if !user_agent.is_empty() {
            b.header("User-Agent", user_agent);
        }
        if self.method == "INVITE" {
            b.header("Allow", super::ua::ALLOW);
        }
        let ctype = (!self.body.is_empty()).then_some(self.content_type);
        b.finish(ctype, &self.body)
    }
}

/// Early (provisional with tag seen, or UAS before 2xx) or confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DialogState {
    Early,
    Confirmed,
}

/// One dialog (RFC 3261 §12.1). In-dialog requests are always sent to `peer` (the proxy/PBX
/// the dialog was set up through); the route set and remote target only shape the message.
#[derive(Clone, Debug)]
pub(crate) struct Dialog {
    pub(crate) state: DialogState,
    pub(crate) call_id: String,
    pub(crate) local_tag: String,
    pub(crate) remote_tag: Option<String>,
    /// Our name-addr with our tag (From of our requests).
    pub(crate) local: String,
    /// Remote name-addr as first written (UAC: our To without tag; UAS: their From with tag).
    remote_base: String,
    /// Whether `remote_base` already carries the remote tag.
    remote_base_tagged: bool,
    pub(crate) local_seq: u32,
    pub(crate) remote_seq: Option<u32>,
    /// Route set, in the order Route headers are written.
    pub(crate) route_set: Vec<String>,
    /// Remote target (Request-URI of in-dialog requests).
    pub(crate) remote_target: String,
    pub(crate) peer: SocketAddr,
}

impl Dialog {
    /// UAC side before any response: remote tag unknown, target is the Request-URI.
    pub(crate) fn uac(
        call_id: String,
        local_tag: String,
        local: String,
        remote: String,
        local_seq: u32,
        target: String,
        peer: SocketAddr,
    ) -> Self {
        Self {
            state: DialogState::Early,
            call_id,
            local_tag,
            remote_tag: None,
            local,
            remote_base: remote,
            remote_base_tagged: false,
            local_seq,
            remote_seq: None,
            route_set: Vec::new(),
            remote_target: target,
            peer,
        }
    }

    /// UAS side from an INVITE (§12.1.1): route set = Record-Route in order, remote target =
    /// Contact, remote sequence = the INVITE's CSeq.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn uas(
        call_id: String,
        local_tag: String,
        local: String,
        remote: String,
        remote_tag: String,
        remote_seq: u32,
        route_set: Vec<String>,
        target: String,
        peer: SocketAddr,
        local_seq: u32,
    ) -> Self {
        Self {
            state: DialogState::Early,
            call_id,
            local_tag,
            remote_tag: Some(remote_tag),
            local,
            remote_base: remote,
            remote_base_tagged: true,
            local_seq,
            remote_seq: Some(remote_seq),
            route_set,
            remote_target: target,
            peer,
        }
    }

    /// UAC: a 101-199 with a To tag or a 2xx arrived (§12.1.2): learn the remote tag, the
    /// route set (Record-Route reversed) and the remote target (Contact). A 2xx recomputes
    /// them and confirms the dialog.
    pub(crate) fn uac_update(
        &mut self,
        remote_tag: &str,
        record_route: Vec<String>,
        contact: Option<&str>,
        confirm: bool,
    ) {
        if self.remote_tag.is_none() || confirm {
            self.remote_tag = Some(remote_tag.to_owned());
            self.route_set = record_route.into_iter().rev().collect();
            if let Some(c) = contact {
                self.remote_target = c.to_owned();
            }
        }
        if confirm {
            self.state = DialogState::Confirmed;
        }
    }

    /// The remote name-addr with its tag, as the To of our requests.
    pub(crate) fn remote(&self) -> String {
        match (&self.remote_tag, self.remote_base_tagged) {
            (Some(tag), false) => format!("{};tag={tag}", self.remote_base),
            _ => self.remote_base.clone(),
        }
    }

    /// Whether an incoming request's From tag is this dialog's remote tag.
    pub(crate) fn remote_tag_matches(&self, from_tag: Option<&str>) -> bool {
        self.remote_tag.as_deref() == from_tag
    }

    /// §12.2.2: a request with a CSeq lower than the last one is out of order (500). Updates the
    /// remote sequence number otherwise.
    pub(crate) fn accept_remote_cseq(&mut self, seq: u32) -> bool {
        match self.remote_seq {
            Some(r) if seq < r => false,
            _ => {
                self.remote_seq = Some(seq);
                true
            }
        }
    }

    /// Next local CSeq for a new in-dialog request.
    pub(crate) fn next_seq(&mut self) -> u32 {
        self.local_seq = self.local_seq.saturating_add(1).min((1 << 31) - 1);
        self.local_seq
    }

    /// A template for a new in-dialog request (§12.2.1.1).
    pub(crate) fn request(&self, method: &'static str, contact: Option<String>) -> RequestTemplate {
        RequestTemplate {
            method,
            uri: self.remote_target.clone(),
            from: self.local.clone(),
            to: self.remote(),
            call_id: self.call_id.clone(),
            routes: self.route_set.clone(),
            contact,
            extra: Vec::new(),
            content_type: SDP,
            body: Vec::new(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "192.0.2.10:5060".parse().unwrap()
    }

    #[test]
    fn uac_reverses_record_route_and_targets_contact() {
        let mut d = Dialog::uac(
            "cid".into(),
            "lt".into(),
            "<sip:a@x>;tag=lt".into(),
            "<sip:b@y>".into(),
            1,
            "sip:b@y".into(),
            peer(),
        );
        d.uac_update(
            "rt",
            vec!["<sip:p2;lr>".into(), "<sip:p1;lr>".into()],
            Some("sip:b@10.0.0.2"),
            true,
        );
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(d.route_set, ["<sip:p1;lr>", "<sip:p2;lr>"]);
        let t = d.request("BYE", None);
        assert_eq!(t.uri, "sip:b@10.0.0.2");
        assert_eq!(t.to, "<sip:b@y>;tag=rt");
        assert_eq!(t.from, "<sip:a@x>;tag=lt");
        assert_eq!(d.next_seq(), 2);
    }

    #[test]
    fn early_update_does_not_override_learned_tag_but_2xx_does() {
        let mut d = Dialog::uac(
            "c".into(),
            "l".into(),
            "<sip:a@x>;tag=l".into(),
            "<sip:b@y>".into(),
            1,
            "sip:b@y".into(),
            peer(),
        );
        d.uac_update("t1", vec![], Some("sip:first@h"), false);
        d.uac_update("t2", vec![], Some("sip:second@h"), false);
        assert_eq!(d.remote_tag.as_deref(), Some("t1"));
        assert_eq!(d.remote_target, "sip:first@h");
        d.uac_update("t2", vec![], None, true);
        assert_eq!(d.remote_tag.as_deref(), Some("t2"));
        assert_eq!(d.remote_target, "sip:first@h");
    }

    #[test]
    fn out_of_order_remote_cseq_is_refused() {
        let mut d = Dialog::uas(
            "c".into(),
            "l".into(),
            "<sip:b@y>;tag=l".into(),
            "<sip:a@x>;tag=r".into(),
            "r".into(),
            10,
            vec![],
            "sip:a@h".into(),
            peer(),
            1,
        );
        assert!(d.accept_remote_cseq(11));
        assert!(!d.accept_remote_cseq(5));
        assert_eq!(d.remote(), "<sip:a@x>;tag=r");
        assert!(d.remote_tag_matches(Some("r")));
        assert!(!d.remote_tag_matches(Some("x")));
    }
}
