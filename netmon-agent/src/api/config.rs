//! `GET /api/v1/config`: the agent's effective configuration, admin key
//! only (a read-only key gets 403).
//!
//! `options` holds what `netmon-agent config show` prints: every option by
//! long name with its values and where they came from (command line,
//! environment, config file, default). `api_keys` says where the keys come
//! from and nothing else: never a key, a key's hash or a key file's
//! contents. Options hold no secrets (an option about keys only names a
//! file; `config::tests` keeps it so), so nothing else needs hiding. The
//! answer is built once at start-up: the configuration does not change
//! while the agent runs.

use std::{collections::BTreeMap, path::Path};

use axum::{Json, Router, extract::State, middleware, routing::get};
use serde::{Deserialize, Serialize};

use super::{
    AppState,
    auth::{self, Role},
    error::{ApiError, ApiQuery},
};
use crate::{
    config::{Loaded, Setting},
    keys::KeySource,
};

/// The route, behind the admin role (the caller adds the key check).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/config", get(show))
        .route_layer(middleware::from_fn_with_state(
            Role::Admin,
            auth::require_role,
        ))
}

/// No parameters; unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

/// The body of `/api/v1/config`.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Effective {
    /// The config file read, if one was.
    file: Option<String>,
    /// Every option by long name (the config file's keys).
    options: BTreeMap<String, Setting>,
    api_keys: ApiKeys,
}

/// Where the API keys come from.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
struct ApiKeys {
    admin: AdminKey,
    read_only: ReadOnlyKeys,
}

#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
struct AdminKey {
    /// `environment` (`NETMON_API_KEY`), `file` (`--api-key-file` or the
    /// state directory's key file), `credential` (systemd's `api-key`) or
    /// `generated` (written to the state directory on this start).
    #[schema(pattern = "^(environment|file|credential|generated)$")]
    source: &'static str,
    /// The file it was read from or written to; null for `environment`.
    path: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
struct ReadOnlyKeys {
    /// Keys read from the files.
    keys: usize,
    /// The `--read-only-key-file` files.
    files: Vec<String>,
}

fn path_text(p: &Path) -> String {
    p.display().to_string()
}

impl Effective {
    /// The configuration `loaded`, with the admin key from `admin` and
    /// `read_only_keys` keys from the read-only key files.
    pub fn new(loaded: &Loaded, admin: &KeySource, read_only_keys: usize) -> Self {
        let (source, path) = match admin {
            KeySource::Env => ("environment", None),
            KeySource::File(p) => ("file", Some(path_text(p))),
            KeySource::Credential(p) => ("credential", Some(path_text(p))),
            KeySource::Generated(p) => ("generated", Some(path_text(p))),
        };
        Effective {
            file: loaded.file.as_deref().map(path_text),
            options: loaded.settings(),
            api_keys: ApiKeys {
                admin: AdminKey { source, path },
                read_only: ReadOnlyKeys {
                    keys: read_only_keys,
                    files: loaded
                        .config
                        .access
                        .read_only_key_files
                        .iter()
                        .map(|p| path_text(p))
                        .collect(),
                },
            },
        }
    }
}

#[utoipa::path(get, path = "/api/v1/config", operation_id = "getConfig", tag = "admin",
    description = "Every option in effect with its source, as `netmon-agent config show` prints it, \
                   and where the API keys come from (never a key, a hash or a key file's contents). \
                   Needs the admin key: a read-only key gets 403.",
    responses((status = 200, description = "The agent's effective configuration.", body = Effective)))]
async fn show(
    State(state): State<AppState>,
    ApiQuery(Params {}): ApiQuery<Params>,
) -> Result<Json<Effective>, ApiError> {
    Ok(Json(Effective::clone(&state.config)))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

    #[test]
    fn options_with_their_sources_and_only_where_the_keys_come_from() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("netmon.toml");
        std::fs::write(&file, "flow-entries = 1024\n").unwrap();
        let file_arg = file.to_str().unwrap();
        let loaded = crate::config::load([
            "netmon-agent",
            "--config",
            file_arg,
            "--read-only-key-file",
            "/etc/netmon/a,/etc/netmon/b",
        ])
        .unwrap();
        let key_file = PathBuf::from("/var/lib/netmon/api-key");
        let body =
            serde_json::to_value(Effective::new(&loaded, &KeySource::Generated(key_file), 3))
                .unwrap();
        assert_eq!(body["file"], file_arg);
        let options = body["options"].as_object().unwrap();
        assert_eq!(options.len(), loaded.values.len() - 1, "all but `config`");
        assert_eq!(
            options["flow-entries"],
            json!({"values": ["1024"], "source": "config-file"})
        );
        assert_eq!(
            options["read-only-key-file"],
            json!({"values": ["/etc/netmon/a", "/etc/netmon/b"], "source": "command-line"})
        );
        assert_eq!(
            options["interval"],
            json!({"values": ["1s"], "source": "default"})
        );
        assert_eq!(
            body["api_keys"],
            json!({
                "admin": {"source": "generated", "path": "/var/lib/netmon/api-key"},
                "read_only": {"keys": 3, "files": ["/etc/netmon/a", "/etc/netmon/b"]},
            })
        );
        let env = serde_json::to_value(Effective::new(&loaded, &KeySource::Env, 0)).unwrap();
        assert_eq!(
            env["api_keys"]["admin"],
            json!({"source": "environment", "path": null})
        );
    }
}
