//! The binary's surface without AWS: help, usage errors, config errors. All of these fail
//! before greenlight connects anywhere (the endpoint below is closed).

use assert_cmd::Command;

fn greenlight() -> Command {
    let mut cmd = Command::cargo_bin("greenlight").unwrap();
    cmd.env_clear()
        // Nothing listens there: a test that reached AWS would fail loudly, not pass.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    cmd
}

fn one_line_error(args: &[&str], config: Option<&str>, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = greenlight();
    if let Some(text) = config {
        let path = dir.path().join("greenlight.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
    } else {
        cmd.current_dir(dir.path());
    }
    let out = cmd.args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(expected),
        "{args:?}: {err:?} lacks {expected:?}"
    );
}

const CONFIG: &str = r#"service = "checkout"
region = "us-east-1"
[router]
listener_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/checkout/50dc6c495c0c9188/f2f7dc8efc522ab2"
target_groups = [
  "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-a/6d0ecf831eec9f09",
  "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-b/7a1fdf942ffd0a1a",
]
"#;

#[test]
fn help_documents_commands_and_exit_codes() {
    let out = greenlight().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "deploy",
        "promote",
        "abort",
        "rollback",
        "status",
        "validate",
        "unlock",
        "--region",
        "--profile",
        "Exit codes:",
        "3  release failed",
        "4  busy",
        "130  stopped by SIGINT",
        "143  stopped by SIGTERM",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from --help:\n{text}"
        );
    }
    let out = greenlight().args(["deploy", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--image-id") && text.contains("--launch-template-version"));
    assert!(text.contains("--strategy") && text.contains("--no-wait"));
    assert!(text.contains("Exit codes:"));
    let out = greenlight().args(["rollback", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--to"));
    let out = greenlight().args(["promote", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--full"));
}

/// A pipeline reading `--output json` gets an error event even when the flags do not parse.
#[test]
fn usage_errors_are_json_events_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("greenlight.toml");
    std::fs::write(&path, CONFIG).unwrap();
    for args in [
        vec!["--output", "json", "deploy", "--release", "v2"],
        vec!["--output", "json", "launch"],
        vec!["--output=json", "unlock"],
        vec!["--output", "json", "rollback", "--to", "v 2"],
    ] {
        let out = greenlight()
            .arg("--config")
            .arg(&path)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        let event: serde_json::Value = serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("{args:?}: {last:?} is not JSON: {e}"));
        assert_eq!(event["event"], "error", "{args:?}");
        assert_eq!(event["exit_code"], 2, "{args:?}");
        assert!(!event["message"].as_str().unwrap().contains('\n'));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn usage_errors() {
    one_line_error(&["deploy", "--release", "v2"], Some(CONFIG), "--image-id");
    one_line_error(
        &[
            "deploy",
            "--release",
            "v2",
            "--image-id",
            "ami-12345678",
            "--launch-template-version",
            "3",
        ],
        Some(CONFIG),
        "cannot be used with",
    );
    one_line_error(
        &["deploy", "--image-id", "ami-12345678"],
        Some(CONFIG),
        "--release",
    );
    one_line_error(&["launch"], Some(CONFIG), "unrecognized subcommand");
    one_line_error(&["unlock"], Some(CONFIG), "--force");
    one_line_error(
        &[
            "deploy",
            "--release",
            "v2",
            "--image-id",
            "ami-12345678",
            "--strategy",
            "rolling",
        ],
        Some(CONFIG),
        "rolling",
    );
    one_line_error(
        &[
            "deploy",
            "--release",
            "v2",
            "--image-id",
            "ami-12345678",
            "--strategy",
            "canary",
        ],
        Some(CONFIG),
        "needs [canary] steps",
    );
    one_line_error(&["status", "--output", "yaml"], Some(CONFIG), "yaml");
    one_line_error(
        &["deploy", "--release", "v2", "--image-id", "i-12345678"],
        Some(CONFIG),
        "not an AMI id",
    );
    one_line_error(
        &[
            "deploy",
            "--release",
            "v2/beta",
            "--image-id",
            "ami-12345678",
        ],
        Some(CONFIG),
        "contains '/'",
    );
    one_line_error(
        &[
            "deploy",
            "--release",
            "v2",
            "--launch-template-version",
            "0",
        ],
        Some(CONFIG),
        "1 or more",
    );
}

#[test]
fn config_errors() {
    one_line_error(&["status"], None, "config greenlight.toml not found");
    one_line_error(
        &["status"],
        Some("service = \"checkout\"\n"),
        "missing field `router`",
    );
    one_line_error(
        &["status"],
        Some(&CONFIG.replace("region = \"us-east-1\"", "region = \"eu-west-1\"")),
        "is in us-east-1 but region = \"eu-west-1\"",
    );
    one_line_error(
        &["validate"],
        Some(&format!("{CONFIG}[health]\ntimeout = \"forever\"\n")),
        "[health] timeout",
    );
    // Absurd durations are bounded when read: nothing later can overflow.
    one_line_error(
        &["validate"],
        Some(&format!("{CONFIG}[retention]\nkeep_warm = \"9000y\"\n")),
        "longer than a year",
    );
    one_line_error(
        &["validate"],
        Some(&format!("{CONFIG}[health]\ntimeout = \"580000000000y\"\n")),
        "[health] timeout",
    );
    one_line_error(
        &["validate"],
        Some(&format!(
            "strategy = \"canary\"\n{CONFIG}[canary]\nsteps = [{{ weight = 50 }}, {{ weight = 20 }}, {{ weight = 100 }}]\n"
        )),
        "strictly increase",
    );
    one_line_error(
        &["validate"],
        Some(&format!(
            "strategy = \"canary\"\n{}[canary]\nsteps = [{{ weight = 10 }}, {{ weight = 100 }}]\n",
            CONFIG.replace("listener/app/", "listener/net/")
        )),
        "Network Load Balancer",
    );
}

#[test]
fn region_from_the_environment_must_match_the_arns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("greenlight.toml");
    std::fs::write(&path, CONFIG.replace("region = \"us-east-1\"\n", "")).unwrap();
    let out = greenlight()
        .env("AWS_REGION", "eu-central-1")
        .arg("--config")
        .arg(&path)
        .arg("status")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("eu-central-1") && err.contains("us-east-1"),
        "{err}"
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = greenlight().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown commit".into());
    assert_eq!(
        text.trim(),
        format!("greenlight {} ({expected})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_and_the_man_page_need_no_config_and_no_aws() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_greenlight()"),
        ("zsh", "#compdef greenlight"),
        ("fish", "complete -c greenlight"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = greenlight()
            .current_dir(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        // Every subcommand is completed, including the newest.
        assert!(
            script.contains("cleanup") && script.contains("rollback"),
            "{shell}"
        );
    }
    let out = greenlight()
        .current_dir(dir.path())
        .arg("man")
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH greenlight 1"), "{page}");
    assert!(
        page.contains("cleanup") && page.contains("Exit codes"),
        "{page}"
    );

    one_line_error(&["completions", "tcsh"], None, "invalid value 'tcsh'");
}

#[test]
fn json_events_say_when_they_happened_and_how_long_in() {
    let dir = tempfile::tempdir().unwrap();
    let out = greenlight()
        .current_dir(dir.path())
        .args(["--output", "json", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let line = String::from_utf8_lossy(&out.stdout);
    let event: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(event["event"], "error");
    let time = event["time"].as_str().expect("time");
    let when = humantime::parse_rfc3339(time).expect("RFC 3339");
    let age = std::time::SystemTime::now()
        .duration_since(when)
        .expect("not in the future");
    assert!(age < std::time::Duration::from_secs(60), "{time}");
    assert!(
        time.ends_with('Z') && time.contains('.'),
        "UTC, milliseconds: {time}"
    );
    assert!(event["elapsed_ms"].as_u64().is_some(), "{event}");
}
