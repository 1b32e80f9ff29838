//! Runs the real `netmon-agent` binary inside a test namespace and talks to
//! its API over real HTTP (from a thread inside that namespace, where the
//! agent listens on 127.0.0.1).

use std::{
    path::PathBuf,
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::netns::{NetNs, NsChild};

/// The API key every test agent is started with (via NETMON_API_KEY).
pub const TEST_KEY: &str = "netmon-test-key-0123456789";
/// Where the agent listens, inside its namespace.
pub const LISTEN: &str = "127.0.0.1:9713";
/// How long a start may take (loading and verifying the programs included).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent binary cargo built for these tests.
pub fn agent_bin() -> &'static str {
    env!("CARGO_BIN_EXE_netmon-agent")
}

/// A command line for the agent with the test defaults (key, a private
/// state directory holding the history file, a 200 ms interval, [`LISTEN`])
/// followed by `args`. The
/// defaults are environment variables, so `args` can override them.
///
/// With `NETMON_TEST_AGENT_USER=unprivileged` in the test's environment the
/// agent runs as `nobody` holding only [`UNPRIVILEGED_CAPS`] (through
/// setpriv), as the capability-restricted unit runs it; `cargo xtask test`
/// runs the traffic tests that way too.
pub fn agent_command(state_dir: &PathBuf, args: &[&str]) -> Command {
    let mut cmd = if std::env::var("NETMON_TEST_AGENT_USER").as_deref() == Ok("unprivileged") {
        let mut c = Command::new("setpriv");
        c.args(unprivileged_setpriv_args(UNPRIVILEGED_CAPS))
            .arg(agent_bin());
        c
    } else {
        Command::new(agent_bin())
    };
    cmd.env("NETMON_API_KEY", TEST_KEY)
        .env("NETMON_LOG", "info,netmon_agent=debug")
        .env("NETMON_STATE_DIR", state_dir)
        .env("NETMON_STORE_PATH", state_dir.join("netmon.redb"))
        .env("NETMON_INTERVAL", "200ms")
        .env("NETMON_LISTEN", LISTEN)
        .args(args);
    cmd
}

/// The capabilities the capability-restricted deployment grants.
pub const UNPRIVILEGED_CAPS: &[&str] = &["bpf", "net_admin", "perfmon", "net_raw"];

/// setpriv arguments (up to and including `--`) that run a program as
/// `nobody` with exactly `caps` (setpriv names, e.g. `net_admin`) as its
/// inheritable, ambient and bounding capabilities.
pub fn unprivileged_setpriv_args(caps: &[&str]) -> Vec<String> {
    let list: String = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        format!("--inh-caps={list}"),
        format!("--ambient-caps={list}"),
        format!("--bounding-set={list}"),
        "--".into(),
    ]
}

/// One answer of the API, headers included.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
    /// The body parsed as JSON, `Value::Null` if it is not JSON.
    pub json: Value,
}

impl Reply {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A self-signed certificate for 127.0.0.1 and its key, made by openssl in
/// `dir`: (cert path, key path).
pub fn make_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=netmon-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Checks that `reply` is a JSON error with `status`, `code`, a message and,
/// if given, `param`; `what` names the request in the failure message.
pub fn assert_json_error(reply: &Reply, status: u16, code: &str, param: Option<&str>, what: &str) {
    assert_eq!(reply.status, status, "{what}: {reply:#?}");
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content-type {content_type:?}: {reply:#?}"
    );
    assert_eq!(reply.json["error"]["code"], code, "{what}: {reply:#?}");
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: the error has no message: {reply:#?}"
    );
    if let Some(param) = param {
        assert_eq!(reply.json["error"]["param"], param, "{what}: {reply:#?}");
    }
}

/// `GET path` with `headers` on the agent listening at [`LISTEN`] in `ns`,
/// from a thread inside `ns`.
pub fn http_get(ns: &NetNs, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    http_send(ns, "GET", path, headers, None)
}

/// `method path` with `headers` and, if given, a JSON `body`, like
/// [`http_get`].
pub fn http_send(
    ns: &NetNs,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<Reply, String> {
    let url = format!("http://{LISTEN}{path}");
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let method = method.to_owned();
    let body = body.map(Value::to_string);
    ns.run(move || {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build();
        let client = ureq::Agent::new_with_config(config);
        let mut req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url);
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let sent = match body {
            Some(body) => req
                .header("content-type", "application/json")
                .body(body)
                .map(|r| client.run(r)),
            None => req.body(()).map(|r| client.run(r)),
        };
        let mut resp = sent
            .map_err(|e| format!("{method} {url}: {e}"))?
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), v)
            })
            .collect();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{method} {url}: reading the body: {e}"))?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            text,
            json,
        })
    })
}

/// [`http_get`] that panics if no answer comes.
pub fn http_get_ok(ns: &NetNs, path: &str, headers: &[(&str, &str)]) -> Reply {
    http_get(ns, path, headers).unwrap_or_else(|e| panic!("{e}"))
}

/// A running agent; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Agent<'ns> {
    ns: &'ns NetNs,
    child: Option<NsChild>,
    state_dir: PathBuf,
}

impl<'ns> Agent<'ns> {
    /// Starts the agent in `ns` with `args` and waits until it has read its
    /// maps once (`/health` says `ok`). Panics with the agent's stderr if it
    /// exits or does not get there in time.
    pub fn start(ns: &'ns NetNs, args: &[&str]) -> Agent<'ns> {
        Agent::start_with_env(ns, args, &[])
    }

    /// [`Agent::start`] with `env` set for the agent (`None` removes a
    /// variable, e.g. one of [`agent_command`]'s defaults).
    pub fn start_with_env(
        ns: &'ns NetNs,
        args: &[&str],
        env: &[(&str, Option<&str>)],
    ) -> Agent<'ns> {
        let state_dir = Agent::state_dir_in(ns);
        let mut cmd = agent_command(&state_dir, args);
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        Agent::start_command(ns, &cmd)
    }

    /// The state directory [`Agent::start`] gives an agent in `ns` (removed
    /// when the agent is dropped).
    pub fn state_dir_in(ns: &NetNs) -> PathBuf {
        std::env::temp_dir().join(format!("{}-agent-state", ns.name()))
    }

    /// The agent's state directory.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// Starts `cmd` (an [`agent_command`] for [`Agent::state_dir_in`]`(ns)`,
    /// possibly wrapped) in `ns` like [`Agent::start`].
    pub fn start_command(ns: &'ns NetNs, cmd: &Command) -> Agent<'ns> {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let state_dir = Agent::state_dir_in(ns);
        let child = ns.spawn(cmd);
        let mut agent = Agent {
            ns,
            child: Some(child),
            state_dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = agent.child().try_status() {
                panic!(
                    "netmon-agent {args:?} in {} exited during start-up ({status}):\n{}",
                    ns.name(),
                    agent.child().stderr_text()
                );
            }
            if let Ok((200, body)) = agent.try_request("/health", &[])
                && body["status"] == "ok"
            {
                return agent;
            }
            if Instant::now() > deadline {
                panic!(
                    "netmon-agent {args:?} in {} not ready after {START_TIMEOUT:?}:\n{}",
                    ns.name(),
                    agent.child().stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn child(&mut self) -> &mut NsChild {
        self.child.as_mut().expect("the agent is running")
    }

    /// The agent's stderr so far.
    pub fn stderr(&self) -> String {
        self.child
            .as_ref()
            .map(NsChild::stderr_text)
            .unwrap_or_default()
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the agent is running").id()
    }

    /// `GET path` with `headers`; the status and the body parsed as JSON
    /// (`Value::Null` for an empty or non-JSON body).
    pub fn try_request(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), String> {
        http_get(self.ns, path, headers).map(|r| (r.status, r.json))
    }

    /// `GET path` with the key in `X-API-KEY`, expecting 200.
    pub fn get(&self, path: &str) -> Value {
        match self.try_request(path, &[("X-API-KEY", TEST_KEY)]) {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("GET {path}: status {status}: {body}"),
            Err(e) => panic!("{e}\nagent stderr:\n{}", self.stderr()),
        }
    }

    /// Polls `GET path` until it answers 200 with `done(body)`: a 503 (a
    /// collector's first cycle not finished) is waited out. Panics with
    /// the last answer and the agent's stderr after `timeout`.
    pub fn wait_ok(&self, path: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.try_request(path, &[("X-API-KEY", TEST_KEY)]);
            if let Ok((200, body)) = &last
                && done(body)
            {
                return body.clone();
            }
            assert!(
                Instant::now() < deadline,
                "GET {path}: {last:?}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `GET path` until `done(body)` holds; panics with the last body
    /// after `timeout`.
    pub fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let body = self.get(path);
            if done(&body) {
                return body;
            }
            if Instant::now() > deadline {
                panic!("GET {path}: condition not met after {timeout:?}; last answer:\n{body:#}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the agent with SIGTERM and returns its exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.child.take().expect("the agent is running").terminate()
    }
}

impl Drop for Agent<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.terminate();
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Runs `cmd` in `ns`, expecting it to exit by itself within
/// [`START_TIMEOUT`] (a start that must fail); its status and stderr.
pub fn run_to_exit(ns: &NetNs, cmd: &Command) -> (ExitStatus, String) {
    let mut child = ns.spawn(cmd);
    let status = child.wait_with_timeout(START_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "`{}` still running after {START_TIMEOUT:?}, expected it to fail:\n{}",
            child.command(),
            child.stderr_text()
        )
    });
    (status, child.stderr_text())
}

/// Checks that a failed start exited with `code` and said each of `needles`.
pub fn assert_exit(status: ExitStatus, stderr: &str, code: i32, needles: &[&str]) {
    assert_eq!(
        status.code(),
        Some(code),
        "expected exit code {code}, got {status}; stderr:\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "exit {code}: stderr does not mention {needle:?}:\n{stderr}"
        );
    }
}

/// `cmd` run through `wrapper` (e.g. `setpriv ... --`): same arguments and
/// environment.
pub fn wrapped(wrapper: &[&str], cmd: &Command) -> Command {
    let mut out = Command::new(wrapper[0]);
    out.args(&wrapper[1..])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => out.env(key, value),
            None => out.env_remove(key),
        };
    }
    out
}

/// `cmd` run as `nobody` holding exactly `caps` (see
/// [`unprivileged_setpriv_args`]).
pub fn unprivileged(caps: &[&str], cmd: &Command) -> Command {
    let args = unprivileged_setpriv_args(caps);
    let mut wrapper = vec!["setpriv"];
    wrapper.extend(args.iter().map(String::as_str));
    wrapped(&wrapper, cmd)
}
