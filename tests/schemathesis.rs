//! Schemathesis against the real binary: thousands of requests generated from the OpenAPI document
//! (valid and invalid), every operation, with a login token. No answer may be a 5xx, and every
//! answer must fit the document (status, content type, headers, body schema).
//!
//! Schemathesis comes from PyPI, pinned in `tests/schemathesis/requirements.txt`; `.ci/run`
//! installs it into `.venv-ci/`. Without it the test fails under CI and skips loudly elsewhere.
//! `OUTCALL_SCHEMATHESIS_SEED` replays a run; `OUTCALL_SCHEMATHESIS_EXAMPLES` changes the number
//! of generated cases per operation.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::{phone_numbers, process::Outcall, Api, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};

/// Generated cases per operation in the fuzzing phase; with the examples, coverage and stateful
/// phases this gives about 2,800 requests in under a minute on two cores.
const EXAMPLES_PER_OPERATION: u32 = 150;
const LEAST_REQUESTS: u64 = 2_000;
const RUN_LIMIT: Duration = Duration::from_secs(600);
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// The schemathesis CLI: the CI venv's, else one on `PATH`.
fn schemathesis() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-ci/bin/st");
    let candidates = [venv, PathBuf::from("st")];
    candidates.into_iter().find(|candidate| {
        Command::new(candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

/// Some tasks with numbers, so that generated ids and the examples reach real rows.
async fn seed(api: &Api) {
    for (index, name) in ["seed-idle", "seed-running", "seed-stopped"]
        .iter()
        .enumerate()
    {
        let created = api
            .ok(
                Method::POST,
                "/api/out_call_tasks",
                Some(json!({"group_name": name, "description": "seed", "max_caps": 50, "max_concurrency": 10})),
            )
            .await;
        let id = created["data"].as_i64().expect("a new id");
        let rows: Vec<Value> = phone_numbers(index as u64 * 100, 20)
            .into_iter()
            .map(|number| json!({"dest_number": number, "external_id": name}))
            .collect();
        api.import_rows(id, rows).await;
        for action in ["start", "stop"].iter().take(index) {
            let answer = api.start_stop(action, &[id]).await;
            assert!(answer.status.is_success(), "{action}: {}", answer.body);
        }
    }
    // A prompt, so that the audio route's example id plays a real file (200, Range → 206).
    let boundary = "seed-boundary";
    let samples: Vec<i16> = (0..800).map(|n| (n % 40) * 100).collect();
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"seed.wav\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&outcall::audio::wav::encode_wav(&samples, 1, 8000));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let uploaded = api.post_multipart("/api/media_files", boundary, body).await;
    assert!(
        uploaded.status.is_success(),
        "the seed prompt: {}",
        uploaded.body
    );
}

/// The number in the summary line `N generated, …`.
fn generated_count(output: &str) -> Option<u64> {
    output.lines().find_map(|line| {
        let (count, rest) = line.trim().split_once(' ')?;
        rest.starts_with("generated").then(|| count.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let Some(st) = schemathesis() else {
        if in_ci() {
            panic!("schemathesis is not installed: .ci/run installs it into .venv-ci/");
        }
        eprintln!(
            "\n!!!!!!!! SKIPPED: schemathesis is not installed. Run `bash .ci/run`, or \
             `python3 -m venv .venv-ci && .venv-ci/bin/pip install -r tests/schemathesis/requirements.txt` !!!!!!!!\n"
        );
        return;
    };
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut server = Outcall::in_dir(work.path())
        // Large enough for any generated body, small enough that 413 is reachable.
        .args(["--body-limit", "1048576"])
        .env("OUTCALL_LOG", "warn")
        .spawn();
    let api = server.connect().await;
    let client = api.client.clone();
    let base = server.base_url();
    let token = api.token.clone();
    seed(&api).await;

    // The document from a file, so that its own route is among the operations tested.
    let document = client
        .get(format!("{}/api/openapi.json", base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let document_path = work.path().join("openapi.json");
    std::fs::write(&document_path, &document).unwrap();

    let seed_value = std::env::var("OUTCALL_SCHEMATHESIS_SEED")
        .ok()
        .unwrap_or_else(|| (rand_seed() % 1_000_000).to_string());
    let examples = std::env::var("OUTCALL_SCHEMATHESIS_EXAMPLES")
        .unwrap_or_else(|_| EXAMPLES_PER_OPERATION.to_string());
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    let mut command = tokio::process::Command::new(&st);
    command
        .arg("--config-file")
        .arg(hooks.join("schemathesis.toml"))
        .arg("run")
        .arg(&document_path)
        .args(["--url", &base])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples])
        // One worker is as fast here (the server shares the two cores), and Python 3.11's parser
        // is not thread-safe: with two, hypothesis sometimes fails with "AST constructor
        // recursion depth mismatch", an error of the tool, not of outcall.
        .args(["--workers", "1"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--generation-with-security-parameters", "false"])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "30"])
        .args(["--seed", &seed_value])
        .arg("--no-color")
        .current_dir(work.path())
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONPATH", &hooks)
        .env("OUTCALL_BASE_URL", &base)
        .env("OUTCALL_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("OUTCALL_TOKEN", &token)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    println!(
        "running {} (seed {seed_value}) against {}",
        st.display(),
        base
    );
    let output = tokio::time::timeout(RUN_LIMIT, command.output())
        .await
        .expect("schemathesis finishes within the limit")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");

    let still_running = server.try_exit().is_none();
    let log = server.log_text();
    assert!(still_running, "outcall died during the run:\n{log}");
    assert!(
        !log.contains("panicked"),
        "outcall panicked during the run:\n{log}"
    );
    assert!(
        output.status.success(),
        "schemathesis found failures (seed {seed_value}; replay with OUTCALL_SCHEMATHESIS_SEED)"
    );
    let generated = generated_count(&stdout).expect("schemathesis's summary counts its cases");
    println!("schemathesis: {generated} requests generated, all passed");
    assert!(
        generated >= LEAST_REQUESTS,
        "only {generated} requests generated; at least {LEAST_REQUESTS} are expected"
    );
    let operations: usize = serde_json::from_slice::<Value>(&document).unwrap()["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert!(
        stdout.contains(&format!("{operations} selected / {operations} total")),
        "every one of the document's {operations} operations is tested"
    );
}

/// A seed that differs between runs (printed, so that a failing run can be replayed).
fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
