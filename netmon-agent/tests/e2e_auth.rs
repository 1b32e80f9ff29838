//! End-to-end tests of who may use the API and how it is reached, against
//! the real `netmon-agent` binary in a network namespace over real HTTP and
//! HTTPS: admin and read-only keys, keys configured as sha-256 or argon2
//! hashes, TLS from a certificate made here with `openssl`, and the query
//! size limit.
//!
//! The sha-256 forms are computed with coreutils' `sha256sum`, not with the
//! agent's code; the argon2 forms come from `netmon-agent hash-key` (no other
//! argon2 implementation is installed here). HTTPS is spoken by `curl`
//! (`--cacert` with the test certificate), run inside the namespace.
//!
//! Privileged: needs root, like every namespace test (see `tests/common`).

mod common;

use std::{
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// How long the agent may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(4);

/// Read-only keys: one given as is, one as its sha-256, one as argon2.
const RO_PLAIN: &str = "dashboard-plain-0123456789";
const RO_SHA: &str = "dashboard-sha256-0123456789";
const RO_ARGON: &str = "dashboard-argon2-0123456789";

/// Every authenticated endpoint, each with whether it must answer 200 (the
/// collector-backed ones may still be 503 right after start; both mean the
/// key was accepted).
const ENDPOINTS: &[(&str, bool)] = &[
    ("/api/v1/devices", true),
    ("/api/v1/flows", true),
    ("/api/v1/interfaces", true),
    ("/api/v1/system", false),
    ("/api/v1/latency", false),
    ("/api/v1/compliance", false),
    ("/api/v1/packages", false),
    ("/api/v1/security", false),
    ("/api/v1/snapshot", false),
];

// ---------------------------------------------------------------------------
// Helpers

/// A private temporary directory (deleted on drop).
fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("netmon-e2e-auth-")
        .tempdir()
        .expect("creating a temporary directory")
}

/// Writes `contents` to `dir/name` with mode 0600.
fn write_private(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    path
}

/// `sha256:<hex>` of `key`, by coreutils' sha256sum.
fn sha256_form(key: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running sha256sum");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(key.as_bytes())
        .expect("writing to sha256sum");
    let out = child.wait_with_output().expect("sha256sum output");
    assert!(out.status.success(), "sha256sum failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("sha256sum prints ASCII");
    let hex = text.split_whitespace().next().expect("a digest");
    format!("sha256:{hex}")
}

/// `netmon-agent hash-key` with `input` on stdin: its status, stdout, stderr.
fn hash_key_cmd(input: &str) -> (ExitStatus, String, String) {
    let mut child = Command::new(agent_bin())
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running netmon-agent hash-key");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("writing the key");
    let out = child.wait_with_output().expect("hash-key output");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The argon2 form of `key`, from `netmon-agent hash-key`.
fn argon2_form(key: &str) -> String {
    let (status, stdout, stderr) = hash_key_cmd(&format!("{key}\n"));
    assert!(status.success(), "hash-key failed ({status}): {stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("hash-key printed no argon2id line:\n{stdout}"));
    line.to_owned()
}

/// The agent started with `cmd` in `ns`; stopped (SIGTERM, then SIGKILL)
/// when dropped.
struct Running<'ns> {
    ns: &'ns NetNs,
    child: NsChild,
}

impl<'ns> Running<'ns> {
    /// Spawns `cmd` and waits until `healthy(ns)` holds; panics with the
    /// agent's stderr if it exits first or takes longer than START_TIMEOUT.
    fn start(ns: &'ns NetNs, cmd: &Command, healthy: impl Fn(&NetNs) -> bool) -> Running<'ns> {
        let mut child = ns.spawn(cmd);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_status() {
                panic!(
                    "`{}` exited during start-up ({status}):\n{}",
                    child.command(),
                    child.stderr_text()
                );
            }
            if healthy(ns) {
                return Running { ns, child };
            }
            assert!(
                Instant::now() < deadline,
                "`{}` not ready after {START_TIMEOUT:?}:\n{}",
                child.command(),
                child.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Started over plain HTTP: `/health` answers `ok`.
    fn start_http(ns: &'ns NetNs, cmd: &Command) -> Running<'ns> {
        Self::start(ns, cmd, |ns| {
            http_get(ns, "/health", &[]).is_ok_and(|r| r.status == 200 && r.json["status"] == "ok")
        })
    }

    fn stderr(&self) -> String {
        self.child.stderr_text()
    }

    /// `GET path` with `key` in X-API-KEY over plain HTTP.
    fn get(&self, path: &str, key: &str) -> Reply {
        http_get(self.ns, path, &[("X-API-KEY", key)])
            .unwrap_or_else(|e| panic!("{e}\nagent stderr:\n{}", self.stderr()))
    }
}

// ---------------------------------------------------------------------------
// Keys and roles

/// The admin key (from NETMON_API_KEY) and read-only keys given as is, as
/// sha-256 and as argon2 in two `--read-only-key-file`s all read every
/// endpoint; wrong keys, and the hashes themselves presented as keys, are 401.
#[test]
fn admin_and_read_only_keys_read_every_endpoint_and_wrong_keys_are_401() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = temp_dir();
    let sha = sha256_form(RO_SHA);
    let argon = argon2_form(RO_ARGON);
    let plain_file = write_private(
        tmp.path(),
        "dashboards",
        &format!("# the wall display\n\n  {RO_PLAIN}  \n"),
    );
    let hashed_file = write_private(
        tmp.path(),
        "hashed",
        &format!("# hashed keys\n{sha}\n{argon}\n"),
    );
    let cmd = agent_command(
        &tmp.path().join("state"),
        &[
            "--read-only-key-file",
            plain_file.to_str().expect("UTF-8 path"),
            "--read-only-key-file",
            hashed_file.to_str().expect("UTF-8 path"),
        ],
    );
    let agent = Running::start_http(ns, &cmd);
    assert!(
        agent.stderr().contains("Using read-only API keys") && agent.stderr().contains("keys=3"),
        "no log line for 3 read-only keys:\n{}",
        agent.stderr()
    );

    for key in [TEST_KEY, RO_PLAIN, RO_SHA, RO_ARGON] {
        // Twice: the second argon2 request is answered from the table of
        // verified keys, and must agree with the first.
        for round in 0..2 {
            for &(path, must_be_200) in ENDPOINTS {
                let reply = agent.get(path, key);
                let ok = reply.status == 200 || (!must_be_200 && reply.status == 503);
                assert!(ok, "GET {path} with {key} (round {round}): {reply:#?}");
            }
        }
        let devices = agent.get("/api/v1/devices", key);
        assert!(devices.json["devices"].is_array(), "{devices:#?}");
    }

    let wrong_plain = RO_PLAIN.replace('0', "1");
    let wrong_argon = format!("{RO_ARGON}x");
    for (what, key) in [
        ("a wrong key", "netmon-wrong-key-0123456789"),
        ("a near miss of a read-only key", wrong_plain.as_str()),
        ("a near miss of an argon2 key", wrong_argon.as_str()),
        ("the sha-256 form itself", sha.as_str()),
        ("the argon2 form itself", argon.as_str()),
    ] {
        let reply = agent.get("/api/v1/devices", key);
        assert_json_error(&reply, 401, "unauthorized", None, what);
        assert_eq!(
            reply.header("www-authenticate"),
            Some(r#"Bearer realm="netmon""#),
            "{what}: {reply:#?}"
        );
    }
}

/// `/api/v1/config` needs the admin key: it answers the admin key with the
/// options in effect and where the keys come from, with no key, key hash or
/// key file contents anywhere in it; a read-only key gets a JSON 403, no key
/// or a wrong one a JSON 401.
#[test]
fn config_is_for_the_admin_key_only_and_holds_no_secret() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = temp_dir();
    // The admin key as its sha-256 in a key file, read-only keys as is and
    // as a sha-256, and an option from a config file.
    let admin_sha = sha256_form(TEST_KEY);
    let admin_file = write_private(tmp.path(), "admin", &format!("{admin_sha}\n"));
    let ro_sha = sha256_form(RO_SHA);
    let ro_file = write_private(
        tmp.path(),
        "dashboards",
        &format!("# dashboards\n{RO_PLAIN}\n{ro_sha}\n"),
    );
    let config = write_private(tmp.path(), "netmon.toml", "flow-entries = 4096\n");
    let path = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
    let mut cmd = agent_command(
        &tmp.path().join("state"),
        &[
            "--config",
            &path(&config),
            "--api-key-file",
            &path(&admin_file),
            "--read-only-key-file",
            &path(&ro_file),
        ],
    );
    cmd.env_remove("NETMON_API_KEY");
    let agent = Running::start_http(ns, &cmd);

    let reply = agent.get("/api/v1/config", TEST_KEY);
    assert_eq!(reply.status, 200, "{reply:#?}");
    let body = &reply.json;
    assert_eq!(body["file"], path(&config), "{body:#}");
    let option = |name: &str| body["options"][name].clone();
    assert_eq!(
        option("flow-entries"),
        serde_json::json!({"values": ["4096"], "source": "config-file"})
    );
    assert_eq!(
        option("interval"),
        serde_json::json!({"values": ["200ms"], "source": "environment"})
    );
    assert_eq!(
        option("api-key-file"),
        serde_json::json!({"values": [path(&admin_file)], "source": "command-line"})
    );
    assert_eq!(option("idle-expiry")["source"], "default", "{body:#}");
    assert_eq!(
        body["api_keys"],
        serde_json::json!({
            "admin": {"source": "file", "path": path(&admin_file)},
            "read_only": {"keys": 2, "files": [path(&ro_file)]},
        })
    );
    let admin_hex = admin_sha.trim_start_matches("sha256:");
    let ro_hex = ro_sha.trim_start_matches("sha256:");
    for secret in [
        TEST_KEY,
        admin_hex,
        RO_PLAIN,
        RO_SHA,
        ro_hex,
        "# dashboards",
    ] {
        assert!(
            !reply.text.contains(secret),
            "the config answer holds {secret:?}: {}",
            reply.text
        );
    }

    for key in [RO_PLAIN, RO_SHA] {
        let reply = agent.get("/api/v1/config", key);
        assert_json_error(&reply, 403, "forbidden", None, "a read-only key");
        assert!(
            reply.json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("admin")),
            "{reply:#?}"
        );
        // The same key still reads the other endpoints.
        assert_eq!(agent.get("/api/v1/devices", key).status, 200);
    }
    let reply = http_get(ns, "/api/v1/config", &[])
        .unwrap_or_else(|e| panic!("{e}\nagent stderr:\n{}", agent.stderr()));
    assert_json_error(&reply, 401, "unauthorized", None, "no key");
    let reply = agent.get("/api/v1/config", "netmon-wrong-key-0123456789");
    assert_json_error(&reply, 401, "unauthorized", None, "a wrong key");
    let reply = agent.get("/api/v1/config", &admin_sha);
    assert_json_error(&reply, 401, "unauthorized", None, "the admin key's hash");
}

/// `--api-key-file` may hold the admin key's sha-256 or argon2 form; the
/// plaintext key then works and the hash does not.
#[test]
fn admin_key_file_may_hold_a_sha256_or_argon2_hash() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = temp_dir();
    for (name, form) in [
        ("sha", sha256_form(TEST_KEY)),
        ("argon", argon2_form(TEST_KEY)),
    ] {
        let file = write_private(tmp.path(), name, &format!("{form}\n"));
        let mut cmd = agent_command(
            &tmp.path().join("state"),
            &["--api-key-file", file.to_str().expect("UTF-8 path")],
        );
        cmd.env_remove("NETMON_API_KEY");
        let agent = Running::start_http(ns, &cmd);
        let reply = agent.get("/api/v1/devices", TEST_KEY);
        assert_eq!(reply.status, 200, "{name}: {reply:#?}");
        let reply = agent.get("/api/v1/devices", &form);
        assert_eq!(reply.status, 401, "{name}: the hash itself: {reply:#?}");
        assert!(
            !tmp.path().join("state/api-key").exists(),
            "{name}: a key was generated despite --api-key-file"
        );
    }
}

/// `hash-key` prints the sha-256 form sha256sum computes and an argon2id
/// line; a short key is refused with exit 2.
#[test]
fn hash_key_prints_both_forms_and_refuses_short_keys() {
    let (status, stdout, stderr) = hash_key_cmd(&format!("{RO_SHA}\n"));
    assert!(status.success(), "{status}: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0], sha256_form(RO_SHA));
    assert!(lines[1].starts_with("$argon2id$v=19$"), "{stdout}");

    let (status, _, stderr) = hash_key_cmd("short\n");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("too short"), "{stderr}");
}

/// A read-only key file with a bad line or no key stops the start with exit
/// code 2, naming the file (and the line).
#[test]
fn bad_read_only_key_files_exit_2_naming_them() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = temp_dir();
    let bad_line = write_private(tmp.path(), "bad", &format!("{RO_PLAIN}\nsha256:abc\n"));
    let empty = write_private(tmp.path(), "empty", "# nothing yet\n");
    let missing = tmp.path().join("missing");
    for (file, needle) in [
        (
            &bad_line,
            format!("API key on line 2 of {}", bad_line.display()),
        ),
        (
            &empty,
            format!("read-only key file {} holds no key", empty.display()),
        ),
        (
            &missing,
            format!("cannot read API key file {}", missing.display()),
        ),
    ] {
        let cmd = agent_command(
            &tmp.path().join("state"),
            &["--read-only-key-file", file.to_str().expect("UTF-8 path")],
        );
        let (status, stderr) = run_to_exit(ns, &cmd);
        assert_exit(status, &stderr, 2, &[&needle]);
    }
}

// ---------------------------------------------------------------------------
// TLS

/// `curl` in `ns` over HTTPS trusting `ca` (none: the system's trust): the
/// status and body, or curl's failure.
fn curl_https(
    ns: &NetNs,
    ca: Option<&Path>,
    path: &str,
    key: Option<&str>,
) -> Result<(u16, Value), ExecError> {
    let mut args: Vec<String> = vec!["curl".into(), "-sS".into(), "--max-time".into(), "5".into()];
    if let Some(ca) = ca {
        args.extend(["--cacert".into(), ca.display().to_string()]);
    }
    if let Some(key) = key {
        args.extend(["-H".into(), format!("X-API-KEY: {key}")]);
    }
    args.extend(["-w".into(), "\n%{http_code}".into()]);
    args.push(format!("https://{LISTEN}{path}"));
    let out = ns.try_exec(&args)?;
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    let status = code.trim().parse().unwrap_or(0);
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// With `--tls-cert`/`--tls-key` the API answers over HTTPS with that
/// certificate (keys still checked), a client that does not trust it fails,
/// plain HTTP to the port gets no answer, and SIGTERM still stops the agent
/// promptly with a connection stuck before its handshake.
#[test]
fn tls_serves_https_with_the_given_certificate_and_refuses_plain_http() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = temp_dir();
    let (cert, key) = make_cert(tmp.path());
    let cmd = agent_command(
        &tmp.path().join("state"),
        &[
            "--tls-cert",
            cert.to_str().expect("UTF-8 path"),
            "--tls-key",
            key.to_str().expect("UTF-8 path"),
        ],
    );
    let mut agent = Running::start(ns, &cmd, |ns| {
        curl_https(ns, Some(&cert), "/health", None)
            .is_ok_and(|(status, body)| status == 200 && body["status"] == "ok")
    });
    assert!(
        agent.stderr().contains("tls=true"),
        "the listening log line does not say TLS:\n{}",
        agent.stderr()
    );

    let (status, body) = curl_https(ns, Some(&cert), "/api/v1/devices", Some(TEST_KEY))
        .unwrap_or_else(|e| panic!("{e}\nagent stderr:\n{}", agent.stderr()));
    assert_eq!(status, 200, "{body}");
    assert!(body["devices"].is_array(), "{body}");
    let (status, body) = curl_https(
        ns,
        Some(&cert),
        "/api/v1/devices",
        Some("netmon-wrong-0123456789"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");

    // Not trusting the certificate: curl refuses it (exit 60).
    let err =
        curl_https(ns, None, "/health", None).expect_err("an untrusted certificate was accepted");
    assert_eq!(err.status.and_then(|s| s.code()), Some(60), "{err}");

    // Plain HTTP to the TLS port: no HTTP answer.
    match http_get(ns, "/health", &[]) {
        Err(_) => {}
        Ok(reply) => panic!("plain HTTP to the TLS port was answered: {reply:#?}"),
    }

    // A client that connects and never starts its handshake does not hold
    // up shutdown.
    let idle = ns.run(|| {
        std::net::TcpStream::connect(LISTEN).unwrap_or_else(|e| panic!("connect {LISTEN}: {e}"))
    });
    std::thread::sleep(Duration::from_millis(200));
    let pid = libc::pid_t::try_from(agent.child.id()).expect("pid fits pid_t");
    // SAFETY: kill has no memory preconditions; the child is not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = agent.child.wait_with_timeout(STOP_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "SIGTERM with a connection waiting for its handshake: {status:?}\n{}",
        agent.stderr()
    );
    drop(idle);
}

/// A missing or non-PEM certificate or key, or only one of the two options,
/// stops the start with exit code 2 naming the option (and the file).
#[test]
fn bad_tls_files_exit_2_naming_the_option() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = temp_dir();
    let (cert, key) = make_cert(tmp.path());
    let not_pem = write_private(tmp.path(), "not-pem", "hello, I am not a certificate\n");
    let missing = tmp.path().join("missing.pem");
    let s = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec![
                "--tls-cert".into(),
                s(&missing),
                "--tls-key".into(),
                s(&key),
            ],
            vec![format!("cannot read --tls-cert file {}", missing.display())],
        ),
        (
            vec![
                "--tls-cert".into(),
                s(&not_pem),
                "--tls-key".into(),
                s(&key),
            ],
            vec![format!(
                "--tls-cert file {} holds no PEM certificate",
                not_pem.display()
            )],
        ),
        (
            vec![
                "--tls-cert".into(),
                s(&cert),
                "--tls-key".into(),
                s(&missing),
            ],
            vec![format!("cannot read --tls-key file {}", missing.display())],
        ),
        (
            vec!["--tls-cert".into(), s(&cert), "--tls-key".into(), s(&cert)],
            vec![format!(
                "--tls-key file {} holds no PEM private key",
                cert.display()
            )],
        ),
        (
            vec!["--tls-cert".into(), s(&cert)],
            vec!["--tls-key".into()],
        ),
    ];
    for (args, needles) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = agent_command(&tmp.path().join("state"), &args);
        let (status, stderr) = run_to_exit(ns, &cmd);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_exit(status, &stderr, 2, &needles);
    }
}

// ---------------------------------------------------------------------------
// Limits

/// A query string over 4 KiB is a JSON 400 naming `query`, with or without a
/// key; one under the limit reaches the endpoint's own parameter check.
#[test]
fn oversized_query_is_a_json_400_naming_query() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = temp_dir();
    let agent = Running::start_http(ns, &agent_command(&tmp.path().join("state"), &[]));

    let long = format!("/api/v1/devices?interface={}", "x".repeat(5000));
    let reply = agent.get(&long, TEST_KEY);
    assert_json_error(&reply, 400, "bad_request", Some("query"), "5000-byte query");
    let message = reply.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("4096"), "{message}");
    let reply = http_get(ns, &long, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_json_error(
        &reply,
        400,
        "bad_request",
        Some("query"),
        "5000-byte query, no key",
    );

    let under = format!("/api/v1/devices?bogus={}", "x".repeat(3000));
    let reply = agent.get(&under, TEST_KEY);
    assert_json_error(
        &reply,
        400,
        "bad_request",
        Some("bogus"),
        "unknown parameter",
    );
}
