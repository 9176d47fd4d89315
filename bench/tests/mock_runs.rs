//! Runs the laminar-bench binary against the client's in-memory mock broker: every mode, the
//! JSON results, compare, and verification with and without injected broker faults.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use laminar_client::mock_broker::{MockBroker, MockOptions, WriteFault};
use serde_json::Value;

/// Runs the bench with `args` on a blocking thread (the mock broker lives on this runtime).
async fn bench(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_laminar-bench")).args(&args).output().expect("bench runs")
    })
    .await
    .unwrap()
}

fn args(broker: &MockBroker, json: &Path, rest: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
    out.extend(["-b".into(), broker.address(), "--no-progress".into(), "--json".into(), json.display().to_string()]);
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("result file")).expect("valid JSON")
}

fn check_ok(output: &Output) {
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn json_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_verify_and_compare() {
    let broker = MockBroker::start(MockOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    // produce: a fixed count over two producers, compressed, variable sizes.
    let produced = json_path(&dir, "produce.json");
    let out = bench(args(
        &broker,
        &produced,
        &[
            "produce",
            "--topic",
            "bench",
            "--create-topic",
            "--partitions",
            "3",
            "--records",
            "5000",
            "--producers",
            "2",
            "--record-size",
            "100..300",
            "--compression",
            "lz4",
            "--batch-size",
            "4096",
            "--label",
            "mock",
        ],
    ))
    .await;
    check_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ack latency") && stdout.contains("bench cpu"), "{stdout}");
    let p = read_json(&produced);
    assert_eq!(p["mode"], "produce");
    assert_eq!(p["label"], "mock");
    assert_eq!(p["produce"]["acked_records"], 5000);
    assert_eq!(p["produce"]["failed_records"], 0);
    assert_eq!(p["produce"]["throughput"]["records"], 5000, "no warm-up: every record is measured");
    assert!(p["produce"]["ack_latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(p["params"]["compression"], "lz4");
    assert!(p["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(p["machine"].get("hostname").is_none());
    let stored: usize = (0..3).map(|i| broker.batches("bench", i).len()).sum();
    assert!(stored >= 3, "batches spread over partitions: {stored}");

    // consume: everything from the start, up to the end as of the start, over two consumers.
    let consumed = json_path(&dir, "consume.json");
    let out =
        bench(args(&broker, &consumed, &["consume", "--topic", "bench", "--until-end", "--consumers", "2"])).await;
    check_ok(&out);
    let c = read_json(&consumed);
    assert_eq!(c["consume"]["read_records"], 5000);
    assert_eq!(c["consume"]["foreign_records"], 0);
    assert!(c["consume"]["throughput"]["bytes"].as_u64().unwrap() >= 5000 * 100);

    // verify: new records only (from latest), keyed with zipf skew.
    let verified = json_path(&dir, "verify.json");
    let out = bench(args(
        &broker,
        &verified,
        &[
            "verify",
            "--topic",
            "bench",
            "--records",
            "3000",
            "--key-dist",
            "zipf",
            "--key-count",
            "50",
            "--producers",
            "2",
        ],
    ))
    .await;
    check_ok(&out);
    let v = read_json(&verified);
    assert_eq!(v["verify"]["passed"], true, "{}", v["verify"]);
    assert_eq!(v["verify"]["acked"], 3000);
    assert_eq!(v["verify"]["delivered"], 3000);
    assert_eq!(v["verify"]["lost"], 0);
    assert_eq!(v["consume"]["foreign_records"], 0, "records of the earlier runs are before the start offsets");

    // e2e: paced, with a warm-up, for a duration.
    let e2e = json_path(&dir, "e2e.json");
    let out = bench(args(
        &broker,
        &e2e,
        &["e2e", "--topic", "bench", "--rate", "2000", "--duration", "1s", "--warmup", "300ms", "--linger-ms", "2"],
    ))
    .await;
    check_ok(&out);
    let e = read_json(&e2e);
    let measured = e["produce"]["throughput"]["records"].as_u64().unwrap();
    let total = e["produce"]["acked_records"].as_u64().unwrap();
    assert!((1500..=2600).contains(&measured), "about 2000 records in the measured second: {measured}");
    assert!(total > measured, "warm-up records are sent but not measured");
    assert!(e["consume"]["e2e_latency"]["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(e["consume"]["e2e_latency"]["curve"].as_array().unwrap().len() > 10);

    // compare, with the plot.
    let svg = dir.path().join("plot.svg");
    let out = bench(vec![
        "compare".into(),
        produced.display().to_string(),
        e2e.display().to_string(),
        "--svg".into(),
        svg.display().to_string(),
    ])
    .await;
    check_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("produce records/s") && table.contains("B/A"), "{table}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_through_produce_errors_and_catches_broker_faults() {
    let broker = MockBroker::start(MockOptions::default()).await.unwrap();
    broker.create_topic("faults", 2);
    let dir = tempfile::tempdir().unwrap();
    let verify = |json: PathBuf| {
        let a = args(
            &broker,
            &json,
            &["verify", "--topic", "faults", "--rate", "3000", "--duration", "1500ms", "--drain-timeout", "1s"],
        );
        bench(a)
    };

    // Errors the broker reports are not losses: failed batches are not acknowledged.
    let json = json_path(&dir, "errors.json");
    let run = verify(json.clone());
    let inject = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        broker.set_produce_error(Some(6)); // NOT_LEADER_OR_FOLLOWER
        tokio::time::sleep(Duration::from_millis(300)).await;
        broker.set_produce_error(None);
    };
    let (out, ()) = tokio::join!(run, inject);
    check_ok(&out);
    let r = read_json(&json);
    assert_eq!(r["verify"]["passed"], true, "{}", r["verify"]);
    assert!(r["verify"]["failed_produce"].as_u64().unwrap() > 0);
    assert!(r["produce"]["errors"]["NotLeaderOrFollower"].as_u64().unwrap() > 0, "{}", r["produce"]);

    // Acknowledged writes that vanish, or appear twice, fail verification (exit status 1).
    for (fault, field) in [(WriteFault::Lose, "lost"), (WriteFault::Duplicate, "duplicated")] {
        let json = json_path(&dir, &format!("{field}.json"));
        let run = verify(json.clone());
        let inject = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            broker.set_write_fault(Some(fault));
            tokio::time::sleep(Duration::from_millis(200)).await;
            broker.set_write_fault(None);
        };
        let (out, ()) = tokio::join!(run, inject);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
        let r = read_json(&json);
        assert_eq!(r["verify"]["passed"], false);
        assert!(r["verify"][field].as_u64().unwrap() > 0, "{field}: {}", r["verify"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_unreachable_brokers_exit_with_status_2() {
    let out = bench(vec!["verify".into(), "--acks".into(), "0".into(), "--no-json".into()]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("acks"));
    // A closed port: nothing listens on the port of a dropped listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = bench(vec![
        "produce".into(),
        "-b".into(),
        format!("127.0.0.1:{port}"),
        "--no-json".into(),
        "--records".into(),
        "1".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}
