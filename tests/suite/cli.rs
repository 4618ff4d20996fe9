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
        "rollback",
        "status",
        "validate",
        "Exit codes:",
        "3  release failed",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from --help:\n{text}"
        );
    }
    let out = greenlight().args(["deploy", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--image-id") && text.contains("--launch-template-version"));
    assert!(text.contains("Exit codes:"));
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
