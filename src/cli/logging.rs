//! Where log lines go and how they look: always stderr; which lines (an explicit
//! `--log-level` beats `RUST_LOG`, which beats the command's default); colour only
//! for a terminal without `NO_COLOR`; plain text for people or one JSON object per
//! line for log shippers.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message` and the
    /// event's fields), for log shippers.
    Json,
}

/// What a command asks of logging.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A filter given explicitly on the command line (or its own environment
    /// variable); it wins over `RUST_LOG`.
    pub explicit: Option<String>,
    /// The filter when neither an explicit one nor `RUST_LOG` is set.
    pub default: &'static str,
    pub format: LogFormat,
}

impl LogSettings {
    /// The filter in force: explicit, else `RUST_LOG`, else the default.
    fn filter(&self) -> EnvFilter {
        if let Some(explicit) = &self.explicit {
            // Checked when the command line was parsed (`parse_filter`).
            if let Ok(filter) = EnvFilter::try_new(explicit) {
                return filter;
            }
        }
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(self.default))
    }
}

/// Colour only for a person at a terminal who has not asked for none
/// (<https://no-color.org>: `NO_COLOR` set and not empty). A log file or a pipe
/// must not fill with escape codes.
pub fn stderr_colour_enabled() -> bool {
    let refused = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    std::io::stderr().is_terminal() && !refused
}

/// Installs the global subscriber; call once, before anything logs.
pub fn init(settings: &LogSettings) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(settings.filter())
        .with_writer(std::io::stderr);
    match settings.format {
        LogFormat::Text => builder.with_ansi(stderr_colour_enabled()).init(),
        // Fields at the top level, where shippers look for them.
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
    }
}

/// A clap value parser for log filters: refuses what `RUST_LOG` syntax would not
/// accept, instead of silently logging nothing.
pub fn parse_filter(raw: &str) -> Result<String, String> {
    EnvFilter::try_new(raw)
        .map(|_| raw.to_owned())
        .map_err(|error| format!("not a log filter ({error}); try info, debug or coedit=debug"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_when_parsed() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter("coedit=debug,tower_http=warn").is_ok());
        assert!(parse_filter("coedit=loud").is_err());
    }
}
