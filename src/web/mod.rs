//! The browser softphone page, compiled into the binary and served by the HTTP listener.
//!
//! Plain files, no build step: `index.html` loads `style.css` and the ES module `app.js`, which
//! loads the audio worklets from `worklet.js` and speaks WS-PROTOCOL v1 to `/ws`.

/// `index.html`: the page itself (served at `/` and `/index.html`).
pub const INDEX_HTML: &str = include_str!("index.html");
/// `app.js`: signalling, G.711 µ-law/A-law, audio engine, UI and test hooks (`window.__skybridge`).
pub const APP_JS: &str = include_str!("app.js");
/// `worklet.js`: capture (context rate → 8 kHz frames) and playout (jitter buffer → context rate).
pub const WORKLET_JS: &str = include_str!("worklet.js");
/// `style.css`: the page's stylesheet.
pub const STYLE_CSS: &str = include_str!("style.css");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Looks up a page asset by request path (the query string, if any, is ignored).
///
/// Returns the `Content-Type` and the body, or `None` for any other path.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let (content_type, body) = match path {
        "/" | "/index.html" => (HTML, INDEX_HTML),
        "/app.js" => (JS, APP_JS),
        "/worklet.js" => (JS, WORKLET_JS),
        "/style.css" => (CSS, STYLE_CSS),
        _ => return None,
    };
    Some((content_type, body.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_index_serve_the_page_as_html() {
        for path in ["/", "/index.html", "/?token=x"] {
            let (ct, body) = asset(path).unwrap();
            assert!(ct.starts_with("text/html"), "{path}: {ct}");
            assert_eq!(body, INDEX_HTML.as_bytes());
        }
    }

    #[test]
    fn scripts_and_styles_have_their_content_types() {
        assert_eq!(asset("/app.js").unwrap().0, JS);
        assert_eq!(asset("/worklet.js").unwrap().0, JS);
        assert_eq!(asset("/style.css").unwrap().0, CSS);
    }

    #[test]
    fn unknown_and_traversal_paths_are_not_assets() {
        for path in [
            "",
            "/ws",
            "/mod.rs",
            "/../Cargo.toml",
            "/app.js/",
            "/APP.JS",
            "/web/app.js",
            "app.js",
        ] {
            assert!(asset(path).is_none(), "{path}");
        }
    }

    /// Every `src=` / `href=` in the page and every module URL in app.js is served by `asset`
    /// (nothing comes from a CDN or another origin).
    #[test]
    fn every_url_the_page_loads_is_a_served_asset() {
        let mut urls = Vec::new();
        for attr in ["src=\"", "href=\""] {
            for part in INDEX_HTML.split(attr).skip(1) {
                urls.push(part.split('"').next().unwrap().to_string());
            }
        }
        for part in APP_JS.split("new URL(\"").skip(1) {
            urls.push(part.split('"').next().unwrap().to_string());
        }
        assert!(urls.len() >= 3, "{urls:?}");
        for url in urls.into_iter().filter(|u| !u.starts_with("data:")) {
            assert!(!url.contains("//"), "absolute URL {url}");
            assert!(asset(&format!("/{url}")).is_some(), "{url} is not served");
        }
    }

    #[test]
    fn page_speaks_protocol_v1_on_ws_with_the_subprotocol() {
        assert!(APP_JS.contains("\"skybridge.v1\""));
        assert!(APP_JS.contains("/ws`"));
        assert!(APP_JS.contains("type: \"hello\", version: 1"));
        assert!(WORKLET_JS.contains("registerProcessor(\"sb-capture\""));
        assert!(WORKLET_JS.contains("registerProcessor(\"sb-playout\""));
    }
}
