//! `coedit bench` told from an operator's side: it sees every keystroke arrive on a
//! healthy server, notices when a server loses some, and fails a CI job on a
//! threshold.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::num::NonZeroU32;

use coedit::client::bench::{self, BenchConfig, Payload, Protocol, Report, VerifyRooms};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use super::common::*;
use super::mongo_env::CoeditProcess;

/// 2 rooms × 3 editors typing 5 keystrokes a second for 2 seconds.
fn small_load(url: String, payload: Payload) -> BenchConfig {
    let mut config = BenchConfig::new(url);
    config.rooms = 2;
    config.clients_per_room = 3;
    config.rate = 5.0;
    config.duration = Duration::from_secs(2);
    config.warmup = Duration::from_millis(500);
    config.ramp = Duration::from_millis(200);
    config.drain = Duration::from_secs(3);
    config.payload = payload;
    config.seed = Some(42);
    config
}

fn assert_every_keystroke_arrived(report: &Report) {
    // 6 editors × 5/s × 2 s, each seen by the 2 others in its room.
    assert!(report.edits >= 50, "{report:#?}");
    assert_eq!(report.expected_deliveries, report.edits * 2);
    assert_eq!(report.missed_deliveries, 0, "{report:#?}");
    assert_eq!(report.deliveries, report.expected_deliveries);
    assert_eq!(report.delivery_ratio, Some(1.0));
    assert_eq!(report.latency_ms.count, report.deliveries);
    assert!(report.latency_ms.p50 > 0.0);
    assert!(report.converged, "{report:#?}");
    assert_eq!(report.connections.opened, 6);
    assert_eq!(
        report.connections.greeted, 6,
        "coedit greets every connection"
    );
    assert_eq!(report.errors, 0, "{report:#?}");
    // By default every room is verified.
    assert_eq!(report.rooms_verified, 2);
    assert_eq!(report.rooms_light, 0);
    assert_eq!(report.rooms_compared, 2);
    assert_eq!(report.light, None);
    assert!(report.defects().is_empty(), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_coedit_every_keystroke_reaches_every_other_editor_and_rooms_converge() {
    let server = TestServer::start().await;
    let report = bench::run(small_load(format!("ws://{}", server.addr), Payload::Full))
        .await
        .unwrap();
    assert_every_keystroke_arrived(&report);
    // Full payload: every edit is an update plus a cursor message, and the rate
    // is that of the window, not of the whole run spread over it.
    let sent_in_window = report.messages_sent_per_sec * report.duration_s;
    let per_edit = sent_in_window / report.edits as f64;
    assert!((1.7..=2.3).contains(&per_edit), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_updates_are_measured_the_same_way() {
    let server = TestServer::start().await;
    let report = bench::run(small_load(
        format!("ws://{}", server.addr),
        Payload::Incremental,
    ))
    .await
    .unwrap();
    assert_every_keystroke_arrived(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_y_protocols_endpoint_is_measured_like_a_provider_sees_it() {
    let server = TestServer::start().await;
    let mut config = small_load(
        format!("ws://{}/api/yjs", server.addr),
        Payload::Incremental,
    );
    config.protocol = bench::Protocol::Yjs;
    let report = bench::run(config).await.unwrap();
    assert_every_keystroke_arrived(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_of_rooms_is_verified_and_the_other_rooms_count_their_updates() {
    let server = TestServer::start().await;
    for (protocol, payload, url) in [
        (
            Protocol::Json,
            Payload::Incremental,
            format!("ws://{}", server.addr),
        ),
        (
            Protocol::Yjs,
            Payload::Full,
            format!("ws://{}/api/yjs", server.addr),
        ),
    ] {
        let mut config = small_load(url, payload);
        config.protocol = protocol;
        // Same seed, same editors: fresh rooms, or the server already has their edits.
        config.room_prefix = Some(format!("sample-{protocol:?}"));
        config.rooms = 3;
        config.verify_rooms = VerifyRooms::Sample(NonZeroU32::new(1).unwrap());
        let report = bench::run(config).await.unwrap();
        assert_eq!(report.rooms_verified, 1, "{report:#?}");
        assert_eq!(report.rooms_light, 2);
        assert_eq!(report.connections.opened, 9);
        assert_eq!(report.connections.greeted, 9, "{report:#?}");
        assert_eq!(report.errors, 0, "{report:#?}");

        // The verified room: 3 editors × 5/s × 2 s, each timed by the 2 others,
        // and its documents compared.
        assert!(report.edits >= 25 && report.edits <= 35, "{report:#?}");
        assert_eq!(report.expected_deliveries, report.edits * 2);
        assert_eq!(report.deliveries, report.expected_deliveries, "{report:#?}");
        assert_eq!(report.latency_ms.count, report.deliveries);
        assert!(report.latency_ms.p50 > 0.0);
        assert_eq!(report.rooms_compared, 1);
        assert!(report.converged, "{report:#?}");

        // The light rooms: 6 editors, each owed every update the 2 others of its
        // room sent once everyone was there, and each got them all.
        let light = report.light.clone().expect("light rooms are reported");
        assert_eq!(light.receivers, 6, "{report:#?}");
        assert!(light.updates_sent >= 60, "{report:#?}");
        assert_eq!(light.expected_updates, light.updates_sent * 2);
        assert_eq!(
            light.received_updates, light.expected_updates,
            "{report:#?}"
        );
        assert_eq!(light.missed_updates, 0);
        // Two rooms typing at the verified room's rate over the same window.
        assert!(
            light.deliveries_in_window >= report.deliveries,
            "{report:#?}"
        );
        assert!(
            report.deliveries_per_sec * report.duration_s
                >= (report.deliveries + light.deliveries_in_window) as f64 - 0.5
        );
        assert!(report.defects().is_empty(), "{:?}", report.defects());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_loses_updates_in_a_light_room_is_caught() {
    let relay = Relay::start(Fault::DropsEveryOtherUpdate).await;
    let mut config = small_load(relay.url(), Payload::Incremental);
    config.drain = Duration::from_secs(1);
    config.verify_rooms = VerifyRooms::Sample(NonZeroU32::new(1).unwrap());
    let report = bench::run(config).await.unwrap();
    assert_eq!((report.rooms_verified, report.rooms_light), (1, 1));
    let light = report.light.clone().unwrap();
    assert_eq!(light.receivers, 3, "{report:#?}");
    // The relay drops every other update each editor sends.
    assert!(
        light.missed_updates * 3 >= light.expected_updates,
        "{report:#?}"
    );
    assert!(
        report
            .defects()
            .iter()
            .any(|defect| defect.contains("never reached their light rooms' editors")),
        "{:?}",
        report.defects()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_rooms_is_read_from_the_command_line() {
    let server = TestServer::start().await;
    let url = format!("ws://{}", server.addr);
    let with = |verify: &'static str| {
        let mut args = short_run(&url, &["--verify-rooms", verify]);
        args[3] = "3";
        assert_eq!(args[2], "--rooms");
        args
    };
    let output = run_binary(&with("1")).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report.rooms_verified, report.rooms_light), (1, 2));
    assert_eq!(report.rooms_compared, 1);
    assert!(report.light.is_some_and(|light| light.received_updates > 0));

    // More than there are is every room.
    let output = run_binary(&with("7")).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report.rooms_verified, report.rooms_light), (3, 0));
    assert_eq!(report.rooms_compared, 3);
    assert!(report.light.is_none());

    let output = run_binary(&with("0")).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("proves nothing"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_loses_updates_is_caught() {
    let relay = Relay::start(Fault::DropsEveryOtherUpdate).await;
    let report = bench::run(small_load(relay.url(), Payload::Incremental))
        .await
        .unwrap();
    assert_eq!(report.connections.opened, 6);
    assert_eq!(report.connections.greeted, 0, "the relay sends no greeting");
    assert!(report.missed_deliveries > 0, "{report:#?}");
    assert!(report.delivery_ratio.unwrap() < 1.0, "{report:#?}");
    // A Yjs document cannot integrate an editor's later edits while one of its
    // earlier ones is missing, so one lost update costs every keystroke after it.
    assert!(report.delivery_ratio.unwrap() < 0.5, "{report:#?}");
    assert!(!report.converged, "{report:#?}");
    let thresholds = bench::Thresholds {
        max_p99_ms: None,
        min_delivery_ratio: Some(0.99),
    };
    assert_eq!(thresholds.violations(&report).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_fails_a_missed_threshold_with_exit_code_1() {
    let server = TestServer::start().await;
    let url = format!("ws://{}", server.addr);
    // A one-second load of 1 room × 2 editors, with a threshold added.
    let with_threshold = |threshold: &'static [&'static str]| {
        let mut args = vec![
            "--url",
            &url,
            "--rooms",
            "1",
            "--clients",
            "2",
            "--rate",
            "10",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--ramp",
            "100ms",
            "--json",
        ];
        args.extend_from_slice(threshold);
        args
    };
    let output = run_binary(&with_threshold(&["--max-p99-ms", "0.000001"])).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report.deliveries > 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-p99-ms"), "{stderr}");

    let passing = run_binary(&with_threshold(&["--min-delivery-ratio", "1"])).await;
    assert_eq!(passing.status.code(), Some(0), "{passing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_writes_a_self_contained_html_page_and_json_stays_on_stdout() {
    let server = TestServer::start().await;
    let url = format!("ws://{}", server.addr);
    let directory = std::env::temp_dir().join(format!("coedit-report-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let page = directory.join("run.html");
    let page_arg = page.to_string_lossy().into_owned();
    let output = run_binary(&[
        "--url",
        &url,
        "--rooms",
        "1",
        "--clients",
        "3",
        "--rate",
        "10",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--ramp",
        "100ms",
        "--json",
        "--report",
        &page_arg,
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report.deliveries > 0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(html.contains(&format!("{:.2} ms", report.latency_ms.p99)));
    std::fs::remove_dir_all(&directory).unwrap();

    let output = run_binary(&[
        "--url",
        &url,
        "--duration",
        "1s",
        "--rooms",
        "1",
        "--clients",
        "2",
        "--report",
        "/nonexistent-directory/run.html",
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot write the report"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_server_is_exit_code_3() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("ws://{address}");
    let output = run_binary(&["--url", &url, "--duration", "1s"]).await;
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(output.stdout.is_empty());
    // The same through the global --server, given before the subcommand.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_coedit"))
        .args([
            "--server",
            &format!("http://{address}"),
            "bench",
            "--duration",
            "1s",
        ])
        .env_remove("COEDIT_SERVER")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains(&address.to_string()));
}

/// A short run of 1 room × 2 editors against `url`, as JSON, with `extra` flags.
fn short_run<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--url",
        url,
        "--rooms",
        "1",
        "--clients",
        "2",
        "--rate",
        "10",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--ramp",
        "100ms",
        "--drain",
        "1s",
        "--json",
    ];
    args.extend_from_slice(extra);
    args
}

/// The one `coedit: …` line of a failed run.
fn reason(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reasons: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("coedit: "))
        .collect();
    assert_eq!(reasons.len(), 1, "one line of reason: {stderr}");
    reasons[0].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_where_nobody_could_connect_fails_and_says_why() {
    // A real `coedit serve` that wants room tokens; the bench has none, so every
    // connection is refused.
    let server = CoeditProcess::start(&["--auth-secret".into(), "bench-secret".into()]).await;
    let url = format!("ws://{}", server.base());
    let output = run_binary(&short_run(
        &url,
        &["--max-p99-ms", "50", "--min-delivery-ratio", "0.99"],
    ))
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["connections"]["opened"], 0, "{report}");
    assert_eq!(report["expected_deliveries"], 0, "{report}");
    assert_eq!(
        report["delivery_ratio"],
        serde_json::Value::Null,
        "0 of 0 is not a ratio of 1"
    );
    assert_eq!(report["converged"], false, "{report}");
    let reason = reason(&output);
    assert!(
        reason.contains("no client connected (2 attempted): HTTP error: 401"),
        "{reason}"
    );
    assert!(
        reason.contains("--max-p99-ms 50 cannot be checked"),
        "{reason}"
    );
    assert!(
        reason.contains("--min-delivery-ratio 0.99 cannot be checked"),
        "{reason}"
    );

    // With a room token for every room (the global --token, before the
    // subcommand), the same run passes.
    let minted = tokio::process::Command::new(env!("CARGO_BIN_EXE_coedit"))
        .args(["token", "--room", "*", "--secret", "bench-secret"])
        .output()
        .await
        .unwrap();
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let mut args = vec!["--token", token.as_str(), "bench"];
    args.extend(short_run(&url, &["--min-delivery-ratio", "0.99"]));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_coedit"))
        .args(&args)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report.connections.opened, 2);
    assert!(report.deliveries > 0 && report.converged, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_measures_nothing_fails_even_without_thresholds() {
    let server = TestServer::start().await;
    let url = format!("ws://{}", server.addr);
    // One editor per room: it types, but nobody can receive a keystroke, and there
    // is no second document to compare.
    let mut args = short_run(&url, &[]);
    args[5] = "1";
    assert_eq!(args[4], "--clients");
    let output = run_binary(&args).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report.edits > 0, "{report:#?}");
    assert_eq!(report.delivery_ratio, None);
    let reason = reason(&output);
    assert!(reason.contains("no keystroke was measured"), "{reason}");
    assert!(
        reason.contains("nothing was compared for convergence"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_reading_still_gets_a_verdict() {
    // Every handshake completes, then nothing is ever read: the editors' sends
    // fill the socket buffers and block. The run must still end, on time, and fail.
    let server = DeafServer::start().await;
    let url = server.url();
    let output = run_binary_within(
        Duration::from_secs(15),
        &[
            "--url",
            &url,
            "--rooms",
            "1",
            "--clients",
            "2",
            "--payload",
            "full",
            // Full states growing at 1000 keystrokes a second soon outgrow the
            // largest send buffer the kernel allows (tcp_wmem).
            "--rate",
            "1000",
            "--ramp",
            "100ms",
            "--warmup",
            "1s",
            "--duration",
            "1s",
            "--drain",
            "1s",
            "--json",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report.latency_ms.count, 0, "{report:#?}");
    assert!(reason(&output).contains("no keystroke was measured"));
}

#[tokio::test]
async fn nan_and_out_of_range_thresholds_are_usage_errors() {
    for (flag, value) in [
        ("--max-p99-ms", "nan"),
        ("--max-p99-ms", "inf"),
        ("--max-p99-ms", "0"),
        ("--max-p99-ms", "-5"),
        ("--min-delivery-ratio", "NaN"),
        ("--min-delivery-ratio", "1.5"),
        ("--min-delivery-ratio", "-0.1"),
    ] {
        // Nothing listens there: a usage error must come before any connection.
        let output = run_binary(&["--url", "ws://127.0.0.1:1", flag, value]).await;
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {output:?}");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{stderr}");
    }
}

#[tokio::test]
async fn a_server_that_never_answers_is_given_up_on_after_the_timeout() {
    let silent = SilentListener::start().await;
    let url = format!("ws://{}", silent.addr);
    let started = std::time::Instant::now();
    let output = run_binary_within(
        Duration::from_secs(10),
        &["--url", &url, "--timeout", "1s", "--duration", "1s"],
    )
    .await;
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&silent.addr.to_string()), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rates_are_those_of_the_measured_window() {
    let server = TestServer::start().await;
    let url = format!("ws://{}", server.addr);
    // 2 editors × 10 keystrokes a second, one frame each: 20 frames a second,
    // however long the warm-up before the window.
    let output = run_binary(&[
        "--url",
        &url,
        "--rooms",
        "1",
        "--clients",
        "2",
        "--rate",
        "10",
        "--payload",
        "incremental",
        "--ramp",
        "100ms",
        "--warmup",
        "2s",
        "--duration",
        "1s",
        "--drain",
        "1s",
        "--json",
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        (16.0..=24.0).contains(&report.messages_sent_per_sec),
        "{report:#?}"
    );
    assert!(
        (16.0..=24.0).contains(&report.messages_received_per_sec),
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editors_that_lose_their_connection_for_good_fail_the_run() {
    // One editor of each room is cut off during the warm-up and refused when it
    // comes back.
    let relay = Relay::start(Fault::CutsOffLastEditor {
        after: Duration::from_millis(200),
    })
    .await;
    let url = relay.url();
    let output = run_binary_within(
        Duration::from_secs(15),
        &[
            "--url",
            &url,
            "--rooms",
            "2",
            "--clients",
            "3",
            "--verify-rooms",
            "1",
            "--rate",
            "10",
            "--payload",
            "incremental",
            "--ramp",
            "100ms",
            "--warmup",
            "500ms",
            "--duration",
            "1s",
            "--drain",
            "1s",
            "--json",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report.connections.opened, 6, "{report:#?}");
    assert_eq!(report.connections.lost, 2, "{report:#?}");
    assert!(reason(&output).contains("2 of 6 clients lost their connection"));
    // The two editors left in the light room still owe each other every
    // keystroke: about 15 each over the 1.5 s they type, and each got them all.
    let light = report.light.clone().expect("one light room");
    assert_eq!(light.receivers, 2, "{report:#?}");
    assert!(light.expected_updates >= 24, "{report:#?}");
    assert_eq!(light.missed_updates, 0, "{report:#?}");
}

async fn run_binary(args: &[&str]) -> std::process::Output {
    bench_command(args).output().await.unwrap()
}

/// `coedit bench ARGS`, killed if the test gives up on it.
fn bench_command(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_coedit"));
    command
        .arg("bench")
        .args(args)
        .env_remove("COEDIT_SERVER")
        .env_remove("COEDIT_TOKEN")
        .kill_on_drop(true);
    command
}

/// Runs `coedit bench ARGS`, failing the test if it has not exited within `limit`.
async fn run_binary_within(limit: Duration, args: &[&str]) -> std::process::Output {
    let started = std::time::Instant::now();
    let output = tokio::time::timeout(limit, bench_command(args).output())
        .await
        .unwrap_or_else(|_| panic!("coedit bench {args:?} still running after {limit:?}"))
        .unwrap();
    eprintln!("coedit bench took {:?}", started.elapsed());
    output
}

type Members = Vec<(u64, mpsc::UnboundedSender<Message>)>;

/// What a relay gets wrong: a server with a bug the bench must see.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Silently drops every other `update` each editor sends.
    DropsEveryOtherUpdate,
    /// Closes the connection of every room's last of 3 editors (client id ending
    /// in `-2`) this long after it opened, and refuses it when it comes back.
    CutsOffLastEditor { after: Duration },
}

/// A relay that forwards every frame to the other members of its room, but for
/// its fault.
struct Relay {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rooms: Arc<Mutex<HashMap<String, Members>>> = Arc::default();
        let cut_off: Arc<Mutex<HashSet<String>>> = Arc::default();
        let task = tokio::spawn(async move {
            let mut next_id = 0;
            while let Ok((stream, _)) = listener.accept().await {
                next_id += 1;
                tokio::spawn(relay_connection(
                    stream,
                    next_id,
                    rooms.clone(),
                    fault,
                    cut_off.clone(),
                ));
            }
        });
        Self { addr, task }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn relay_connection(
    stream: TcpStream,
    id: u64,
    rooms: Arc<Mutex<HashMap<String, Members>>>,
    fault: Fault,
    cut_off: Arc<Mutex<HashSet<String>>>,
) {
    let mut path = String::new();
    let mut victim = false;
    let callback = |request: &Request, response: Response| {
        path = request.uri().path().to_owned();
        let client_id = request.uri().query().unwrap_or_default().to_owned();
        if matches!(fault, Fault::CutsOffLastEditor { .. }) && client_id.ends_with("-2") {
            if !cut_off.lock().unwrap().insert(client_id) {
                let mut refusal = ErrorResponse::new(Some("cut off".into()));
                *refusal.status_mut() = StatusCode::FORBIDDEN;
                return Err(refusal);
            }
            victim = true;
        }
        Ok(response)
    };
    let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (mut sink, mut stream) = socket.split();
    let (queue, mut outbound) = mpsc::unbounded_channel();
    rooms
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default()
        .push((id, queue));
    let writer = tokio::spawn(async move {
        while let Some(message) = outbound.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    });
    let cut_at = match fault {
        Fault::CutsOffLastEditor { after } if victim => tokio::time::Instant::now() + after,
        // Not within any test's lifetime.
        _ => tokio::time::Instant::now() + Duration::from_secs(3600),
    };
    let mut updates = 0u64;
    loop {
        let message = tokio::select! {
            _ = tokio::time::sleep_until(cut_at) => break,
            message = stream.next() => match message {
                Some(Ok(message)) => message,
                _ => break,
            },
        };
        let Message::Text(text) = &message else {
            continue;
        };
        if matches!(fault, Fault::DropsEveryOtherUpdate)
            && text.as_str().contains(r#""type":"update""#)
        {
            updates += 1;
            if updates.is_multiple_of(2) {
                continue;
            }
        }
        for (member, queue) in rooms.lock().unwrap().get(&path).into_iter().flatten() {
            if *member != id {
                let _ = queue.send(message.clone());
            }
        }
    }
    if let Some(members) = rooms.lock().unwrap().get_mut(&path) {
        members.retain(|(member, _)| *member != id);
    }
    writer.abort();
}

/// A WebSocket server that completes every handshake and then never reads
/// again, with a small receive buffer so that what editors send soon stops
/// fitting anywhere.
struct DeafServer {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DeafServer {
    async fn start() -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        // Accepted connections inherit it; the kernel rounds it up to its minimum.
        socket.set_recv_buffer_size(1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(64).unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.spawn(async move {
                    if let Ok(socket) = tokio_tungstenite::accept_async(stream).await {
                        // Open, and never read from again.
                        std::future::pending::<()>().await;
                        drop(socket);
                    }
                });
            }
        });
        Self { addr, task }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for DeafServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address where a TCP connect neither succeeds nor fails: a listener that
/// never accepts, whose accept queue is full, so the kernel drops further SYNs
/// (as a firewall that drops packets would).
struct SilentListener {
    addr: std::net::SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

impl SilentListener {
    async fn start() -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => queued.push(stream),
                Ok(Err(error)) => panic!("connecting to a listener: {error}"),
                Err(_) => break,
            }
            assert!(queued.len() < 64, "the accept queue never filled");
        }
        Self {
            addr,
            _listener: listener,
            _queued: queued,
        }
    }
}
