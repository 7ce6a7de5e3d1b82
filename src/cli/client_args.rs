//! Options every client subcommand shares (which server, how long to wait, which
//! token, table or JSON), the REST client built from them, and how a client error
//! becomes an exit code.

use std::time::Duration;

use clap::Args;

use super::{exit, Failure};
use crate::client::rest::{ClientError, RestClient};

/// Where a client subcommand finds the server unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8001";

/// Global: accepted before or after the subcommand (`coedit --server URL rooms list`
/// and `coedit rooms list --server URL` are the same), as in kubectl, docker or cargo.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Client options")]
pub struct ClientArgs {
    /// Server to talk to; `host:port` means `http://host:port`.
    #[arg(
        long,
        env = "COEDIT_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL",
        value_parser = parse_server_url,
        global = true
    )]
    pub server: String,

    /// Print JSON instead of a table: the server's answer as received (for
    /// `bench`, its report; for `export` and `show`, `--format json`).
    #[arg(long, global = true)]
    pub json: bool,

    /// Give up on the server after this long: seconds, or a duration like `500ms`,
    /// `5s`, `1m`.
    #[arg(
        long,
        default_value = "10s",
        value_name = "DURATION",
        value_parser = parse_duration,
        global = true
    )]
    pub timeout: Duration,

    /// Bearer token sent in the Authorization header.
    #[arg(
        long,
        env = "COEDIT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true
    )]
    pub token: Option<String>,
}

impl ClientArgs {
    pub fn client(&self) -> Result<RestClient, Failure> {
        let token = self.token.clone().filter(|token| !token.is_empty());
        RestClient::new(&self.server, self.timeout, token).map_err(Failure::from)
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        match &error {
            ClientError::Unreachable { .. } => Failure::new(exit::UNREACHABLE, error.to_string()),
            // The server's own words are the reason; status and URL say where from.
            ClientError::Status { .. } | ClientError::Protocol { .. } => {
                Failure::new(exit::FAILED, error.to_string())
            }
        }
    }
}

/// Accepts `http://…` and `https://…` URLs, and a bare `host:port` as http.
pub fn parse_server_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let url = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let parsed = reqwest::Url::parse(&url).map_err(|error| format!("{error}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "scheme must be http or https, not {}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Parses `10`, `2.5` (seconds) or a number with a unit: `ms`, `s`, `m`, `h`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration (try 10, 5s, 500ms, 1m)"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err("the duration must be greater than zero".into());
    }
    Duration::try_from_secs_f64(seconds).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_plain_seconds_and_units() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn server_urls_default_to_http() {
        assert_eq!(
            parse_server_url("localhost:8001"),
            Ok("http://localhost:8001".into())
        );
        assert_eq!(
            parse_server_url("https://coedit.example/"),
            Ok("https://coedit.example".into())
        );
        assert!(parse_server_url("ftp://example").is_err());
        assert!(parse_server_url("http://").is_err());
    }

    #[test]
    fn only_unreachable_servers_exit_3() {
        let unreachable = ClientError::Unreachable {
            url: "http://127.0.0.1:1/api/health".into(),
            reason: "connection refused".into(),
        };
        let failure = Failure::from(unreachable);
        assert_eq!(failure.code, exit::UNREACHABLE);
        assert!(failure.message.contains("http://127.0.0.1:1/api/health"));
        let status = ClientError::Status {
            url: "u".into(),
            status: 404,
            message: "Room x not found".into(),
        };
        let failure = Failure::from(status);
        assert_eq!(failure.code, exit::FAILED);
        assert!(failure.message.contains("Room x not found"));
    }
}
