//! The review console: a single-page app in plain ES modules (`viewer-api/web/`, no
//! build step, nothing from another origin), embedded in the binary by `build.rs` so
//! that the appliance serves exactly the console it was built with.
//!
//! `/` and the app's deep links (`/cameras/{id}?at=…`, `/exports`, `/audit`, …) all
//! answer with `index.html`; the app reads the path. Assets are under `/assets/`, with
//! an ETag and gzip (compressed once, on first use). Every answer carries the strict
//! Content-Security-Policy of [`crate::api::security_headers`]. The console reaches
//! footage only through the API, so the policy and the access log see every look.

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sha2::Digest;

use crate::config::Settings;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// Paths of the app, served with `index.html`.
const APP_ROUTES: &[&str] = &[
    "/",
    "/cameras/{id}",
    "/exports",
    "/holds",
    "/grants",
    "/audit",
    "/health",
];

struct Asset {
    bytes: &'static [u8],
    gzip: Vec<u8>,
    etag: String,
    content_type: &'static str,
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    embedded::FILES
        .iter()
        .map(|(name, bytes)| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            let gzip = gz
                .write_all(bytes)
                .and_then(|_| gz.finish())
                .unwrap_or_default();
            let etag = format!("\"{}\"", &hex::encode(sha2::Sha256::digest(bytes))[..20]);
            (
                *name,
                Asset {
                    bytes,
                    gzip,
                    etag,
                    content_type: content_type(name),
                },
            )
        })
        .collect()
});

/// The names of the embedded assets and their sizes (raw, gzipped).
pub fn asset_sizes() -> Vec<(&'static str, usize, usize)> {
    let mut v: Vec<_> = ASSETS
        .iter()
        .map(|(n, a)| (*n, a.bytes.len(), a.gzip.len()))
        .collect();
    v.sort();
    v
}

fn serve(name: &str, headers: &HeaderMap, cache: &'static str) -> Response {
    let Some(a) = ASSETS.get(name) else {
        return crate::api::ApiError::not_found("no such file").into_response();
    };
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, a.etag.clone())]).into_response();
    }
    let gzip_ok = !a.gzip.is_empty()
        && headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut r = if gzip_ok {
        let mut r = a.gzip.clone().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        a.bytes.into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&a.etag) {
        h.insert(header::ETAG, v);
    }
    r
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers, "no-cache")
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if path == "index.html" {
        return crate::api::ApiError::not_found("no such file").into_response();
    }
    serve(&path, &headers, "no-cache")
}

pub fn router(settings: &Settings) -> Router {
    let site = json!({ "time_zone": settings.api.time_zone() });
    let mut r = Router::new().route("/assets/{*path}", get(asset)).route(
        "/api/v1/site",
        get(move || {
            let site = site.clone();
            async move { Json(site) }
        }),
    );
    for route in APP_ROUTES {
        r = r.route(route, get(index));
    }
    r.layer(axum::middleware::map_response(crate::api::security_headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lower item of finding 11 of issue 9: the console's pages and assets carry a
    /// Content-Security-Policy that allows only this origin and no inline script, and
    /// the page itself has no inline script to need it.
    #[tokio::test]
    async fn the_console_is_served_under_a_strict_content_security_policy() {
        use tower::ServiceExt;
        let settings = crate::config::Settings {
            recorder: recorder::config::Config::parse(
                "[storage]\npath = \"/tmp/x\"\n",
                std::path::Path::new("t.toml"),
            )
            .unwrap(),
            api: crate::config::parse_api(None).unwrap(),
        };
        for uri in ["/", "/assets/app.js"] {
            let r = router(&settings)
                .oneshot(
                    axum::http::Request::get(uri)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{uri}");
            let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap();
            assert!(csp.contains("default-src 'none'"), "{csp}");
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
        }
        let index = text("index.html");
        assert!(!index.contains("<script>"), "inline script in index.html");
        assert!(!index.contains(" style="), "inline style in index.html");
    }

    #[test]
    fn the_console_is_embedded_and_small() {
        let sizes = asset_sizes();
        assert!(sizes.iter().any(|(n, _, _)| *n == "index.html"));
        assert!(sizes.iter().any(|(n, _, _)| *n == "app.js"));
        let code_gzip: usize = sizes
            .iter()
            .filter(|(n, _, _)| n.ends_with(".js") || n.ends_with(".css"))
            .map(|(_, _, gz)| gz)
            .sum();
        // The budget: JS + CSS at most 100 KB gzipped.
        assert!(
            code_gzip <= 100 * 1024,
            "console is {code_gzip} bytes gzipped"
        );
    }

    fn text(name: &str) -> &'static str {
        let (_, bytes) = embedded::FILES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} is not embedded"));
        std::str::from_utf8(bytes).unwrap()
    }

    /// The keys of a string catalogue: its lines `  'key': '…',`.
    fn catalogue_keys(name: &str) -> std::collections::BTreeSet<&'static str> {
        text(name)
            .lines()
            .filter_map(|l| l.strip_prefix("  '")?.split_once("':").map(|(k, _)| k))
            .collect()
    }

    /// Every string the console asks for by a literal key exists in both languages, and
    /// both catalogues have the same keys: no page shows a raw key or falls back to
    /// English in French.
    #[test]
    fn both_languages_have_every_string() {
        let en = catalogue_keys("i18n/en.js");
        let fr = catalogue_keys("i18n/fr.js");
        assert!(en.len() > 150, "{}", en.len());
        assert_eq!(
            en.symmetric_difference(&fr).collect::<Vec<_>>(),
            Vec::<&&str>::new()
        );
        let mut used = 0;
        for (name, _) in embedded::FILES.iter().filter(|(n, _)| n.ends_with(".js")) {
            let src = text(name);
            for (at, _) in src.match_indices("t('") {
                // `t(` the translator, not `import(` or `set(`
                if at > 0
                    && (src.as_bytes()[at - 1].is_ascii_alphanumeric()
                        || src.as_bytes()[at - 1] == b'_')
                {
                    continue;
                }
                let rest = &src[at + 3..];
                let key = &rest[..rest.find('\'').unwrap_or(0)];
                used += 1;
                assert!(
                    en.contains(key),
                    "{name} uses {key:?}, which i18n/en.js lacks"
                );
            }
        }
        assert!(used > 150, "only {used} keys found in use");
    }

    /// The English names outside tests and users rely on.
    #[test]
    fn the_contract_names_are_the_english_strings() {
        let en = text("i18n/en.js");
        for (key, name) in [
            ("signin.username", "Username"),
            ("signin.password", "Password"),
            ("signin.submit", "Sign in"),
            ("prompt.case", "Case reference"),
            ("prompt.purpose", "Purpose"),
            ("prompt.view", "View"),
            ("exports.case", "Case reference"),
            ("exports.reason", "Reason"),
            ("exports.submit", "Export"),
            ("exports.download", "Download"),
        ] {
            assert!(
                en.contains(&format!("'{key}': '{name}',")),
                "{key} must be {name:?}"
            );
        }
    }
}
