//! The API's one error type and the JSON body every failed request gets.
//!
//! Handlers return `Result<_, ApiError>`; [`ApiError`]'s `IntoResponse` writes
//!
//! ```json
//! {"error": {"code": "bad_request", "message": "...", "param": "window"}}
//! ```
//!
//! with the matching status. `param` is present only for `bad_request`. Server
//! errors are logged in full and answered with a generic message, so internals
//! never reach the client.

use std::borrow::Cow;

use axum::{
    Json,
    extract::{
        FromRequestParts, Path, Query,
        path::ErrorKind,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

/// `WWW-Authenticate` value sent with every 401 (RFC 6750, section 3).
const BEARER_CHALLENGE: &str = r#"Bearer realm="netmon""#;

/// The message a client sees for any 5xx; the detail goes to the log only.
const INTERNAL_MESSAGE: &str = "internal server error";

/// Everything an API request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request carried no API key, or the wrong one (401).
    #[error("missing or invalid API key")]
    Unauthorized,

    /// A request parameter is malformed or out of range (400).
    #[error("invalid parameter `{param}`: {reason}")]
    BadRequest {
        /// The parameter at fault, or `query`/`body` when the whole query
        /// string or body failed to parse.
        param: String,
        /// What is wrong with it, for a person to read.
        reason: String,
    },

    /// The key is valid but its role is too low for the endpoint (403).
    #[error("{0}")]
    Forbidden(String),

    /// The path or the resource it names does not exist (404); the message
    /// is sent as is.
    #[error("{0}")]
    NotFound(String),

    /// The data asked for is not available (503): its collector is turned
    /// off or has not finished its first cycle. The message says which.
    #[error("{0}")]
    Unavailable(String),

    /// The method is not served on this path (405).
    #[error("method not allowed on this path (see the OpenAPI document for its methods)")]
    MethodNotAllowed,

    /// The client's address failed authentication too often (429); it may
    /// try again after `retry_after` seconds.
    #[error("too many failed authentications from this address; retry in {retry_after} s")]
    RateLimited {
        /// Seconds until the address may try again (`Retry-After`).
        retry_after: u64,
    },

    /// Something failed inside the agent (500). Logged in full, never sent.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 400 for `param` with a reason a person can act on.
    pub fn bad_request(param: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::BadRequest {
            param: param.into(),
            reason: reason.into(),
        }
    }

    /// A 500 from any error; `?` already converts `anyhow::Error`.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable `error.code` of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::BadRequest { .. } => "bad_request",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Unavailable(_) => "unavailable",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RateLimited { .. } => "rate_limited",
            Self::Internal(_) => "internal",
        }
    }
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

/// What failed.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ErrorDetail<'a> {
    /// Stable and machine-readable.
    #[schema(example = "bad_request")]
    code: &'static str,
    /// For a person to read.
    #[schema(value_type = String)]
    message: Cow<'a, str>,
    /// The parameter at fault; only with `bad_request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    param: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, param) = match &self {
            Self::Internal(_) => {
                tracing::error!(error = %self, "API request failed.");
                (Cow::Borrowed(INTERNAL_MESSAGE), None)
            }
            Self::BadRequest { param, .. } => (Cow::Owned(self.to_string()), Some(param.as_str())),
            Self::NotFound(message) | Self::Unavailable(message) | Self::Forbidden(message) => {
                (Cow::Borrowed(message.as_str()), None)
            }
            Self::Unauthorized | Self::MethodNotAllowed | Self::RateLimited { .. } => {
                (Cow::Owned(self.to_string()), None)
            }
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
                param,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::RateLimited { retry_after } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BEARER_CHALLENGE),
            );
        }
        response
    }
}

/// A query string that failed to parse. axum's text is passed on as the
/// reason; `param` is the field it names, or `query` when it names none.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        let param = query_param_name(&text).unwrap_or("query").to_owned();
        Self::BadRequest {
            param,
            reason: text,
        }
    }
}

/// The field named in axum's query rejection text, which reads
/// "Failed to deserialize query string: seconds: invalid digit found in string"
/// or "...: missing field `seconds`". Anything else names no field.
fn query_param_name(text: &str) -> Option<&str> {
    let detail = text.strip_prefix("Failed to deserialize query string: ")?;
    let name = match detail.strip_prefix("missing field `") {
        Some(rest) => rest.split_once('`')?.0,
        None => detail.split_once(": ")?.0,
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    (!name.is_empty() && name.chars().all(plain)).then_some(name)
}

/// A JSON body that is missing, too large, or does not fit the expected type.
/// All of these become 400 so clients see one error shape.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::bad_request("body", rejection.body_text())
    }
}

/// A path parameter that failed to parse (not UTF-8 once percent-decoded,
/// say): a 400 naming the parameter, or `path` when axum names none.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        let param = match &rejection {
            PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::InvalidUtf8InPathParam { key }
                | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                _ => None,
            },
            _ => None,
        };
        Self::bad_request(
            param.unwrap_or_else(|| "path".to_owned()),
            rejection.body_text(),
        )
    }
}

/// `axum::extract::Path` whose rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// `axum::extract::Query` whose rejection is an [`ApiError`], so a bad query
/// string gets the same JSON error body as every other failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// The `{mac}` path parameter: `aa:bb:cc:dd:ee:ff`, any case; else a 400
/// naming `mac`.
pub(super) fn mac_param(mac: &str) -> Result<[u8; 6], ApiError> {
    // parse_mac alone would take a sign ("+a") as a hex digit.
    let plain = mac.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    crate::ifaces::parse_mac(mac)
        .filter(|_| plain)
        .ok_or_else(|| {
            ApiError::bad_request(
                "mac",
                format!("{mac:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"),
            )
        })
}

/// Fallback handler: unknown paths get a 404 with the JSON error body.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_owned())
}

/// Fallback for a known path with a method it does not serve: a JSON 405.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Longest error body of a foreign response that is kept as the message.
const FOREIGN_BODY_BYTES: usize = 1024;

/// Middleware that turns any error response that is not JSON (a rejection
/// of an extractor used without [`ApiQuery`]/[`ApiPath`], a layer's own
/// refusal) into the JSON error body with the same status, so no client
/// ever gets a text error. The original text becomes the message.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), FOREIGN_BODY_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let err = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound(text),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::UNPROCESSABLE_ENTITY => ApiError::bad_request("body", text),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(text),
        s if s.is_server_error() => ApiError::internal(anyhow::anyhow!("{s}: {text}")),
        _ => ApiError::bad_request("request", text),
    };
    let mut out = err.into_response();
    // Keep the original status (a 4xx without a variant of its own, say).
    *out.status_mut() = status;
    out
}

#[cfg(test)]
mod tests {
    use axum::{
        Router,
        body::Body,
        http::{HeaderMap, Request},
        routing::get,
    };
    use serde::Deserialize;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;

    async fn body_json(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("response body should be readable");
        serde_json::from_slice(&bytes).expect("response body should be JSON")
    }

    /// Checks status, content type and body; returns the headers for more checks.
    async fn check(err: ApiError, status: StatusCode, expected: Value) -> HeaderMap {
        let response = err.into_response();
        assert_eq!(response.status(), status);
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(body_json(response).await, expected);
        headers
    }

    #[tokio::test]
    async fn unauthorized_is_401_with_bearer_challenge() {
        let headers = check(
            ApiError::Unauthorized,
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": "unauthorized", "message": "missing or invalid API key"}}),
        )
        .await;
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            r#"Bearer realm="netmon""#
        );
    }

    #[tokio::test]
    async fn bad_request_names_the_param() {
        check(
            ApiError::bad_request("window", "must be between 1 and 3600 seconds"),
            StatusCode::BAD_REQUEST,
            json!({"error": {
                "code": "bad_request",
                "message": "invalid parameter `window`: must be between 1 and 3600 seconds",
                "param": "window",
            }}),
        )
        .await;
    }

    #[tokio::test]
    async fn not_found_is_404_without_param() {
        let headers = check(
            ApiError::NotFound("no interface named eth9".to_owned()),
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "not_found", "message": "no interface named eth9"}}),
        )
        .await;
        assert!(!headers.contains_key(header::WWW_AUTHENTICATE));
    }

    #[tokio::test]
    async fn internal_error_hides_the_detail() {
        let err = anyhow::anyhow!("redb: table `rates` is corrupt").context("reading rates");
        check(
            ApiError::from(err),
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": {"code": "internal", "message": "internal server error"}}),
        )
        .await;
    }

    #[test]
    fn internal_display_keeps_the_chain_for_the_log() {
        let err = ApiError::internal(anyhow::anyhow!("disk full").context("writing rates"));
        assert_eq!(err.to_string(), "internal error: writing rates: disk full");
    }

    #[derive(Deserialize)]
    struct Window {
        seconds: u32,
    }

    async fn window(ApiQuery(window): ApiQuery<Window>) -> String {
        window.seconds.to_string()
    }

    fn app() -> Router {
        Router::new()
            .route("/window", get(window))
            .fallback(not_found)
    }

    async fn get_path(uri: &str) -> Response {
        app()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn api_query_passes_a_good_query_through() {
        let response = get_path("/window?seconds=60").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"60");
    }

    #[tokio::test]
    async fn api_query_turns_a_bad_value_into_bad_request() {
        let response = get_path("/window?seconds=soon").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body_json(response).await;
        assert_eq!(
            body,
            json!({"error": {
                "code": "bad_request",
                "message": "invalid parameter `seconds`: Failed to deserialize query string: \
                            seconds: invalid digit found in string",
                "param": "seconds",
            }})
        );
    }

    #[tokio::test]
    async fn api_query_reports_a_missing_field_by_name() {
        let response = get_path("/window").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body_json(response).await;
        assert_eq!(body["error"]["param"], "seconds");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.ends_with("missing field `seconds`"),
            "unexpected message: {message}"
        );
    }

    #[test]
    fn query_param_name_falls_back_when_no_field_is_named() {
        let prefix = "Failed to deserialize query string: ";
        assert_eq!(
            query_param_name(&format!("{prefix}unknown variant `x`")),
            None
        );
        assert_eq!(
            query_param_name(&format!("{prefix}bad: thing: here")),
            Some("bad")
        );
        assert_eq!(query_param_name(&format!("{prefix}a b: c")), None);
        assert_eq!(query_param_name("something else: entirely"), None);
    }

    #[tokio::test]
    async fn json_rejection_becomes_bad_request_on_body() {
        async fn echo(payload: Result<Json<Window>, JsonRejection>) -> Result<String, ApiError> {
            let Json(window) = payload?;
            Ok(window.seconds.to_string())
        }
        let response = Router::new()
            .route("/echo", axum::routing::post(echo))
            .oneshot(
                Request::post("/echo")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(r#"{"seconds": "x"}"#))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "bad_request");
        assert_eq!(body["error"]["param"], "body");
    }

    #[tokio::test]
    async fn path_rejections_are_json_400s_naming_the_parameter() {
        async fn mac(ApiPath(mac): ApiPath<String>) -> String {
            mac
        }
        async fn number(ApiPath(n): ApiPath<u32>) -> String {
            n.to_string()
        }
        let app = Router::new()
            .route("/d/{mac}", get(mac))
            .route("/n/{n}", get(number));
        for (uri, param) in [("/d/%FF", "mac"), ("/n/x", "path")] {
            let response = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
            let body = body_json(response).await;
            assert_eq!(body["error"]["code"], "bad_request", "{uri}: {body}");
            assert_eq!(body["error"]["param"], param, "{uri}: {body}");
        }
    }

    /// Errors made outside the API's extractors (axum's own rejections, a
    /// layer's refusal) come out as the JSON body with their status.
    #[tokio::test]
    async fn json_errors_turns_text_errors_into_the_json_body() {
        let app = Router::new()
            .route(
                "/text/{status}",
                get(
                    |axum::extract::Path(s): axum::extract::Path<u16>| async move {
                        (StatusCode::from_u16(s).unwrap(), "plain words")
                    },
                ),
            )
            .route(
                "/json",
                get(|| async { ApiError::NotFound("gone".to_owned()) }),
            )
            .layer(axum::middleware::from_fn(json_errors));
        for (status, code) in [
            (400, "bad_request"),
            (404, "not_found"),
            (405, "method_not_allowed"),
            (413, "bad_request"),
            (418, "bad_request"),
            (500, "internal"),
            (503, "unavailable"),
        ] {
            let response = app
                .clone()
                .oneshot(
                    Request::get(format!("/text/{status}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            let body = body_json(response).await;
            assert_eq!(body["error"]["code"], code, "{status}: {body}");
            if status < 500 && status != 405 {
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains("plain words"), "{status}: {message}");
            }
        }
        // A 200 and a JSON error pass untouched; a text 200 is not an error.
        let ok = app
            .clone()
            .oneshot(Request::get("/text/200").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let json = app
            .oneshot(Request::get("/json").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            body_json(json).await,
            json!({"error": {"code": "not_found", "message": "gone"}})
        );
    }

    #[tokio::test]
    async fn rate_limited_is_429_with_retry_after() {
        let headers = check(
            ApiError::RateLimited { retry_after: 17 },
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": {
                "code": "rate_limited",
                "message": "too many failed authentications from this address; retry in 17 s",
            }}),
        )
        .await;
        assert_eq!(headers[header::RETRY_AFTER], "17");
    }

    #[tokio::test]
    async fn fallback_answers_unknown_paths_with_json_404() {
        let response = get_path("/no/such/thing").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            body_json(response).await,
            json!({"error": {"code": "not_found", "message": "no such endpoint"}})
        );
    }
}
