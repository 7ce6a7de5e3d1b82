//! How the client subcommands print: human sizes and durations, the one table style,
//! colour only on a terminal without `NO_COLOR`, `--json` documents, and writes to
//! stdout that treat a closed pipe as the reader being done rather than an error.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use comfy_table::presets::{NOTHING, UTF8_FULL_CONDENSED};
use comfy_table::{Attribute, Cell, CellAlignment, Color, ContentArrangement, Table};

use super::{exit, Failure};

/// Whether stdout is a terminal a person is looking at.
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Colour only for a person at a terminal, and never when they asked for none
/// (<https://no-color.org>: set and not empty).
pub fn colour_enabled() -> bool {
    let refused = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    stdout_is_terminal() && !refused
}

/// A table with `headers`: rounded lines fitted to the terminal's width for people;
/// for pipes, bare columns separated by spaces with nothing to strip before `awk`
/// or `grep` (and no wrapping, since there is no width to fit).
pub fn table<I, S>(headers: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut table = Table::new();
    if stdout_is_terminal() {
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .apply_modifier(comfy_table::modifiers::UTF8_ROUND_CORNERS)
            .set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        table.load_preset(NOTHING).force_no_tty();
    }
    let colour = colour_enabled();
    table.set_header(headers.into_iter().map(|header| {
        let cell = Cell::new(header.into());
        if colour {
            cell.add_attribute(Attribute::Bold)
        } else {
            cell
        }
    }));
    table
}

/// Renders a table for stdout: as built for a terminal; for a pipe, with the
/// columns two spaces apart and no padding at either end of a line.
pub fn render(table: &mut Table) -> String {
    if stdout_is_terminal() {
        return table.to_string();
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut text = String::new();
    for line in table.lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.pop();
    text
}

/// Prints `table` (see [`render`]) and a newline.
pub fn print_table(mut table: Table) -> Result<(), Failure> {
    print(render(&mut table))
}

/// Right-aligns the numeric columns at `indexes` so digits line up.
pub fn align_right(table: &mut Table, indexes: &[usize]) {
    for &index in indexes {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// A cell showing a colour name such as `#3B82F6`, drawn in that colour when
/// colour is on.
pub fn colour_cell(hex: &str) -> Cell {
    let cell = Cell::new(hex);
    if !colour_enabled() {
        return cell;
    }
    match parse_hex_colour(hex) {
        Some((r, g, b)) => cell.fg(Color::Rgb { r, g, b }),
        None => cell,
    }
}

/// A cell whose text is green when `good` and yellow otherwise, when colour is on.
pub fn status_cell(text: &str, good: bool) -> Cell {
    let cell = Cell::new(text);
    if !colour_enabled() {
        return cell;
    }
    cell.fg(if good { Color::Green } else { Color::Yellow })
}

fn parse_hex_colour(hex: &str) -> Option<(u8, u8, u8)> {
    let digits = hex.strip_prefix('#')?;
    if digits.len() != 6 || !digits.is_ascii() {
        return None;
    }
    let channel = |range: std::ops::Range<usize>| u8::from_str_radix(&digits[range], 16).ok();
    Some((channel(0..2)?, channel(2..4)?, channel(4..6)?))
}

/// `1536` → `1.5 KiB`; bytes below 1 KiB are shown exactly.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Whole seconds as `42s`, `5m 03s`, `1h 02m 03s`, `2d 01h 02m 03s`.
pub fn human_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let (days, hours, minutes, seconds) = (
        total / 86_400,
        total / 3_600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if days > 0 {
        format!("{days}d {hours:02}h {minutes:02}m {seconds:02}s")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m {seconds:02}s")
    } else if minutes > 0 {
        format!("{minutes}m {seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

/// Uptime as the server reports it (fractional seconds) in human form.
pub fn human_seconds(seconds: f64) -> String {
    human_duration(Duration::from_secs_f64(seconds.max(0.0)))
}

/// A latency in milliseconds, to the hundredth the server measures it with.
pub fn milliseconds(ms: f64) -> String {
    format!("{ms:.2} ms")
}

/// An ISO-8601 timestamp from the server in the reader's local time; anything that
/// does not parse is shown as received.
pub fn local_time(timestamp: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(timestamp) {
        Ok(time) => time
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => timestamp.to_owned(),
    }
}

/// `yes`/`no` for a flag column.
pub fn yes_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

/// Writes `text` and a newline to stdout.
pub fn print(text: impl std::fmt::Display) -> Result<(), Failure> {
    write_stdout(&format!("{text}\n"))
}

/// Writes `text` to stdout as is and flushes, so a refresh shows at once.
pub fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(Failure::from)
}

/// `--json`: the server's document as received (serde_json keeps key order here),
/// indented, and nothing else.
pub fn print_json(raw: &serde_json::Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(raw)
        .map_err(|error| Failure::new(exit::FAILED, format!("cannot encode JSON: {error}")))?;
    print(text)
}

/// The end of a command whose answer has a `success` flag: the server's JSON when
/// `json` was asked for; then exit 1 with `failure` if the operation failed (after the
/// JSON, so scripts still get the document), or else the human line `done`.
pub fn finish_operation(
    raw: &serde_json::Value,
    json: bool,
    failure: Option<String>,
    done: impl FnOnce() -> String,
) -> Result<(), Failure> {
    let written = if json {
        print_json(raw)
    } else if failure.is_none() {
        print(done())
    } else {
        Ok(())
    };
    let outcome = match failure {
        Some(failure) => Err(Failure::new(exit::FAILED, failure)),
        None => Ok(()),
    };
    finish(written, outcome)
}

/// A command's result once its output is written: its own failure, decided
/// before writing, wins over anything the write met. A reader that stopped
/// early (`coedit health | true`) makes the write a success, and must not make
/// a failed operation one too.
pub fn finish(written: Result<(), Failure>, outcome: Result<(), Failure>) -> Result<(), Failure> {
    outcome.and(written)
}

/// Why an operation on `room` failed, when a `200 OK` answer says
/// `success: false`: the server's `error`, when it gave one.
pub fn operation_failure(success: bool, raw: &serde_json::Value, room: &str) -> Option<String> {
    (!success).then(|| {
        let reason = raw
            .get("error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("the server gave no reason");
        format!("room {room}: {reason}")
    })
}

impl From<std::io::Error> for Failure {
    /// A closed stdout means the reader has what it wanted (`coedit rooms list |
    /// head -1`): that is success, with nothing more to say.
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::new(exit::SUCCESS, "")
        } else {
            Failure::new(exit::FAILED, format!("cannot write output: {error}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_switch_unit_at_each_kibi_step() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1229), "1.2 KiB");
        assert_eq!(human_size(5 * 1024 * 1024 + 1024 * 512), "5.5 MiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn durations_pad_every_unit_after_the_first() {
        assert_eq!(human_duration(Duration::from_secs(0)), "0s");
        assert_eq!(human_duration(Duration::from_secs(42)), "42s");
        assert_eq!(human_duration(Duration::from_secs(5 * 60 + 3)), "5m 03s");
        assert_eq!(human_duration(Duration::from_secs(3723)), "1h 02m 03s");
        assert_eq!(
            human_duration(Duration::from_secs(2 * 86_400 + 3723)),
            "2d 01h 02m 03s"
        );
        assert_eq!(human_seconds(59.9), "59s");
        assert_eq!(human_seconds(-1.0), "0s");
    }

    #[test]
    fn colours_parse_only_from_six_hex_digits() {
        assert_eq!(parse_hex_colour("#3B82F6"), Some((0x3b, 0x82, 0xf6)));
        assert_eq!(parse_hex_colour("3B82F6"), None);
        assert_eq!(parse_hex_colour("#fff"), None);
        assert_eq!(parse_hex_colour("#zzzzzz"), None);
    }

    #[test]
    fn timestamps_that_do_not_parse_are_kept() {
        assert_eq!(local_time("yesterday"), "yesterday");
        assert_eq!(local_time("2024-05-01T12:03:04.000Z").len(), 19);
    }

    #[test]
    fn a_failure_outlives_a_closed_pipe() {
        let closed = || {
            Err(Failure::from(std::io::Error::from(
                std::io::ErrorKind::BrokenPipe,
            )))
        };
        let failed = || Err(Failure::new(exit::FAILED, "degraded"));
        let code = |result: Result<(), Failure>| result.err().map(|failure| failure.code);
        assert_eq!(code(finish(closed(), failed())), Some(exit::FAILED));
        assert_eq!(code(finish(closed(), Ok(()))), Some(exit::SUCCESS));
        assert_eq!(code(finish(Ok(()), failed())), Some(exit::FAILED));
        assert_eq!(code(finish(Ok(()), Ok(()))), None);
    }

    #[test]
    fn a_200_answer_can_still_be_a_failure() {
        let said = serde_json::json!({"success": false, "error": "No document found"});
        assert_eq!(
            operation_failure(false, &said, "r").as_deref(),
            Some("room r: No document found")
        );
        let silent = serde_json::json!({"success": false});
        assert_eq!(
            operation_failure(false, &silent, "r").as_deref(),
            Some("room r: the server gave no reason")
        );
        assert_eq!(operation_failure(true, &said, "r"), None);
    }

    #[test]
    fn a_closed_pipe_is_success() {
        let failure = Failure::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(failure.code, exit::SUCCESS);
        let failure = Failure::from(std::io::Error::other("disk full"));
        assert_eq!(failure.code, exit::FAILED);
    }
}
