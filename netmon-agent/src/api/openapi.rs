//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of this API, built
//! by `utoipa` from the `#[utoipa::path]` annotations on the handlers and the
//! schemas derived on their parameter and error types. Needs no key.
//!
//! Invariants the document keeps with the server:
//! - every route of [`super::router`] is listed, and nothing else (the
//!   end-to-end test `tests/e2e_openapi.rs` compares both lists);
//! - every operation answers errors with the JSON body of [`super::error`]
//!   (`ErrorBody`): 400 on any route (the query-length limit applies to
//!   all), 404 and 503 where a resource or a source may be missing (503 also
//!   when a limit is reached), and 401, 403 and 429 (too many failed
//!   authentications from the address) on the routes behind the key;
//! - `/metrics` lists the key schemes only when this agent was started with
//!   `--metrics-auth` on, so the document describes the running server;
//! - every JSON response body has a schema derived from the very type the
//!   handler serializes (`utoipa::ToSchema` on the collectors' reports, the
//!   store's types and the API's views), so the two cannot drift; a value
//!   the machine may lack ([`crate::collect::Avail`]) is `oneOf` the value's
//!   schema and `{"unavailable": string}`. Only this document's own body is
//!   a free-form object.

use std::sync::LazyLock;

use axum::{Json, Router, extract::State, routing::get};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        Components, RefOr, Response, ResponseBuilder, Schema,
        content::ContentBuilder,
        path::{HttpMethod, Operation, OperationBuilder},
        security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        },
    },
};

use super::AppState;
use crate::collect::SOURCES;

/// The path this document is served at.
pub const PATH: &str = "/api/v1/openapi.json";

/// The security scheme names used in the document.
const API_KEY: &str = "api_key";
const BEARER: &str = "bearer";

/// Paths that need no key whatever the options; `/metrics` is decided at
/// start-up and handled in [`document`].
const OPEN_PATHS: [&str; 2] = ["/health", PATH];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "netmon agent API",
        description = "Per-device and per-flow traffic counted by eBPF, host telemetry, \
                       discovery, latency and history of a netmon agent.",
        license(name = "see the project's LICENSE"),
    ),
    paths(
        super::health::health,
        super::metrics::scrape,
        super::history::latest,
        super::devices::list,
        super::devices::one,
        super::labels::set,
        super::history::device_history,
        super::flows::list,
        super::interfaces::list,
        super::snapshot::show,
        super::packages::show,
        super::history::history,
        super::history::top,
        super::history::series,
        super::stream::stream,
        super::stream::issue_ticket,
        super::config::show,
        super::limits::show,
        super::alerts::list,
        super::alerts::history,
        super::alerts::silence,
        openapi_json,
    ),
    components(schemas(super::error::ErrorBody, super::error::ErrorDetail)),
    security(("api_key" = []), ("bearer" = [])),
    modifiers(&Sources, &Common),
)]
struct Doc;

/// Adds the collectors' views (`GET /api/v1/<name>`, see
/// [`super::telemetry`]) from the registry, with their body's schemas.
struct Sources;

impl Modify for Sources {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut schemas = Vec::new();
        for src in SOURCES {
            let Some(schema) = src.view() else { continue };
            let body = schema(&mut schemas);
            let name = src.name();
            let response = ResponseBuilder::new()
                .description(format!("The {name} collector's latest reading."))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            body,
                        ))))
                        .build(),
                )
                .build();
            let op = OperationBuilder::new()
                .operation_id(Some(super::telemetry::operation_id(name)))
                .tag("telemetry")
                .response("200", response)
                .build();
            openapi.paths.add_path_operation(
                super::telemetry::path(name),
                vec![HttpMethod::Get],
                op,
            );
        }
        let components = openapi.components.get_or_insert_with(Components::new);
        for (name, schema) in schemas {
            components.schemas.entry(name).or_insert(schema);
        }
        // `/api/v1/series?family=`: the families the registry knows.
        let families: Vec<&str> = crate::store::Family::all()
            .map(crate::store::Family::as_str)
            .collect();
        let family = openapi
            .paths
            .paths
            .get_mut("/api/v1/series")
            .and_then(|item| item.get.as_mut())
            .and_then(|op| op.parameters.as_mut())
            .and_then(|ps| ps.iter_mut().find(|p| p.name == "family"));
        if let Some(RefOr::T(Schema::Object(o))) = family.and_then(|p| p.schema.as_mut()) {
            o.pattern = Some(format!("^({})$", families.join("|")));
        }
    }
}

/// Adds the security schemes and the error responses every operation has.
struct Common;

impl Modify for Common {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Components::new);
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-KEY",
                "An API key from the agent's key file.",
            ))),
        );
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The same API key as `Authorization: Bearer <key>`."))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let open = OPEN_PATHS.contains(&path.as_str());
            for op in operations(item) {
                add_errors(op, open);
            }
        }
    }
}

/// Every operation of a path item (the API serves GET, POST, PUT and
/// DELETE).
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The error responses of `op`; `open` when it needs no key.
fn add_errors(op: &mut Operation, open: bool) {
    if open {
        // An empty list overrides the document-wide requirement.
        op.security = Some(Vec::new());
    }
    let mut errors = vec![
        (
            "400",
            "A parameter is unknown, malformed or out of range, or the query string is too long.",
        ),
        ("404", "The resource named in the path does not exist."),
        (
            "503",
            "The data is not available: its collector is off or still in its first cycle, the history is off or busy, or a limit is reached (history queries, stream clients or stream tickets at once); `Retry-After` says when to try again.",
        ),
    ];
    if !open {
        errors.push(("401", "No API key, or a wrong one."));
        errors.push(("403", "The key's role is too low for this endpoint."));
        errors.push((
            "429",
            "This address failed authentication too often lately; `Retry-After` says when it may try again.",
        ));
    }
    for (status, description) in errors {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    }
}

/// A response carrying the JSON error body.
fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build(),
    )
}

/// The document for a server whose `/metrics` needs the key or not.
pub(super) fn document(metrics_needs_key: bool) -> serde_json::Value {
    let mut doc = Doc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    if let Some(op) = doc
        .paths
        .paths
        .get_mut("/metrics")
        .and_then(|item| item.get.as_mut())
    {
        if metrics_needs_key {
            op.security = Some(vec![
                SecurityRequirement::new(API_KEY, Vec::<String>::new()),
                SecurityRequirement::new(BEARER, Vec::<String>::new()),
            ]);
        } else {
            op.security = Some(Vec::new());
            op.responses.responses.remove("401");
            op.responses.responses.remove("403");
            op.responses.responses.remove("429");
        }
    }
    // Serialising plain data structures cannot fail; `Null` would show it.
    serde_json::to_value(&doc).unwrap_or_default()
}

/// Both variants, built once.
static DOCUMENTS: LazyLock<[serde_json::Value; 2]> =
    LazyLock::new(|| [document(false), document(true)]);

pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, get(openapi_json))
}

/// This document.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", operation_id = "openapi",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document of this API.", body = Object)),
)]
async fn openapi_json(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(DOCUMENTS[usize::from(state.metrics.needs_key)].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_with_every_route_and_error_bodies() {
        let doc = document(false);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
        let paths = doc["paths"].as_object().unwrap();
        for p in ["/health", "/metrics", "/api/v1/devices/{mac}", PATH] {
            assert!(paths.contains_key(p), "{p} missing");
        }
        let devices = &paths["/api/v1/devices"]["get"];
        assert_eq!(
            devices["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert_eq!(paths["/health"]["get"]["security"], serde_json::json!([]));
        // Validators require unique operation ids.
        let ops: Vec<&serde_json::Value> = paths
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .collect();
        let ids: std::collections::BTreeSet<&str> = ops
            .iter()
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), ops.len(), "{ids:?}");
        // Operations other than GET get the error bodies too.
        let ticket = &paths["/api/v1/stream/ticket"]["post"];
        assert_eq!(
            ticket["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert!(paths["/health"]["get"]["responses"].get("401").is_none());
    }

    /// The document's surface, one line an operation: method, path, its
    /// parameters (name, place, required) and its response statuses, then
    /// one line a component schema with its properties. Refactors must
    /// leave it as it is: `tests/golden/openapi.txt` holds it, and
    /// `NETMON_BLESS=1` rewrites it when a change is meant.
    #[test]
    fn document_surface_is_the_golden_one() {
        let doc = document(true);
        let mut lines = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let mut params: Vec<String> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let required = if p["required"] == true { "!" } else { "" };
                        format!(
                            "{}@{}{required}",
                            p["name"].as_str().unwrap(),
                            p["in"].as_str().unwrap()
                        )
                    })
                    .collect();
                params.sort();
                let mut statuses: Vec<&str> = op["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                statuses.sort_unstable();
                lines.push(format!(
                    "{} {path} ({}) -> {}",
                    method.to_uppercase(),
                    params.join(", "),
                    statuses.join(" ")
                ));
            }
        }
        for (name, schema) in doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let mut props: Vec<&str> = schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.as_str())
                .collect();
            props.sort_unstable();
            lines.push(format!("schema {name}: {}", props.join(", ")));
        }
        let want = lines.join("\n") + "\n";
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/openapi.txt");
        if std::env::var_os("NETMON_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "the OpenAPI document's surface differs from {}: if the change is meant, run \
             `NETMON_BLESS=1 cargo test -p netmon-agent --lib api::openapi::tests::document_surface_is_the_golden_one`\n\
             --- golden ---\n{have}\n--- now ---\n{want}",
            path.display()
        );
    }

    /// The places in `schema` (at `path`) that accept any JSON: no type, or
    /// an object without properties.
    fn free_form(schema: &serde_json::Value, path: &str, found: &mut Vec<String>) {
        let Some(o) = schema.as_object() else { return };
        let typed = ["type", "$ref", "oneOf", "anyOf", "allOf", "enum", "const"]
            .iter()
            .any(|k| o.contains_key(*k));
        let object = o.get("type").is_some_and(|t| t == "object");
        if !typed
            || object && !o.contains_key("properties") && !o.contains_key("additionalProperties")
        {
            found.push(path.to_owned());
        }
        for (k, v) in o {
            match k.as_str() {
                "items" | "additionalProperties" => free_form(v, &format!("{path}/{k}"), found),
                "properties" => {
                    for (name, p) in v.as_object().into_iter().flatten() {
                        free_form(p, &format!("{path}/properties/{name}"), found);
                    }
                }
                "oneOf" | "anyOf" | "allOf" => {
                    for (i, p) in v.as_array().into_iter().flatten().enumerate() {
                        free_form(p, &format!("{path}/{k}/{i}"), found);
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn every_body_but_the_document_itself_has_a_typed_schema() {
        let doc = document(true);
        let mut found = Vec::new();
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            free_form(schema, &format!("#/components/schemas/{name}"), &mut found);
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            let ops = item.as_object().unwrap().values();
            for (status, response) in ops.flat_map(|op| op["responses"].as_object().unwrap()) {
                for (media, content) in response["content"].as_object().into_iter().flatten() {
                    if path == PATH || media != "application/json" {
                        continue;
                    }
                    let at = format!("{path} {status} {media}");
                    free_form(&content["schema"], &at, &mut found);
                }
            }
        }
        assert_eq!(found, Vec::<String>::new(), "free-form schemas");
        // A value the machine may lack is the value or the reason.
        let cpu = &doc["components"]["schemas"]["Avail_Cpu"]["oneOf"];
        assert_eq!(
            cpu[0]["properties"]["usage_percent"]["type"], "number",
            "{cpu}"
        );
        assert_eq!(
            cpu[1]["required"],
            serde_json::json!(["unavailable"]),
            "{cpu}"
        );
        assert_eq!(
            cpu[1]["properties"]["unavailable"]["type"], "string",
            "{cpu}"
        );
    }

    #[test]
    fn metrics_security_follows_the_option() {
        let open = document(false);
        let keyed = document(true);
        assert_eq!(
            open["paths"]["/metrics"]["get"]["security"],
            serde_json::json!([])
        );
        assert_eq!(
            keyed["paths"]["/metrics"]["get"]["security"],
            serde_json::json!([{"api_key": []}, {"bearer": []}])
        );
        assert!(
            keyed["paths"]["/metrics"]["get"]["responses"]
                .get("401")
                .is_some()
        );
    }
}
