//! The example configuration file, `deploy/netmon.toml`, generated from
//! the option definitions.

use clap::CommandFactory as _;

use super::Config;

/// The example config file shipped as `deploy/netmon.toml`: every option,
/// commented out at its default, with its help text. Generated from the
/// option definitions; a test keeps the shipped file equal to it.
pub fn example_file() -> String {
    // The header names config.rs, where the generator lived before
    // config/ was split; kept so the shipped file does not change.
    let mut out = String::from(
        "# netmon-agent configuration: /etc/netmon/netmon.toml, or --config PATH.
#
# Keys are the long option names of `netmon-agent --help` (dashes or
# underscores). Precedence: command line > environment (NETMON_*) > this
# file > defaults. Every setting below is commented out at its default.
# Check a file with `netmon-agent config check --config FILE`; see what is
# in effect with `netmon-agent config show`.
#
# The API key does not belong here: use $NETMON_API_KEY, api-key-file, or a
# systemd credential (see deploy/systemd). This file is generated from the
# option definitions (netmon-agent/src/config.rs, example_file).
",
    );
    for arg in Config::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version" | "config") {
            continue;
        }
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        for line in textwrap_lines(&help, 74) {
            out.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
        }
        let values = arg.get_possible_values();
        if !values.is_empty() {
            let names: Vec<&str> = values.iter().map(|v| v.get_name()).collect();
            out.push_str(&format!("# One of: {}.\n", names.join(", ")));
        }
        if let Some(env) = arg.get_env() {
            out.push_str(&format!("# Environment: {}.\n", env.to_string_lossy()));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let multi = matches!(arg.get_action(), clap::ArgAction::Append);
        let render = |v: &str| {
            if v.parse::<i64>().is_ok() || v == "true" || v == "false" {
                v.to_owned()
            } else {
                toml::Value::String(v.to_owned()).to_string()
            }
        };
        let value = match (defaults.as_slice(), multi) {
            ([], true) => "[]".to_owned(),
            ([], false) => format!("\"<{}>\"", long.to_uppercase()),
            (d, true) => format!(
                "[{}]",
                d.iter().map(|v| render(v)).collect::<Vec<_>>().join(", ")
            ),
            ([d], false) => render(d),
            (d, false) => render(&d.join(",")),
        };
        out.push_str(&format!("#{long} = {value}\n"));
    }
    out.push_str(ALERTS_EXAMPLE);
    out
}

/// The `[alerts]` section: rules, not options (README, "Alerts").
/// Doubled `#` so the example stays valid with its settings uncommented.
const ALERTS_EXAMPLE: &str = "
# Alert rules (README, \"Alerts\"): the defaults are on without this
# section; entries named like a default change it, others add a rule.
#[alerts]
## defaults = true
#[[alerts.rules]]
## name = \"new_device\"
## enabled = false
#[[alerts.rules]]
## name = \"wan_down\"
## expr = 'interface_up{interface=\"wan0\"} < 1'
## for = \"30s\"
## severity = \"critical\"
## annotations = { summary = \"{{ interface }} is down\" }
";

/// Splits `text` into lines of at most `width` columns at spaces, keeping
/// its own line breaks.
fn textwrap_lines(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.lines() {
        let mut line = String::new();
        for word in para.split(' ') {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use super::*;
    use crate::config::tests::{load_with, write};

    /// `deploy/netmon.toml` is [`example_file`]; `NETMON_BLESS=1` rewrites it.
    #[test]
    fn shipped_example_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/netmon.toml");
        let want = example_file();
        if std::env::var_os("NETMON_BLESS").is_some() {
            fs::write(&path, &want).unwrap();
        }
        let have = fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is out of date: run `NETMON_BLESS=1 cargo test -p netmon-agent --lib config::example::tests::shipped_example_is_current`",
            path.display()
        );
    }

    /// The example with every setting uncommented is a valid config file
    /// (placeholders for options without a default aside).
    #[test]
    fn example_values_are_valid() {
        let text: String = example_file()
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.contains(" = ") && !l.contains("\"<"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(text.contains("interval = \"1s\""), "{text}");
        let (_d, path) = write(&text);
        load_with(&path, &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
}
