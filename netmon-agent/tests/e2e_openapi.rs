//! End-to-end tests of the OpenAPI document the real agent serves at
//! `/api/v1/openapi.json`: that it is OpenAPI 3, lists exactly the routes the
//! server answers (and with the security they really have), declares the
//! statuses and content types the server really sends, passes a real
//! validator (`openapi-spec-validator`), and that fuzzing the API from it
//! (`schemathesis`) draws no 5xx and no crash, and only answers whose status,
//! content type and body are the documented ones. Every JSON success body
//! but the document's own has a real schema, and the fuzzed agent has a
//! reading of every collector, traffic, and a reachable and an unreachable
//! probe target, so the bodies checked hold values and `unavailable`
//! reasons alike.
//!
//! Privileged: the agent runs as root in its own namespaces (see
//! `tests/common`). The Python tools are installed with pip when missing;
//! a failed install fails the test with a message saying so.

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use common::*;
use serde_json::Value;

const DOC_PATH: &str = "/api/v1/openapi.json";

/// Every route the server serves with GET (see `src/api/*.rs`, `routes()`),
/// and whether it needs the key when `/metrics` is open (`--metrics-auth`
/// off, the default on a loopback listener). The dashboard (`/`,
/// `/assets/*`) is served beside them but is no part of the API document.
const ROUTES: [(&str, bool); 24] = [
    ("/health", false),
    ("/metrics", false),
    ("/latest", true),
    ("/api/v1/openapi.json", false),
    ("/api/v1/devices", true),
    ("/api/v1/devices/{mac}", true),
    ("/api/v1/devices/{mac}/history", true),
    ("/api/v1/flows", true),
    ("/api/v1/interfaces", true),
    ("/api/v1/system", true),
    ("/api/v1/latency", true),
    ("/api/v1/compliance", true),
    ("/api/v1/packages", true),
    ("/api/v1/security", true),
    ("/api/v1/containers", true),
    ("/api/v1/snapshot", true),
    ("/api/v1/history", true),
    ("/api/v1/top", true),
    ("/api/v1/series", true),
    ("/api/v1/stream", true),
    ("/api/v1/config", true),
    ("/api/v1/limits", true),
    ("/api/v1/alerts", true),
    ("/api/v1/alerts/history", true),
];

/// The routes served with another method than GET (all need a key).
const WRITES: [(&str, &str); 3] = [
    ("post", "/api/v1/stream/ticket"),
    ("put", "/api/v1/devices/{mac}/label"),
    ("post", "/api/v1/alerts/silences"),
];

/// The routes as a set.
fn routes() -> BTreeSet<&'static str> {
    ROUTES
        .iter()
        .map(|(p, _)| *p)
        .chain(WRITES.iter().map(|(_, p)| *p))
        .collect()
}

/// The method `p` is served with.
fn method_of(p: &str) -> &'static str {
    WRITES
        .iter()
        .find(|(_, w)| *w == p)
        .map_or("get", |(m, _)| m)
}

/// A concrete request path for documented path `p` (MAC of the pair's end A).
fn concrete(p: &str) -> String {
    p.replace("{mac}", &format_mac(Pair::MAC_A))
}

fn fetch_doc(ns: &NetNs) -> Value {
    let reply = http_get_ok(ns, DOC_PATH, &[]);
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{reply:#?}"
    );
    reply.json
}

/// The operation of `doc` at `p` (its one method).
fn op<'a>(doc: &'a Value, p: &str) -> &'a Value {
    let op = &doc["paths"][p][method_of(p)];
    assert!(op.is_object(), "no {} {p} in the document", method_of(p));
    op
}

/// `schema`, or the component it refers to.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Whether `GET p` is documented as needing a key.
fn needs_key(doc: &Value, p: &str) -> bool {
    let security = op(doc, p)
        .get("security")
        .unwrap_or(&doc["security"])
        .as_array()
        .unwrap_or_else(|| panic!("GET {p}: security is not a list"));
    // An empty requirement object (`{}`) would make the key optional.
    !security.is_empty()
        && security
            .iter()
            .all(|r| r.as_object().is_some_and(|o| !o.is_empty()))
}

/// Runs `cmd`, returning whether it succeeded and its output.
fn run(cmd: &mut Command) -> (bool, String) {
    match cmd.output() {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, format!("{cmd:?}: {e}")),
    }
}

/// Makes sure `python3 -c "import {module}"` works, installing `package`
/// with pip when it does not.
fn require_python(module: &str, package: &str) {
    if run(Command::new("python3").args(["-c", &format!("import {module}")])).0 {
        return;
    }
    let (ok, out) = run(Command::new("python3").args(["-m", "pip", "install", "--quiet", package]));
    assert!(
        ok,
        "{package} is missing and `python3 -m pip install {package}` failed; \
         install it by hand to run this test:\n{out}"
    );
}

fn write_doc(name: &str, doc: &Value) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("netmon-openapi-{}-{name}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec_pretty(doc).expect("JSON"))
        .expect("writing the document");
    path
}

fn validate(file: &Path) {
    require_python("openapi_spec_validator", "openapi-spec-validator");
    let (ok, out) = run(Command::new("python3")
        .arg("-m")
        .arg("openapi_spec_validator")
        .arg(file));
    assert!(
        ok,
        "openapi-spec-validator rejects the document {}:\n{out}",
        file.display()
    );
}

#[test]
fn document_lists_exactly_the_served_routes_with_their_security_and_statuses() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let agent = Agent::start(ns, &[]);
    let doc = fetch_doc(ns);

    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi: {:?}", doc["openapi"]);
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(documented, routes(), "documented paths != served routes");
    for (p, item) in doc["paths"].as_object().expect("paths") {
        let methods: Vec<&String> = item.as_object().expect("path item").keys().collect();
        assert_eq!(methods, [method_of(p)], "{p}: one method is served");
    }
    check_writes(ns, &doc);

    for &(p, keyed) in &ROUTES {
        assert_eq!(needs_key(&doc, p), keyed, "GET {p}: documented security");
        let o = op(&doc, p);
        let responses = o["responses"].as_object().expect("responses");
        for status in ["200", "400", "404", "503"] {
            assert!(
                responses.contains_key(status),
                "GET {p}: no {status} documented"
            );
        }
        for status in ["401", "403", "429"] {
            assert_eq!(
                responses.contains_key(status),
                keyed,
                "GET {p}: {status} documented?"
            );
        }
        // The success body has a schema of its own (checked in full by the
        // fuzzer below), not a free-form object; only the document's own
        // body is one.
        let ok = &responses["200"]["content"];
        if let Some(json) = ok.get("application/json")
            && p != DOC_PATH
        {
            let schema = resolve(&doc, &json["schema"]);
            assert!(
                ["properties", "allOf", "oneOf"]
                    .iter()
                    .any(|k| schema.get(*k).is_some()),
                "GET {p}: the 200 body's schema is free-form: {schema}"
            );
        }
        for (status, r) in responses {
            if status != "200" {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "GET {p}: {status} is not the JSON error body"
                );
            }
        }

        // The route exists (not the fallback's 404) with that security:
        // without a key, keyed routes say 401 and open ones answer.
        if p == "/api/v1/stream" {
            // An endless body: only the keyed refusal can be read whole.
            let reply = http_get_ok(ns, p, &[]);
            assert_eq!(reply.status, 401, "GET {p} without key: {reply:#?}");
            continue;
        }
        let url = concrete(p);
        let without = http_get_ok(ns, &url, &[]);
        let with = http_get_ok(ns, &url, &[("X-API-KEY", TEST_KEY)]);
        if keyed {
            assert_eq!(without.status, 401, "GET {url} without key: {without:#?}");
        } else {
            assert_eq!(
                without.status, with.status,
                "GET {url}: the key changes the answer"
            );
        }
        // With the key the status and content type are documented ones.
        let status = with.status.to_string();
        let documented = &o["responses"][&status];
        assert!(
            documented.is_object(),
            "GET {url}: status {status} not documented: {with:#?}"
        );
        let content_type = with.header("content-type").unwrap_or_default();
        let media = documented["content"].as_object().expect("content");
        assert!(
            media
                .keys()
                .any(|m| content_type.starts_with(m.split(';').next().unwrap_or(m))),
            "GET {url}: content type {content_type:?} is not among {:?}",
            media.keys().collect::<Vec<_>>()
        );

        // Every documented query parameter is one the server knows: passing
        // an unknown one instead is a 400 naming it.
        let bad = http_get_ok(
            ns,
            &format!("{url}?openapi_unknown=1"),
            &[("X-API-KEY", TEST_KEY)],
        );
        if p != "/health" && p != DOC_PATH {
            assert_eq!(bad.status, 400, "GET {url}?openapi_unknown=1: {bad:#?}");
            assert_eq!(bad.json["error"]["code"], "bad_request", "{bad:#?}");
        }
    }

    // The dashboard is served beside the API but is not part of it.
    let page = http_get_ok(ns, "/", &[]);
    assert_eq!(page.status, 200, "{page:#?}");
    assert!(
        doc["paths"].get("/").is_none(),
        "the dashboard is not an API route"
    );

    // A path the document does not list is the fallback's JSON 404.
    let missing = http_get_ok(ns, "/api/v1/nope", &[("X-API-KEY", TEST_KEY)]);
    assert_eq!(missing.status, 404, "{missing:#?}");

    // Declared query parameters are accepted by the server.
    let flows = op(&doc, "/api/v1/flows");
    let names: BTreeSet<&str> = flows["parameters"]
        .as_array()
        .expect("flows parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["limit", "sort"]));
    let sorted = agent.get("/api/v1/flows?limit=5&sort=bytes");
    assert!(sorted["flows"].is_array(), "{sorted}");

    validate(&write_doc("open", &doc));
}

#[test]
fn metrics_security_follows_metrics_auth_and_the_fuzzer_finds_no_server_error() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    // A reachable and an unreachable probe target, so the latency bodies
    // carry both a value and an `unavailable` reason for the schemas to be
    // checked against.
    let unreachable = "10.0.0.99";
    let targets = format!("{},{unreachable}", Pair::IP4_A);
    let agent = Agent::start(
        ns,
        &[
            "--metrics-auth",
            "on",
            "--probe-target",
            &targets,
            "--probe-count=2",
            "--probe-spacing=20ms",
            "--probe-timeout=300ms",
            "--latency-interval=500ms",
        ],
    );
    // Every collector's first reading, so no body is a 503 for lack of one.
    for path in ["/api/v1/system", "/api/v1/latency"] {
        assert!(
            poll_until(START_TIMEOUT, || agent
                .try_request(path, &[("X-API-KEY", TEST_KEY)])
                .is_ok_and(|(status, _)| status == 200)),
            "GET {path}: no reading; agent stderr:\n{}",
            agent.stderr()
        );
    }
    let latency = agent.wait_for("/api/v1/latency", START_TIMEOUT, |b| {
        let rtt = |addr: &str| {
            b["targets"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["address"] == addr))
                .map(|t| t["rtt"].clone())
        };
        rtt(&Pair::IP4_A.to_string()).is_some_and(|r| r["avg_seconds"].is_number())
            && rtt(unreachable).is_some_and(|r| r["unavailable"].is_string())
    });
    assert!(
        latency["collection"]["cycles"].as_u64() > Some(0),
        "{latency:#}"
    );
    agent.wait_for("/api/v1/interfaces", START_TIMEOUT, |b| {
        b["stats"]["interfaces"].is_array()
    });
    // Traffic first, so the fuzzed answers carry devices and flows whose
    // shapes the response schemas are checked against.
    let sink = ns.run(|| udp_sink(format!("{}:0", Pair::IP4_B).parse().expect("address")));
    let to = sink.local_addr();
    pair.a().ns().run(|| {
        udp_send(
            format!("{}:0", Pair::IP4_A).parse().expect("address"),
            to,
            100,
            20,
        )
    });
    agent.wait_for("/api/v1/flows", START_TIMEOUT, |b| {
        b["flows"].as_array().is_some_and(|f| !f.is_empty())
    });
    agent.wait_for("/api/v1/devices", START_TIMEOUT, |b| {
        b["devices"].as_array().is_some_and(|d| !d.is_empty())
    });
    drop(sink);
    let doc = fetch_doc(ns);
    assert!(needs_key(&doc, "/metrics"), "{}", doc["paths"]["/metrics"]);
    let reply = http_get_ok(ns, "/metrics", &[]);
    assert_eq!(reply.status, 401, "{reply:#?}");
    let file = write_doc("keyed", &doc);
    validate(&file);

    require_python("schemathesis", "schemathesis");
    let junit = std::env::temp_dir().join(format!("netmon-openapi-{}-st.xml", std::process::id()));
    let har = std::env::temp_dir().join(format!("netmon-openapi-{}-st.har", std::process::id()));
    let key = format!("X-API-KEY: {TEST_KEY}");
    // In the temp dir: schemathesis leaves a `.schemathesis` cache behind.
    let (ok, out) = run(Command::new("ip")
        .current_dir(std::env::temp_dir())
        .args(["netns", "exec", ns.name()])
        .args([
            "python3",
            "-m",
            "schemathesis.cli",
            "run",
            &format!("http://{LISTEN}{DOC_PATH}"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
         response_schema_conformance",
            "-H",
            &key,
            "--max-examples",
            "25",
            "--exclude-path",
            "/api/v1/stream",
            "--request-timeout",
            "10",
            "--seed",
            "1",
            "--no-color",
            "--report",
            "junit,har",
            "--report-har-path",
        ])
        .arg(&har)
        .arg("--report-junit-path")
        .arg(&junit));
    let tested = std::fs::read_to_string(&junit).unwrap_or_default();
    let _ = std::fs::remove_file(&junit);
    let exchanges = std::fs::read_to_string(&har).unwrap_or_default();
    let _ = std::fs::remove_file(&har);
    eprintln!("schemathesis:\n{out}");
    assert!(ok, "schemathesis found a problem (or did not run):\n{out}");
    // It really tested every operation but the endless stream (and the
    // document itself, which schemathesis leaves out when loading it).
    for p in routes() {
        if p == "/api/v1/stream" || p == DOC_PATH {
            continue;
        }
        let m = method_of(p).to_uppercase();
        assert!(
            tested.contains(&format!("testcase name=\"{m} {p}\"")),
            "schemathesis did not test {m} {p}; JUnit report:\n{tested}"
        );
    }
    assert_every_parameter_was_accepted(&doc, &exchanges);
}

/// Every parameter the document declares for the fuzzed operations was
/// sent in at least one request the server accepted (answered other than
/// 400): the fuzzer reached the handlers with valid values of each, not
/// only with values the parameter check refuses.
fn assert_every_parameter_was_accepted(doc: &Value, har: &str) {
    let har: Value = serde_json::from_str(har).expect("schemathesis wrote a HAR file");
    let entries = har["log"]["entries"].as_array().expect("HAR entries");
    assert!(!entries.is_empty(), "the HAR file holds no exchange");
    let matches = |template: &str, path: &str| {
        let (t, p): (Vec<&str>, Vec<&str>) =
            (template.split('/').collect(), path.split('/').collect());
        t.len() == p.len()
            && t.iter()
                .zip(&p)
                .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
    };
    let mut missing = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        if template == "/api/v1/stream" || template == DOC_PATH {
            continue;
        }
        let accepted: Vec<&Value> = entries
            .iter()
            .filter(|e| {
                let url = e["request"]["url"].as_str().unwrap_or_default();
                let path = url
                    .split_once("://")
                    .and_then(|(_, rest)| rest.split_once('/'))
                    .map(|(_, p)| format!("/{}", p.split('?').next().unwrap_or_default()))
                    .unwrap_or_default();
                matches(template, &path) && e["response"]["status"].as_u64() != Some(400)
            })
            .collect();
        let ops = item.as_object().expect("path item").values();
        for param in ops.flat_map(|op| op["parameters"].as_array().into_iter().flatten()) {
            let name = param["name"].as_str().expect("a parameter name");
            let sent = |e: &&Value| {
                param["in"] == "path"
                    || e["request"]["queryString"]
                        .as_array()
                        .is_some_and(|q| q.iter().any(|kv| kv["name"] == name))
            };
            if !accepted.iter().any(sent) {
                missing.push(format!("{template} `{name}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "no accepted request carried these parameters: {missing:?}"
    );
}

/// The routes served with POST and PUT: documented with the key and the
/// error bodies, refused without a key (401), answered as documented with
/// the (admin) key, and a JSON 405 for GET.
fn check_writes(ns: &NetNs, doc: &Value) {
    for (method, p) in WRITES {
        let o = op(doc, p);
        assert!(needs_key(doc, p), "{method} {p}: documented security");
        let responses = o["responses"].as_object().expect("responses");
        for status in ["200", "400", "401", "403", "404", "429", "503"] {
            assert!(
                responses.contains_key(status),
                "{method} {p}: no {status} documented"
            );
        }
        let url = concrete(p);
        let body = match p {
            "/api/v1/devices/{mac}/label" => {
                Some(serde_json::json!({"name": "openapi-test", "note": null}))
            }
            "/api/v1/alerts/silences" => {
                Some(serde_json::json!({"rule": "cpu_high", "duration": "1m"}))
            }
            _ => None,
        };
        let body = body.as_ref();
        let m = method.to_uppercase();
        let without = http_send(ns, &m, &url, &[], body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(without.status, 401, "{m} {url} without key: {without:#?}");
        let with = http_send(ns, &m, &url, &[("X-API-KEY", TEST_KEY)], body)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(with.status, 200, "{m} {url}: {with:#?}");
        let schema = resolve(
            doc,
            &o["responses"]["200"]["content"]["application/json"]["schema"],
        );
        for field in schema["properties"]
            .as_object()
            .expect("a typed body")
            .keys()
        {
            assert!(
                with.json.get(field).is_some(),
                "{m} {url}: the answer lacks documented `{field}`: {with:#?}"
            );
        }
        // GET on them is the JSON 405.
        let get = http_get_ok(ns, &url, &[("X-API-KEY", TEST_KEY)]);
        assert_json_error(&get, 405, "method_not_allowed", None, &format!("GET {url}"));
    }
}
