//! The ward screen's files, compiled into the binary from `storage/ui/`.
//!
//! Hand-written HTML, CSS and JavaScript with SVG charts: no framework, no package to
//! vendor, nothing fetched at run time. Every response carries a Content-Security-Policy
//! that allows only this origin's scripts, styles and connections (no inline script or
//! style, no frames, no forms posting elsewhere), so an injected string can run nothing.
//! Files are revalidated on every load (`no-cache` with a strong `ETag`, the SHA-256 of
//! the content): a browser keeps its copy and gets `304 Not Modified` until the binary
//! changes, and never shows a stale page after an upgrade.

use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderName, HeaderValue,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Response, StatusCode};
use wardseal_core::hash::Hash;

/// The policy every ward-screen response carries.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One file of the page.
#[derive(Debug)]
pub struct Asset {
    /// Its name under `/ui/`.
    pub name: &'static str,
    /// Its media type.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// Every file, by name.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/style.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../ui/icon.svg"),
    },
];

/// The file named `name`, if the page has one.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

impl Asset {
    /// Its entity tag: the SHA-256 of its bytes, quoted (computed once per file).
    pub fn etag(&self) -> &'static str {
        static TAGS: OnceLock<Vec<String>> = OnceLock::new();
        let tags = TAGS.get_or_init(|| {
            ASSETS
                .iter()
                .map(|asset| format!("\"{}\"", Hash::sha256(asset.body)))
                .collect()
        });
        ASSETS
            .iter()
            .position(|asset| asset.name == self.name)
            .and_then(|index| tags.get(index))
            .map_or("\"\"", String::as_str)
    }

    /// The response to a GET of this file: `304` when `if_none_match` names its tag.
    pub fn response(&self, if_none_match: Option<&str>) -> Response<Full<Bytes>> {
        let etag = self.etag();
        let unchanged = if_none_match.is_some_and(|tags| {
            tags.split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == etag || tag == "*")
        });
        let mut response = if unchanged {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            let mut response = Response::new(Full::new(Bytes::from_static(self.body)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
            response
        };
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(etag) {
            headers.insert(ETAG, value);
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
        security_headers(headers);
        response
    }
}

/// The headers every ward-screen response carries: the policy, no sniffing, no framing,
/// no referrer, and a browsing context of its own.
pub fn security_headers(headers: &mut hyper::HeaderMap) {
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_served_with_the_policy_and_revalidated() {
        for asset in ASSETS {
            let response = asset.response(None);
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.name);
            let headers = response.headers();
            assert_eq!(
                headers[CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY_VALUE
            );
            assert_eq!(headers[CACHE_CONTROL], "private, no-cache");
            assert_eq!(headers[ETAG], asset.etag());
            assert!(!asset.body.is_empty(), "{} is empty", asset.name);
        }
    }

    #[test]
    fn a_known_tag_gets_not_modified_and_another_the_file() {
        let asset = find("app.js").expect("the script is embedded");
        assert_eq!(
            asset.response(Some(asset.etag())).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(asset.response(Some("\"0000\"")).status(), StatusCode::OK);
        assert_ne!(find("index.html").map(Asset::etag), Some(asset.etag()));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_runs_no_inline_script() {
        let page = std::str::from_utf8(find("index.html").expect("embedded").body).expect("UTF-8");
        for forbidden in ["http://", "https://", "<script>", "style=", "onclick"] {
            assert!(!page.contains(forbidden), "index.html holds {forbidden:?}");
        }
        let script = std::str::from_utf8(find("app.js").expect("embedded").body)
            .expect("UTF-8")
            // The SVG namespace and the FHIR extension's URL are names, not places
            // anything is fetched from.
            .replace("\"http://www.w3.org/2000/svg\"", "SVG")
            .replace(
                "\"http://hl7.org/fhir/StructureDefinition/flag-priority\"",
                "PRIORITY",
            );
        for forbidden in ["http://", "https://", "eval(", "innerHTML", "new Function"] {
            assert!(!script.contains(forbidden), "app.js holds {forbidden:?}");
        }
    }
}
