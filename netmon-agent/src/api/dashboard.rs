//! The web dashboard: `GET /` (the page) and `GET /assets/{name}` (its
//! script, style sheet and icon), embedded in the binary at build time (see
//! `build_web.rs` and `web/`), served on the API's listener (so over TLS
//! when the API has it) with no key: the page signs in with an API key
//! itself and sends it in a header on every API request.
//!
//! - Assets are named by their content's hash and cached for a year
//!   (`immutable`); the page is revalidated on every load (`no-cache` with
//!   an `ETag`), so a new agent's dashboard is picked up at once.
//! - Each file is embedded plain and gzipped; the gzipped one is sent to a
//!   client that accepts it.
//! - Every answer carries a strict Content-Security-Policy (scripts, styles,
//!   images and connections from this origin only, no inline script, no
//!   framing), `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`
//!   and `Referrer-Policy: no-referrer`.
//! - Unknown assets get the API's JSON 404.
//! - `netmon-agent hub` serves the same routes; the page asks `/health`
//!   whether it talks to a hub (`"hub": true`) and then shows the hosts.

use std::sync::LazyLock;

use axum::{
    Router,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::error::ApiError;

/// One embedded file.
struct File {
    /// Where it is served.
    url: &'static str,
    mime: &'static str,
    body: &'static [u8],
    /// The same, gzipped (absent on the placeholder page).
    gzip: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The policy every dashboard answer carries: nothing but this origin's own
/// files and API, no inline script or style, no plugins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How long a content-hashed asset may be cached.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The routes, for any router state: the agent's API and the hub serve
/// the same bundle.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
}

/// Whether the dashboard's bundle is embedded (else `/` says how to build it).
fn built() -> bool {
    BUILT
}

/// Each file's `ETag`: a quoted prefix of its sha-256.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|f| {
            let digest = crate::keys::sha256(f.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"\""))
        })
        .collect()
});

async fn index(headers: HeaderMap) -> Result<Response, ApiError> {
    if !built() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            tracing::warn!(
                "The web dashboard was not built into this binary (Node.js or web/node_modules \
                 was missing at build time); `/` says how to build it."
            );
        });
    }
    serve("/", &headers, "no-cache")
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    serve(&format!("/assets/{name}"), &headers, IMMUTABLE)
}

/// The file at `url` for a request with `headers`: 304 when its `ETag`
/// matches `If-None-Match`, gzipped when the client accepts it.
fn serve(url: &str, headers: &HeaderMap, cache: &'static str) -> Result<Response, ApiError> {
    let Some(i) = FILES.iter().position(|f| f.url == url) else {
        return Err(ApiError::NotFound(format!("no dashboard file {url}")));
    };
    let file = &FILES[i];
    let etag = ETAGS[i].clone();
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match file.gzip.filter(|_| accepts_gzip(headers)) {
            Some(gz) => ([(header::CONTENT_ENCODING, "gzip")], gz).into_response(),
            None => file.body.into_response(),
        }
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ETAG, etag);
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

/// Whether `Accept-Encoding` lists gzip (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use tower::ServiceExt as _;

    use super::*;

    async fn get(uri: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let state = super::super::test_support::state(
            Err("off".into()),
            std::sync::Arc::new(super::super::limits::Http::default()),
        );
        let key = crate::keys::ApiKey::new("0123456789abcdef-test").unwrap();
        let app = super::super::router(state, std::sync::Arc::new(key.into()));
        app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    async fn body(r: Response) -> Vec<u8> {
        axum::body::to_bytes(r.into_body(), 8 << 20)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn the_page_needs_no_key_and_carries_the_security_headers() {
        let r = get("/", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers().clone();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        let html = String::from_utf8(body(r).await).unwrap();
        assert!(html.starts_with("<!doctype html>"), "{html}");
        // No inline script: every <script> has a src.
        for tag in html.split("<script").skip(1) {
            let tag = tag.split('>').next().unwrap();
            assert!(tag.contains("src="), "inline script in {html}");
        }
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }

    #[tokio::test]
    async fn etag_revalidation_answers_304() {
        let r = get("/", &[]).await;
        let etag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
        let again = get("/", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(body(again).await.is_empty());
    }

    #[tokio::test]
    async fn every_asset_is_served_immutable_and_gzipped_on_request() {
        if !built() {
            eprintln!("dashboard not built: only the placeholder page is embedded");
            return;
        }
        let assets: Vec<_> = FILES.iter().filter(|f| f.url != "/").collect();
        assert!(assets.iter().any(|f| f.url.ends_with(".js")), "no script");
        assert!(assets.iter().any(|f| f.url.ends_with(".css")), "no style");
        for f in assets {
            let r = get(f.url, &[]).await;
            assert_eq!(r.status(), StatusCode::OK, "{}", f.url);
            assert_eq!(r.headers()[header::CACHE_CONTROL], IMMUTABLE);
            assert_eq!(r.headers()[header::CONTENT_TYPE], f.mime);
            assert_eq!(body(r).await, f.body, "{}", f.url);
            let r = get(f.url, &[("accept-encoding", "br, gzip;q=0.8")]).await;
            assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
            assert_eq!(Some(&body(r).await[..]), f.gzip, "{}", f.url);
            let r = get(f.url, &[("accept-encoding", "gzip;q=0")]).await;
            assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        }
    }

    #[tokio::test]
    async fn an_unknown_asset_is_the_json_404() {
        let r = get("/assets/nope-0123.js", &[]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
    }

    #[test]
    fn gzip_acceptance_follows_the_header() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip, deflate, br"));
        assert!(h("GZIP"));
        assert!(h("*"));
        assert!(!h("br"));
        assert!(!h("gzip;q=0"));
        assert!(!h("gzip; q=0.0, br"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
