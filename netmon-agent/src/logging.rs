//! Log output: human-readable on a terminal or in a file, syslog priority
//! prefixes without timestamps under journald, or one JSON object a line.
//!
//! Everything goes to stderr. Under systemd, journald adds its own
//! timestamps and reads the `<N>` prefix as the line's priority, so the
//! `journal` format carries neither a timestamp nor ANSI colours.

use std::{fmt, io::IsTerminal as _};

use clap::ValueEnum;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `journal` when stderr is connected to journald (`$JOURNAL_STREAM`
    /// names it), else `human`.
    #[default]
    Auto,
    /// Timestamp, level, message and fields; colours only on a terminal.
    Human,
    /// `<priority>` prefix (sd-daemon(3)), no timestamp, no colours.
    Journal,
    /// One JSON object a line, with timestamp, level, target and fields.
    Json,
}

impl LogFormat {
    /// `Auto` decided for this process.
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if stderr_is_journal() => LogFormat::Journal,
            LogFormat::Auto => LogFormat::Human,
            other => other,
        }
    }
}

/// Installs the global subscriber.
pub fn init(filter: EnvFilter, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.resolve() {
        LogFormat::Json => builder.json().init(),
        LogFormat::Journal => builder
            .with_ansi(false)
            .event_format(Journal(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_target(false)
                    .with_level(false),
            ))
            .init(),
        LogFormat::Human | LogFormat::Auto => {
            builder.with_ansi(std::io::stderr().is_terminal()).init()
        }
    }
}

/// Whether stderr is the stream journald handed this process: systemd sets
/// `JOURNAL_STREAM=<dev>:<inode>` of that stream (systemd.exec(5)); a
/// redirected stderr no longer matches.
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    // SAFETY: fstat writes into the zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd 2 and a valid out-pointer.
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    journal_stream_is(&v, st.st_dev, st.st_ino)
}

/// Whether `JOURNAL_STREAM`'s value names the file `dev`/`ino`.
fn journal_stream_is(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// The syslog priority journald reads from a `<N>` line prefix.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Prefixes each event with its syslog priority.
struct Journal<F>(F);

impl<S, N, F> FormatEvent<S, N> for Journal<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(syslog_priority(Level::ERROR), 3);
        assert_eq!(syslog_priority(Level::WARN), 4);
        assert_eq!(syslog_priority(Level::INFO), 6);
        assert_eq!(syslog_priority(Level::DEBUG), 7);
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(journal_stream_is("8:12345", 8, 12345));
        assert!(!journal_stream_is("8:12345", 8, 1));
        assert!(!journal_stream_is("8", 8, 12345));
        assert!(!journal_stream_is("x:y", 8, 12345));
    }

    #[test]
    fn explicit_formats_are_kept() {
        for f in [LogFormat::Human, LogFormat::Journal, LogFormat::Json] {
            assert_eq!(f.resolve(), f);
        }
    }
}
