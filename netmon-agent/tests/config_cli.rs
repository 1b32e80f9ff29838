//! The configuration as an operator meets it, through the real binary:
//! `config check` and `config show`, precedence command line > environment
//! > file > defaults, and errors that name the file and the field.

use std::{fs, path::Path, process::Command};

fn agent() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netmon-agent"));
    // Nothing from the caller's environment may leak into these checks.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("NETMON_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn output(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("running netmon-agent");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_file(dir: &Path, text: &str) -> String {
    let path = dir.join("netmon.toml");
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn config_check_accepts_the_shipped_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/netmon.toml");
    let (code, stdout, stderr) =
        output(agent().args(["config", "check", "--config", example.to_str().unwrap()]));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("Configuration is valid"), "{stdout}");
}

#[test]
fn config_check_names_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "interval = \"5 parsecs\"\n");
    let (code, stdout, stderr) = output(agent().args(["config", "check", "--config", &file]));
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains(&file)
            && stderr.contains("field `interval`")
            && stderr.contains("5 parsecs"),
        "{stderr}"
    );

    let file = config_file(dir.path(), "flow_entires = 10\n");
    let (code, _, stderr) = output(agent().args(["config", "check", "--config", &file]));
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("unknown field `flow_entires`") && stderr.contains("flow-entries"),
        "{stderr}"
    );
}

#[test]
fn config_check_validates_the_alert_rules_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        "[[alerts.rules]]\nname = \"wan_down\"\nexpr = 'interface_up{interface=\"wan0\"} < 1'\n\
         [[alerts.rules]]\nname = \"cpu_high\"\nresolve = 95\n",
    );
    let (code, stdout, stderr) = output(agent().args(["config", "check", "--config", &file]));
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains(&file)
            && stderr.contains("field `alerts.rules[1].resolve`")
            && stderr.contains("firing side"),
        "{stderr}"
    );
    let file = config_file(
        dir.path(),
        "[[alerts.rules]]\nname = \"wan_down\"\nexpr = 'interface_up{interface=\"wan0\"} < 1'\n",
    );
    let (code, stdout, stderr) = output(agent().args(["config", "check", "--config", &file]));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // A bad receiver URL names its option.
    let (code, _, stderr) =
        output(agent().args(["config", "check", "--alertmanager-url", "https://am:9093"]));
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--alertmanager-url") && stderr.contains("http://"),
        "{stderr}"
    );
}

#[test]
fn precedence_is_command_line_then_environment_then_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        "interval = \"2s\"\nidle-expiry = \"7m\"\nlisten = \"127.0.0.1:9001\"\n",
    );
    let (code, stdout, stderr) = output(
        agent()
            .args([
                "config",
                "show",
                "--config",
                &file,
                "--listen",
                "127.0.0.1:9003",
            ])
            .env("NETMON_IDLE_EXPIRY", "9m")
            .env("NETMON_LISTEN", "127.0.0.1:9002"),
    );
    assert_eq!(code, Some(0), "{stderr}");
    for line in [
        "interval = \"2s\"  # config file",
        "idle-expiry = \"9m\"  # environment",
        "listen = \"127.0.0.1:9003\"  # command line",
        "flow-entries = 65536  # default",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{stdout}"
        );
    }
}

#[test]
fn config_show_never_prints_the_key() {
    let secret = "s3cret-api-key-0123456789";
    let (code, stdout, stderr) = output(
        agent()
            .args(["config", "show"])
            .env("NETMON_API_KEY", secret),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
    assert!(stdout.contains("NETMON_API_KEY (value hidden)"), "{stdout}");
}

#[test]
fn an_explicit_config_file_must_exist() {
    let (code, _, stderr) =
        output(agent().args(["config", "check", "--config", "/nonexistent/netmon.toml"]));
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("cannot read the config file /nonexistent/netmon.toml"),
        "{stderr}"
    );
}

#[test]
fn config_needs_a_verb() {
    let (code, _, stderr) = output(agent().args(["config", "frobnicate"]));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("`check` or `show`"), "{stderr}");
}
