//! The middleware: [`require_key`] takes the key a request presents
//! (`X-API-KEY: <key>` or `Authorization: Bearer <key>`), has the
//! [`Keyring`] check it, and puts its [`Role`] into the request's
//! extensions; [`require_role`] lets through only keys with at least a
//! given role.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tracing::debug;

use super::{Keyring, Role};
use crate::api::error::ApiError;

/// Header carrying the key as is.
const API_KEY_HEADER: &str = "x-api-key";

/// The key a request presents: `X-API-KEY` if present, else the token of an
/// `Authorization: Bearer` header (scheme matched case-insensitively).
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(API_KEY_HEADER) {
        return Some(value.as_bytes().trim_ascii());
    }
    let value = headers.get(header::AUTHORIZATION)?.as_bytes().trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = value.split_at(space);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| token.trim_ascii())
}

/// Middleware letting through only requests that present a key in `keys`,
/// with the key's [`Role`] added to the request's extensions; the rest get
/// [`ApiError::Unauthorized`]. Use with
/// `route_layer(middleware::from_fn_with_state(keys, require_key))`; it works
/// with any router state.
pub async fn require_key(
    State(keys): State<Arc<Keyring>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // Present when served by `api::server` (and axum's connect info).
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let presented = presented_key(req.headers());
    let reason = if presented.is_some() {
        "invalid key"
    } else {
        "no key"
    };
    match keys.check(presented, remote.map(|a| a.ip())).await {
        Ok(role) => {
            req.extensions_mut().insert(role);
            Ok(next.run(req).await)
        }
        Err(e) => {
            debug!(
                remote = remote.map(tracing::field::display),
                path = req.uri().path(),
                reason,
                status = e.status().as_u16(),
                "Rejected API request."
            );
            Err(e)
        }
    }
}

/// Middleware, inside [`require_key`], letting through only requests whose
/// key has at least the role given as its state; the rest get a 403 with
/// the JSON error body. Use with
/// `route_layer(middleware::from_fn_with_state(Role::Admin, require_role))`.
pub async fn require_role(State(needed): State<Role>, req: Request, next: Next) -> Response {
    match req.extensions().get::<Role>() {
        Some(role) if *role >= needed => next.run(req).await,
        role => {
            debug!(
                path = req.uri().path(),
                role = role.map(tracing::field::display),
                %needed,
                "Refused API request: role too low."
            );
            forbidden(needed)
        }
    }
}

/// A 403 in the shape of [`ApiError`]'s JSON body (which has no 403 yet).
fn forbidden(needed: Role) -> Response {
    ApiError::Forbidden(format!("this endpoint needs an {needed} key")).into_response()
}

#[cfg(test)]
mod tests {
    use axum::{
        Router,
        body::Body,
        http::{self, StatusCode, header},
        middleware,
        routing::get,
    };
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::{
        api::auth::test_keys::{KEY, RO_ARGON_KEY, RO_KEY, RO_SHA_KEY, keyring},
        keys::ApiKey,
    };

    /// `/v1/secret` for any key, `/v1/admin` for admin keys only, and
    /// `/v1/role` echoing the role the middleware put in the extensions.
    fn app_with(keys: Keyring) -> Router {
        let keys = Arc::new(keys);
        let admin = Router::new()
            .route("/v1/admin", get(|| async { "admin" }))
            .route_layer(middleware::from_fn_with_state(Role::Admin, require_role));
        let protected = Router::new()
            .route("/v1/secret", get(|| async { "secret" }))
            .route(
                "/v1/role",
                get(|axum::Extension(role): axum::Extension<Role>| async move { role.to_string() }),
            )
            .merge(admin)
            .route_layer(middleware::from_fn_with_state(keys, require_key));
        Router::new()
            .route("/health", get(|| async { "ok" }))
            .merge(protected)
            .fallback(crate::api::error::not_found)
    }

    fn app() -> Router {
        app_with(Keyring::new(ApiKey::new(KEY).unwrap()))
    }

    async fn call(uri: &str, header: Option<(&str, &str)>) -> Response {
        let mut request = http::Request::get(uri);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body_json(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).expect("response body should be JSON")
    }

    async fn assert_unauthorized(response: Response) {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="netmon""#
        );
        assert_eq!(
            body_json(response).await,
            json!({"error": {"code": "unauthorized", "message": "missing or invalid API key"}})
        );
    }

    #[tokio::test]
    async fn no_key_is_401_with_challenge() {
        assert_unauthorized(call("/v1/secret", None).await).await;
    }

    #[tokio::test]
    async fn wrong_key_is_401() {
        let wrong = "0123456789abcdef-tesT";
        assert_unauthorized(call("/v1/secret", Some(("x-api-key", wrong))).await).await;
        let bearer = format!("Bearer {wrong}");
        assert_unauthorized(call("/v1/secret", Some(("authorization", &bearer))).await).await;
    }

    #[tokio::test]
    async fn other_auth_schemes_are_401() {
        let basic = format!("Basic {KEY}");
        assert_unauthorized(call("/v1/secret", Some(("authorization", &basic))).await).await;
        assert_unauthorized(call("/v1/secret", Some(("authorization", KEY))).await).await;
    }

    #[tokio::test]
    async fn accepted_key_forms_reach_the_handler() {
        let bearer = format!("Bearer {KEY}");
        let lower = format!("bearer {KEY}");
        let shouting = format!("BEARER   {KEY}");
        for header in [
            ("X-API-KEY", KEY),
            ("x-api-key", KEY),
            ("Authorization", bearer.as_str()),
            ("authorization", lower.as_str()),
            ("Authorization", shouting.as_str()),
        ] {
            let response = call("/v1/secret", Some(header)).await;
            assert_eq!(response.status(), StatusCode::OK, "with {header:?}");
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            assert_eq!(&body[..], b"secret");
        }
    }

    #[tokio::test]
    async fn health_needs_no_key() {
        assert_eq!(call("/health", None).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_path_is_json_404_without_key() {
        let response = call("/v1/nope", None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            body_json(response).await,
            json!({"error": {"code": "not_found", "message": "no such endpoint"}})
        );
    }

    async fn call_with(app: Router, uri: &str, key: &str) -> (StatusCode, Value) {
        let response = app
            .oneshot(
                http::Request::get(uri)
                    .header("x-api-key", key)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }

    #[tokio::test]
    async fn read_only_keys_read_but_only_admin_passes_require_role() {
        let app = app_with(keyring());
        for ro in [RO_KEY, RO_SHA_KEY, RO_ARGON_KEY] {
            let (status, body) = call_with(app.clone(), "/v1/secret", ro).await;
            assert_eq!((status, body), (StatusCode::OK, json!("secret")), "{ro}");
            let (status, body) = call_with(app.clone(), "/v1/role", ro).await;
            assert_eq!((status, body), (StatusCode::OK, json!("read-only")), "{ro}");
            let (status, body) = call_with(app.clone(), "/v1/admin", ro).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{ro}");
            assert_eq!(
                body,
                json!({"error": {"code": "forbidden", "message": "this endpoint needs an admin key"}})
            );
        }
        let (status, body) = call_with(app.clone(), "/v1/role", KEY).await;
        assert_eq!((status, body), (StatusCode::OK, json!("admin")));
        let (status, body) = call_with(app.clone(), "/v1/admin", KEY).await;
        assert_eq!((status, body), (StatusCode::OK, json!("admin")));
        // A wrong key is 401 before any role check.
        let (status, _) = call_with(app, "/v1/admin", "dashboard-key-01234567890").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn require_role_without_require_key_refuses() {
        let app = Router::new()
            .route("/v1/admin", get(|| async { "admin" }))
            .route_layer(middleware::from_fn_with_state(Role::Admin, require_role));
        let (status, _) = call_with(app, "/v1/admin", KEY).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}
