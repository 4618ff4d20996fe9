//! CI recipes: the GitHub Action (action.yml, action/*.sh), the example workflows, the
//! CodeBuild buildspec and its CodePipeline template, the Jenkinsfile and scripts/release.sh.
//!
//! Validation (no emulator): action.yml against GitHub's action metadata schema and the
//! workflows against GitHub's workflow schema (check-jsonschema's vendored SchemaStore schemas),
//! pipeline.yaml with infra/lint.sh's cfn-lint, the Jenkinsfile with the Groovy compiler, every
//! shell script and every shell step of the examples with shellcheck, the buildspec against
//! AWS's documented buildspec 0.2 keys; each validator is also shown to reject a broken copy.
//! The tools come from examples/lint-tools.sh (pinned; a no-op once installed).
//!
//! On the emulator: the action's two steps run as a composite action runs them (the `env:` of
//! action.yml evaluated from the inputs, `bash --noprofile --norc -eo pipefail`, one
//! GITHUB_OUTPUT file per step); the buildspec's install and build commands run in one bash as
//! CodeBuild runs them; the Jenkinsfile's `sh` steps (taken from the Groovy AST) run as scripts.
//! Installs come from a release packaged by scripts/release.sh from the debug binary, served
//! from a file:// URL, and verified against its SHA256SUMS.

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use serde_json::{Value, json};

use super::harness::{Seeded, Session, forwards_of, session, venv, yaml};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The folder of the greenlight binary under test (what a runner would have on PATH).
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_greenlight"))
        .parent()
        .unwrap()
        .to_owned()
}

const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// The validators (examples/lint-tools.sh), installed once per test process; returns the venv.
fn lint_tools() -> PathBuf {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        venv();
        let out = Command::new("bash")
            .arg(root().join("examples/lint-tools.sh"))
            .output()
            .expect("run examples/lint-tools.sh");
        assert!(
            out.status.success(),
            "examples/lint-tools.sh failed:\n{}",
            text(&out)
        );
    });
    venv()
}

/// action.yml and the buildspec, parsed once per test process.
fn action_yml() -> &'static Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    PARSED.get_or_init(|| yaml(&root().join("action.yml")))
}

fn buildspec() -> &'static Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    PARSED.get_or_init(|| yaml(&root().join("examples/codebuild/buildspec.yml")))
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string: {v}"))
}

/// `NAME=value` lines and `NAME<<DELIM … DELIM` blocks, as GitHub reads GITHUB_OUTPUT.
fn parse_github_output(content: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut lines = content.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            map.insert(name.to_owned(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            map.insert(name.to_owned(), value.to_owned());
        }
    }
    map
}

// ---------------------------------------------------------------------------------------------
// The action, run as the runner runs a composite action

struct ActionRun {
    /// The exit code of the step that failed, or 0.
    code: i32,
    /// The ids of the steps that ran, in order.
    ran: Vec<String>,
    /// The action's outputs, from its `outputs:` expressions.
    outputs: BTreeMap<String, String>,
    /// The job summary (every step's GITHUB_STEP_SUMMARY, in order).
    summary: String,
    /// What the steps printed (stdout then stderr of each).
    log: String,
    /// RUNNER_TEMP, kept while the run is looked at (the events file is there).
    _runner: tempfile::TempDir,
}

impl ActionRun {
    fn out(&self, name: &str) -> &str {
        self.outputs
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no output {name}: {:?}\n{}", self.outputs, self.log))
    }
}

/// Evaluates the `${{ … }}` expressions action.yml uses: inputs.X, github.action_path and
/// steps.ID.outputs.X. Any other expression fails the test (the runner here would not know it).
fn evaluate(
    template: &str,
    inputs: &BTreeMap<String, String>,
    steps: &BTreeMap<String, BTreeMap<String, String>>,
) -> String {
    let mut result = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${{") {
        result.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .unwrap_or_else(|| panic!("unclosed expression in {template}"))
            + start;
        let expr = rest[start + 3..end].trim();
        let value = if let Some(name) = expr.strip_prefix("inputs.") {
            inputs
                .get(name)
                .unwrap_or_else(|| panic!("action.yml uses undeclared input {name}"))
                .clone()
        } else if expr == "github.action_path" {
            root().display().to_string()
        } else if let Some(path) = expr.strip_prefix("steps.") {
            let (id, output) = path
                .split_once(".outputs.")
                .unwrap_or_else(|| panic!("unsupported expression {expr}"));
            steps
                .get(id)
                .and_then(|o| o.get(output))
                .cloned()
                .unwrap_or_default()
        } else {
            panic!("unsupported expression in action.yml: {expr}")
        };
        result.push_str(&value);
        rest = &rest[end + 2..];
    }
    result.push_str(rest);
    result
}

/// Runs action.yml's steps with `with` as the inputs and `env` (AWS settings, RUNNER_TOOL_CACHE…)
/// as the job's environment, in `workspace`, with `path` first on PATH.
fn run_action(
    with: &[(&str, &str)],
    env: &[(&str, String)],
    workspace: &Path,
    path: &[PathBuf],
) -> ActionRun {
    let action = action_yml();
    assert_eq!(s(&action["runs"]["using"]), "composite");
    let mut inputs: BTreeMap<String, String> = action["inputs"]
        .as_object()
        .expect("inputs")
        .iter()
        .map(|(name, spec)| {
            let default = match &spec["default"] {
                Value::Null => String::new(),
                Value::String(d) => d.clone(),
                other => other.to_string(),
            };
            (name.clone(), default)
        })
        .collect();
    for (name, value) in with {
        assert!(inputs.contains_key(*name), "action.yml has no input {name}");
        inputs.insert((*name).to_owned(), (*value).to_owned());
    }

    let mut steps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut run = ActionRun {
        code: 0,
        ran: Vec::new(),
        outputs: BTreeMap::new(),
        summary: String::new(),
        log: String::new(),
        _runner: tempfile::tempdir().unwrap(),
    };
    let mut added_path: Vec<String> = Vec::new();
    for (i, step) in action["runs"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .enumerate()
    {
        let id = s(&step["id"]).to_owned();
        assert_eq!(s(&step["shell"]), "bash", "step {id}");
        assert!(step.get("if").is_none(), "step {id}: `if:` is not run here");
        let script = run._runner.path().join(format!("step-{i}.sh"));
        fs::write(&script, s(&step["run"])).unwrap();
        let output = run._runner.path().join(format!("output-{i}"));
        let summary = run._runner.path().join(format!("summary-{i}"));
        let github_path = run._runner.path().join(format!("path-{i}"));
        for file in [&output, &summary, &github_path] {
            fs::write(file, "").unwrap();
        }
        let mut search: Vec<String> = path.iter().map(|p| p.display().to_string()).collect();
        search.extend(added_path.iter().rev().cloned());
        search.push(SYSTEM_PATH.to_owned());

        let mut cmd = assert_cmd::Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&script)
            .current_dir(workspace)
            .env_clear()
            .env("PATH", search.join(":"))
            .env("HOME", run._runner.path())
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_ACTION_PATH", root())
            .env("GITHUB_WORKSPACE", workspace)
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("GITHUB_PATH", &github_path)
            .env("RUNNER_TEMP", run._runner.path())
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64")
            .timeout(Duration::from_secs(180));
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(vars) = step["env"].as_object() {
            for (k, v) in vars {
                let template = match v {
                    Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                cmd.env(k, evaluate(&template, &inputs, &steps));
            }
        }
        let out = cmd.output().expect("run a step");
        run.log.push_str(&format!("--- step {id}\n{}", text(&out)));
        run.ran.push(id.clone());
        steps.insert(
            id.clone(),
            parse_github_output(&fs::read_to_string(&output).unwrap()),
        );
        run.summary.push_str(&fs::read_to_string(&summary).unwrap());
        added_path.extend(
            fs::read_to_string(&github_path)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
        let code = out.status.code().unwrap_or(-1);
        if code != 0 {
            // A failed step ends a composite action; later steps do not run.
            run.code = code;
            break;
        }
    }
    for (name, spec) in action["outputs"].as_object().expect("outputs") {
        run.outputs
            .insert(name.clone(), evaluate(s(&spec["value"]), &inputs, &steps));
    }
    run
}

/// The events a run kept (its events-file output), one JSON object per line.
fn events(run: &ActionRun) -> Vec<Value> {
    let file = run.out("events-file");
    fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("events file {file}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn config(seeded: &Seeded) -> String {
    seeded.config.display().to_string()
}

/// A canary plan that stops at a manual gate, added to a seeded config.
fn add_canary(seeded: &Seeded) {
    let mut text = fs::read_to_string(&seeded.config).unwrap();
    text.push_str("\n[canary]\nsteps = [{ weight = 10, pause = \"manual\" }, { weight = 100 }]\n");
    fs::write(&seeded.config, text).unwrap();
}

/// (target group ARN, weight) of the listener's default forward action, read with the SDK.
fn listener_forwards(s: &Session, listener: &str) -> Vec<(String, i32)> {
    let elb = ElbClient::new(&block_on(s.sdk()));
    let out = block_on(elb.describe_listeners().listener_arns(listener).send()).unwrap();
    forwards_of(&out.listeners()[0].default_actions()[0])
}

/// The share of traffic (percent) the listener sends to `target_group`.
fn share(s: &Session, listener: &str, target_group: &str) -> i32 {
    let forwards = listener_forwards(s, listener);
    let total: i32 = forwards.iter().map(|(_, w)| w).sum();
    let weight: i32 = forwards
        .iter()
        .filter(|(tg, _)| tg == target_group)
        .map(|(_, w)| w)
        .sum();
    if total == 0 { 0 } else { weight * 100 / total }
}

#[test]
fn action_deploys_shows_status_rolls_back_and_reports_bad_input() {
    let s = session();
    let seeded = s.seed("gha", &[]);
    add_canary(&seeded);
    let ws = tempfile::tempdir().unwrap();
    let env: Vec<(&str, String)> = s.aws_env();
    let config = config(&seeded);
    let listener = seeded.str("listener_arn");
    let (tg_a, tg_b) = (seeded.target_group(0), seeded.target_group(1));
    let action = |with: &[(&str, &str)]| {
        let mut all = vec![("config", config.as_str())];
        all.extend_from_slice(with);
        run_action(&all, &env, ws.path(), &[bin_dir()])
    };

    // deploy: released, and AWS says so.
    let image = seeded.image(1);
    let run = action(&[("release", "v2"), ("image-id", &image)]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(run.ran, ["install", "run"]);
    assert_eq!(run.out("outcome"), "released", "{}", run.log);
    assert_eq!(run.out("release"), "v2");
    assert_eq!(run.out("live-release"), "v2");
    assert_eq!(run.out("slot"), "b");
    assert_eq!(run.out("exit-code"), "0");
    assert_eq!(run.out("message"), "");
    assert!(
        run.out("greenlight-version").starts_with("greenlight "),
        "{:?}",
        run.outputs
    );
    if s.emulator.hooks {
        assert_eq!(share(&s, &listener, &tg_b), 100);
    }
    let kept = events(&run);
    assert_eq!(kept.first().unwrap()["event"], "deploy_started");
    assert_eq!(kept.last().unwrap()["event"], "released");
    // The events are in the log too, as greenlight printed them.
    assert!(run.log.contains(r#""event":"released""#), "{}", run.log);
    assert!(
        run.summary.contains("### greenlight deploy: ✅ released"),
        "{}",
        run.summary
    );
    assert!(run.summary.contains("| live release | v2 (slot b) |"));
    assert!(run.summary.contains("| exit code | 0 |"));
    assert!(run.summary.contains(&format!(
        "--config {config} deploy --release v2 --image-id {image}"
    )));

    // status: settled on v2.
    let run = action(&[("command", "status")]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(run.out("outcome"), "settled");
    assert_eq!(run.out("live-release"), "v2");
    assert_eq!(run.out("release"), "v2");
    assert_eq!(run.out("slot"), "b");

    // rollback: back on the seeded fleet in slot a; a second one changes nothing.
    let blue = seeded.fleet("blue");
    let run = action(&[("command", "rollback")]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(run.out("outcome"), "rolled_back", "{}", run.log);
    assert_eq!(run.out("release"), blue);
    assert_eq!(run.out("live-release"), blue);
    assert_eq!(run.out("slot"), "a");
    if s.emulator.hooks {
        assert_eq!(share(&s, &listener, &tg_a), 100);
    }
    assert!(
        run.summary
            .contains("### greenlight rollback: ↩️ rolled_back")
    );
    let run = action(&[("command", "rollback")]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(run.out("outcome"), "already_rolled_back");
    assert_eq!(run.out("live-release"), blue);

    // A canary stopped at its manual gate, then promoted by a second run.
    let image2 = seeded.image(2);
    let run = action(&[
        ("release", "v3"),
        ("image-id", &image2),
        ("strategy", "canary"),
        ("no-wait", "true"),
    ]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(run.out("outcome"), "paused", "{}", run.log);
    assert_eq!(run.out("release"), "v3");
    assert_eq!(run.out("live-release"), blue);
    assert!(
        run.summary.contains("| paused at | step 1/2 (10%)"),
        "{}",
        run.summary
    );
    if s.emulator.hooks {
        assert_eq!(share(&s, &listener, &tg_b), 10);
    }
    let run = action(&[("command", "promote"), ("full", "true")]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(run.out("outcome"), "released", "{}", run.log);
    assert_eq!(run.out("release"), "v3");
    assert_eq!(run.out("live-release"), "v3");
    assert_eq!(run.out("slot"), "b");

    // Another canary at its gate, aborted: all traffic back on v3.
    let run = action(&[
        ("release", "v4"),
        ("image-id", &image),
        ("strategy", "canary"),
        ("no-wait", "true"),
    ]);
    assert_eq!(run.out("outcome"), "paused", "{}", run.log);
    let run = action(&[("command", "abort")]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(run.out("outcome"), "aborted", "{}", run.log);
    assert_eq!(run.out("release"), "v4");
    assert_eq!(run.out("live-release"), "v3");
    assert_eq!(run.out("slot"), "b");
    assert!(run.summary.contains("### greenlight abort: ⛔ aborted"));
    if s.emulator.hooks {
        assert_eq!(share(&s, &listener, &tg_b), 100);
    }

    // Bad input: an AMI that does not exist. greenlight's exit code and message come through.
    let run = action(&[("release", "v5"), ("image-id", "ami-00000000000000000")]);
    assert_eq!(run.code, 2, "{}", run.log);
    assert_eq!(run.out("exit-code"), "2");
    assert_eq!(run.out("outcome"), "bad_input");
    assert_eq!(run.out("release"), "v5", "the release asked for");
    assert!(
        run.out("message").contains("ami-00000000000000000"),
        "{:?}",
        run.outputs
    );
    assert!(run.summary.contains("### greenlight deploy: ❌ bad_input"));
    assert!(run.summary.contains("| exit code | 2 |"));
    assert!(
        run.log.contains(
            "::error title=greenlight deploy bad_input (exit 2)::image ami-00000000000000000"
        ),
        "{}",
        run.log
    );

    // Inputs a command does not take are refused by the action before greenlight runs.
    let run = action(&[("command", "promote"), ("image-id", &image)]);
    assert_eq!(run.code, 2, "{}", run.log);
    assert!(
        run.log.contains("input image-id does not apply to promote"),
        "{}",
        run.log
    );
    assert_eq!(run.out("events-file"), "", "greenlight must not have run");
    let run = action(&[("command", "deploy"), ("image-id", &image)]);
    assert_eq!(run.code, 2);
    assert!(
        run.log.contains("deploy needs the release input"),
        "{}",
        run.log
    );
    let run = action(&[("command", "redeploy")]);
    assert_eq!(run.code, 2);
    assert!(
        run.log
            .contains("command must be deploy, promote, abort, rollback or status")
    );
}

#[test]
fn action_reports_a_failed_release() {
    let s = session();
    if !s.emulator.hooks {
        eprintln!("skipped: needs greenlight's emulator to script target health");
        return;
    }
    let seeded = s.seed("ghafail", &["--health-timeout", "1s"]);
    let ws = tempfile::tempdir().unwrap();
    let listener = seeded.str("listener_arn");
    let tg_a = seeded.target_group(0);
    s.script_health(
        json!({"asg_name": seeded.fleet("v2")}),
        json!([{"state": "unhealthy", "reason": "Target.ResponseCodeMismatch",
                "description": "Health checks failed with these codes: [502]"}]),
    );
    let config = config(&seeded);
    let image = seeded.image(1);
    let run = run_action(
        &[("config", &config), ("release", "v2"), ("image-id", &image)],
        &s.aws_env(),
        ws.path(),
        &[bin_dir()],
    );
    let blue = seeded.fleet("blue");
    assert_eq!(run.code, 3, "{}", run.log);
    assert_eq!(run.ran, ["install", "run"]);
    assert_eq!(run.out("exit-code"), "3");
    assert_eq!(run.out("outcome"), "failed");
    assert_eq!(run.out("release"), "v2");
    assert_eq!(run.out("live-release"), blue);
    assert_eq!(run.out("slot"), "a");
    assert!(
        run.out("message").contains("Target.ResponseCodeMismatch"),
        "{:?}",
        run.outputs
    );
    assert_eq!(share(&s, &listener, &tg_a), 100, "traffic stayed on blue");
    assert!(
        run.summary.contains("### greenlight deploy: ❌ failed"),
        "{}",
        run.summary
    );
    assert!(run.summary.contains("| exit code | 3 |"));
    assert!(run.summary.contains(&format!(
        "**Why the release failed** (traffic stayed on, or went back to, {blue}):"
    )));
    assert!(
        run.summary.contains("- not healthy in time: 0/2 healthy"),
        "{}",
        run.summary
    );
    assert!(
        run.log
            .contains("::error title=greenlight deploy failed (exit 3)::release v2 failed"),
        "{}",
        run.log
    );
    let kept = events(&run);
    assert_eq!(kept.last().unwrap()["event"], "error");
    let failed = kept
        .iter()
        .find(|e| e["event"] == "release_failed")
        .expect("a release_failed event");
    // Reasons are {code, description, target} (a string in greenlights before them).
    let reasons = failed["reasons"].as_array().unwrap();
    if reasons[0].is_object() {
        assert_eq!(run.out("reason-codes"), "health_timeout,target_unhealthy");
        assert!(
            run.summary.contains("(`health_timeout`)"),
            "{}",
            run.summary
        );
    } else {
        assert_eq!(run.out("reason-codes"), "");
    }

    // Busy: another deploy holds the service's lock (it waits for v3's health, which never
    // comes; its config allows a minute). The action's deploy exits 4, outcome busy.
    s.script_health(
        json!({"asg_name": seeded.fleet("v3")}),
        json!([{"state": "initial", "reason": "Elb.RegistrationInProgress"}]),
    );
    let patient = ws.path().join("patient.toml");
    let text = fs::read_to_string(&seeded.config)
        .unwrap()
        .replace("timeout = \"1s\"", "timeout = \"1m\"");
    assert!(text.contains("timeout = \"1m\""), "{text}");
    fs::write(&patient, text).unwrap();
    let mut holder = Command::new(env!("CARGO_BIN_EXE_greenlight"))
        .env_clear()
        .env("PATH", SYSTEM_PATH)
        .envs(s.aws_env())
        .arg("--config")
        .arg(&patient)
        .args([
            "--output",
            "json",
            "deploy",
            "--release",
            "v3",
            "--image-id",
        ])
        .arg(seeded.image(2))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the deploy that holds the lock");
    // Wait until it holds the lock: its first event comes after it took it.
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.contains("deploy_started"), "{first}");
    let run = run_action(
        &[("config", &config), ("release", "v4"), ("image-id", &image)],
        &s.aws_env(),
        ws.path(),
        &[bin_dir()],
    );
    // Stop the holder (SIGTERM: it stops at a safe point and releases the lock).
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(holder.id().to_string())
        .status();
    let holder_status = holder.wait().unwrap();
    assert_eq!(run.code, 4, "{}", run.log);
    assert_eq!(run.out("outcome"), "busy");
    assert_eq!(run.out("exit-code"), "4");
    assert_eq!(run.out("release"), "v4", "the release asked for");
    assert!(
        run.out("message").contains("is locked by"),
        "{:?}",
        run.outputs
    );
    assert!(run.summary.contains("### greenlight deploy: ❌ busy"));
    assert_eq!(holder_status.code(), Some(143));
}

// ---------------------------------------------------------------------------------------------
// Release artifacts: scripts/release.sh packaging the debug binary, installed by the action

struct Packaged {
    /// The download URL (file://), holding v<version>/.
    url: String,
    version: String,
    /// The Rust target the tarball is named for (this machine's).
    target: String,
    dir: PathBuf,
}

/// The debug binary (stripped copy), packaged once per test process by scripts/release.sh.
fn packaged() -> &'static Packaged {
    static PACKAGED: OnceLock<Packaged> = OnceLock::new();
    PACKAGED.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Earlier runs' copies (processes that are gone) are removed.
        if let Ok(entries) = fs::read_dir(tmp) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("pipelines-release-")
                    && !Path::new("/proc").join(pid).exists()
                {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = tmp.join(format!("pipelines-release-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let version = env!("CARGO_PKG_VERSION").to_owned();
        let out_dir = dir.join(format!("v{version}"));
        fs::create_dir_all(&out_dir).unwrap();
        // Stripped: a third of the size, so packaging takes seconds, not ten.
        let binary = dir.join("greenlight");
        let stripped = Command::new("strip")
            .arg("-o")
            .arg(&binary)
            .arg(env!("CARGO_BIN_EXE_greenlight"))
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            fs::copy(env!("CARGO_BIN_EXE_greenlight"), &binary).unwrap();
        }
        let out = Command::new("bash")
            .arg(root().join("scripts/release.sh"))
            .args(["--targets", "host", "--binary"])
            .arg(&binary)
            .arg("--out")
            .arg(&out_dir)
            .output()
            .expect("run scripts/release.sh");
        assert!(out.status.success(), "release.sh failed:\n{}", text(&out));
        let prefix = format!("greenlight-{version}-");
        let tarballs: Vec<String> = fs::read_dir(&out_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix) && n.ends_with(".tar.gz"))
            .collect();
        assert_eq!(tarballs.len(), 1, "{tarballs:?}");
        let target = tarballs[0]
            .trim_start_matches(&prefix)
            .trim_end_matches(".tar.gz")
            .to_owned();
        Packaged {
            url: format!("file://{}", dir.display()),
            version,
            target,
            dir,
        }
    })
}

#[test]
fn release_sh_packages_a_tarball_and_checksums_the_action_verifies() {
    let p = packaged();
    let out_dir = p.dir.join(format!("v{}", p.version));
    let name = format!("greenlight-{}-{}", p.version, p.target);

    // SHA256SUMS names the tarball, and sha256sum agrees.
    let sums = fs::read_to_string(out_dir.join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 1, "{sums}");
    assert!(
        sums.trim_end().ends_with(&format!("  {name}.tar.gz")),
        "{sums}"
    );
    let check = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&out_dir)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));
    // The tarball holds one folder with the binary, README.md and LICENSE.
    let list = Command::new("tar")
        .arg("-tzf")
        .arg(out_dir.join(format!("{name}.tar.gz")))
        .output()
        .unwrap();
    let mut entries: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            format!("{name}/"),
            format!("{name}/LICENSE"),
            format!("{name}/README.md"),
            format!("{name}/greenlight"),
        ]
    );

    // A target this machine has no Rust standard library for: one line naming it and the fix.
    let out = Command::new("bash")
        .arg(root().join("scripts/release.sh"))
        .args(["--targets", "riscv64gc-unknown-linux-musl", "--out"])
        .arg(p.dir.join("none"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "release.sh: Rust target riscv64gc-unknown-linux-musl is not installed; add it with: rustup target add riscv64gc-unknown-linux-musl"
    );
    // A version other than Cargo.toml's is refused before any build.
    let out = Command::new("bash")
        .arg(root().join("scripts/release.sh"))
        .args(["--version", "99.0.0", "--targets", "host"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("asked for version 99.0.0 but Cargo.toml says"));
}

#[test]
fn action_installs_a_verified_release_and_deploys_with_it() {
    let p = packaged();
    let s = session();
    let seeded = s.seed("ghainstall", &[]);
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut env = s.aws_env();
    env.push(("RUNNER_TOOL_CACHE", cache.path().display().to_string()));
    let config = config(&seeded);
    let image = seeded.image(1);
    // greenlight is NOT on PATH: only the installed one can run.
    let with = |url: &str| -> Vec<(&str, String)> {
        vec![
            ("config", config.clone()),
            ("release", "v2".into()),
            ("image-id", image.clone()),
            ("version", p.version.clone()),
            ("download-url", url.to_owned()),
            ("target", p.target.clone()),
        ]
    };
    let run_with = |w: Vec<(&str, String)>| {
        let refs: Vec<(&str, &str)> = w.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_action(&refs, &env, ws.path(), &[])
    };

    let run = run_with(with(&p.url));
    assert_eq!(run.code, 0, "{}", run.log);
    assert!(
        run.log.contains(&format!(
            "greenlight-{}-{}.tar.gz matches SHA256SUMS",
            p.version, p.target
        )),
        "{}",
        run.log
    );
    assert!(
        run.out("greenlight-version")
            .starts_with(&format!("greenlight {} ", p.version)),
        "{:?}",
        run.outputs
    );
    assert_eq!(run.out("outcome"), "released", "{}", run.log);
    assert_eq!(run.out("live-release"), "v2");

    // Installed once: a later job on this runner finds it in the tool cache, no download.
    let mut w = with("file:///nonexistent");
    w.retain(|(k, _)| *k != "release" && *k != "image-id");
    w.push(("command", "status".into()));
    let run = run_with(w);
    assert_eq!(run.code, 0, "{}", run.log);
    assert!(run.log.contains("already in"), "{}", run.log);
    assert_eq!(run.out("outcome"), "settled");
    assert_eq!(run.out("live-release"), "v2");

    // A tarball that does not match SHA256SUMS is not installed, and greenlight does not run.
    let tampered = tempfile::tempdir().unwrap();
    let version_dir = tampered.path().join(format!("v{}", p.version));
    fs::create_dir_all(&version_dir).unwrap();
    let source = p.dir.join(format!("v{}", p.version));
    fs::copy(source.join("SHA256SUMS"), version_dir.join("SHA256SUMS")).unwrap();
    let tarball = format!("greenlight-{}-{}.tar.gz", p.version, p.target);
    let mut bytes = fs::read(source.join(&tarball)).unwrap();
    bytes.extend_from_slice(b"tampered");
    fs::write(version_dir.join(&tarball), bytes).unwrap();
    let empty_cache = tempfile::tempdir().unwrap();
    let mut env2 = s.aws_env();
    env2.push((
        "RUNNER_TOOL_CACHE",
        empty_cache.path().display().to_string(),
    ));
    let w = with(&format!("file://{}", tampered.path().display()));
    let refs: Vec<(&str, &str)> = w.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = run_action(&refs, &env2, ws.path(), &[]);
    assert_eq!(run.code, 1, "{}", run.log);
    assert_eq!(run.ran, ["install"], "the run step must not start");
    assert!(
        run.log.contains(&format!(
            "{tarball} does not match its SHA-256 in SHA256SUMS; not installed"
        )),
        "{}",
        run.log
    );
    assert!(
        !empty_cache
            .path()
            .join("greenlight")
            .join(&p.version)
            .join(&p.target)
            .join("greenlight")
            .exists(),
        "nothing installed"
    );

    // version "path" with no greenlight on PATH: a clear error.
    let run = run_action(
        &[("command", "status"), ("version", "path")],
        &env2,
        ws.path(),
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.log
            .contains("greenlight is not on PATH; set the action's version input"),
        "{}",
        run.log
    );
}

// ---------------------------------------------------------------------------------------------
// action.yml's env: mapping and the scripts agree

/// Every `GREENLIGHT_…` name in a script (uppercase letters, digits and `_`).
fn greenlight_vars(script: &str) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    let bytes = script.as_bytes();
    let mut i = 0;
    while let Some(at) = script[i..].find("GREENLIGHT_") {
        let start = i + at;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + "GREENLIGHT_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if !preceded && !script[start..end].ends_with('_') {
            found.insert(script[start..end].to_owned());
        }
        i = end;
    }
    found
}

#[test]
fn action_yml_env_mapping_and_scripts_agree() {
    let action = action_yml();
    let inputs: Vec<String> = action["inputs"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut used_inputs = std::collections::BTreeSet::new();
    let mut written_outputs: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for step in action["runs"]["steps"].as_array().unwrap() {
        let id = s(&step["id"]);
        let run = s(&step["run"]);
        // The run line names one script under action/.
        let script_rel = run
            .split('"')
            .find_map(|part| part.strip_prefix("$GREENLIGHT_ACTION_PATH/"))
            .unwrap_or_else(|| panic!("step {id}: run does not name a script: {run}"));
        let script = fs::read_to_string(root().join(script_rel))
            .unwrap_or_else(|e| panic!("step {id}: {script_rel}: {e}"));
        let env: BTreeMap<String, String> = step["env"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), s(v).to_owned()))
            .collect();
        for (var, value) in &env {
            // One expression per variable, naming an input, the action's path or a step output.
            let expr = value
                .strip_prefix("${{")
                .and_then(|v| v.strip_suffix("}}"))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{id}: {var} is not one expression: {value}"));
            if let Some(input) = expr.strip_prefix("inputs.") {
                assert!(
                    inputs.iter().any(|i| i == input),
                    "{id}: {var}: no input {input}"
                );
                used_inputs.insert(input.to_owned());
                // GitHub's INPUT_<NAME> convention: GREENLIGHT_INPUT_<NAME>, dashes as _.
                assert_eq!(
                    *var,
                    format!(
                        "GREENLIGHT_INPUT_{}",
                        input.to_uppercase().replace('-', "_")
                    ),
                    "{id}"
                );
            }
            // Every variable the step sets is read by its script or its run line.
            assert!(
                script.contains(&format!("${var}"))
                    || script.contains(&format!("${{{var}"))
                    || run.contains(&format!("${var}")),
                "{id}: {var} is set in action.yml but {script_rel} never reads it"
            );
        }
        // Every GREENLIGHT_INPUT_*/GREENLIGHT_BIN/GREENLIGHT_ACTION_PATH the script reads is set
        // by action.yml (greenlight's own GREENLIGHT_CONFIG etc. are not the action's).
        for var in greenlight_vars(&script) {
            if var.starts_with("GREENLIGHT_INPUT_")
                || var == "GREENLIGHT_BIN"
                || var == "GREENLIGHT_ACTION_PATH"
            {
                assert!(
                    env.contains_key(&var),
                    "{script_rel} reads {var} but action.yml's step {id} does not set it"
                );
            }
        }
        // The outputs the script writes: `output NAME …` lines.
        let outputs = script
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("output "))
            .filter_map(|rest| rest.split_whitespace().next())
            .filter(|name| !name.starts_with('"') && !name.starts_with('$'))
            .map(str::to_owned)
            .collect();
        written_outputs.insert(id.to_owned(), outputs);
    }
    for input in &inputs {
        assert!(
            used_inputs.contains(input),
            "input {input} is declared but no step uses it"
        );
    }
    // run.sh's dynamic loop over inputs names real ones.
    let run_sh = fs::read_to_string(root().join("action/run.sh")).unwrap();
    let line = run_sh
        .lines()
        .find(|l| l.trim_start().starts_with("for input in "))
        .expect("run.sh's loop over inputs");
    for name in line
        .trim_start()
        .trim_start_matches("for input in ")
        .trim_end_matches("; do")
        .split_whitespace()
    {
        assert!(
            inputs.iter().any(|i| i == name),
            "run.sh checks unknown input {name}"
        );
    }
    // Every action output reads a step output its script writes.
    for (name, spec) in action["outputs"].as_object().unwrap() {
        let value = s(&spec["value"]);
        let path = value
            .trim_start_matches("${{")
            .trim_end_matches("}}")
            .trim()
            .strip_prefix("steps.")
            .unwrap_or_else(|| panic!("output {name}: {value}"));
        let (id, output) = path.split_once(".outputs.").unwrap();
        assert!(
            written_outputs.get(id).is_some_and(|w| w.contains(output)),
            "output {name} reads steps.{id}.outputs.{output}, which step {id}'s script never writes ({written_outputs:?})"
        );
    }
    assert!(written_outputs["run"].len() >= 7, "{written_outputs:?}");
}

#[test]
fn examples_install_this_version() {
    let version = env!("CARGO_PKG_VERSION");
    for (file, needle) in [
        (
            "examples/github/deploy.yml",
            format!("version: {version}\n"),
        ),
        (
            "examples/github/operate.yml",
            format!("version: {version}\n"),
        ),
        (
            "examples/codebuild/buildspec.yml",
            format!("GREENLIGHT_VERSION: \"{version}\""),
        ),
        (
            "examples/codebuild/pipeline.yaml",
            format!("Default: \"{version}\""),
        ),
        (
            "examples/jenkins/Jenkinsfile",
            format!("GREENLIGHT_VERSION = '{version}'"),
        ),
    ] {
        let content = fs::read_to_string(root().join(file)).unwrap();
        assert!(
            content.contains(&needle),
            "{file} should install {version} ({needle:?})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Validation against schemas, linters and parsers (each shown to reject a broken copy)

/// Runs check-jsonschema with a built-in schema over `files`; returns the files it rejected.
fn schema_failures(schema: &str, files: &[PathBuf]) -> (Vec<String>, String) {
    let venv = lint_tools();
    let out = Command::new(venv.join("bin/check-jsonschema"))
        .args(["--output-format", "json", "--builtin-schema", schema])
        .args(files)
        .output()
        .expect("run check-jsonschema");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check-jsonschema output: {e}\n{}", text(&out)));
    let mut failed: Vec<String> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(report["parse_errors"].as_array().into_iter().flatten())
        .map(|e| s(&e["filename"]).to_owned())
        .collect();
    failed.sort();
    failed.dedup();
    assert_eq!(
        out.status.success(),
        failed.is_empty(),
        "exit status and report disagree:\n{}",
        text(&out)
    );
    (failed, text(&out))
}

/// A copy of `file` in `dir` with `from` replaced by `to` (which must occur).
fn broken_copy(dir: &Path, file: &str, from: &str, to: &str) -> PathBuf {
    let content = fs::read_to_string(root().join(file)).unwrap();
    assert!(content.contains(from), "{file} has no {from:?}");
    let name = Path::new(file).file_name().unwrap().to_string_lossy();
    let path = dir.join(format!("broken-{name}"));
    fs::write(&path, content.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn action_yml_and_workflows_match_githubs_schemas() {
    let tmp = tempfile::tempdir().unwrap();
    let broken_action = broken_copy(
        tmp.path(),
        "action.yml",
        "using: composite",
        "using: compose",
    );
    let (failed, log) = schema_failures(
        "vendor.github-actions",
        &[root().join("action.yml"), broken_action.clone()],
    );
    assert_eq!(failed, [broken_action.display().to_string()], "{log}");

    let workflows = [
        root().join("examples/github/deploy.yml"),
        root().join("examples/github/operate.yml"),
        root().join(".github/workflows/release.yml"),
    ];
    let broken_workflow = broken_copy(
        tmp.path(),
        "examples/github/deploy.yml",
        "runs-on: ubuntu-latest",
        "run-on: ubuntu-latest",
    );
    let mut files = workflows.to_vec();
    files.push(broken_workflow.clone());
    let (failed, log) = schema_failures("vendor.github-workflows", &files);
    assert_eq!(failed, [broken_workflow.display().to_string()], "{log}");
    assert!(log.contains("'runs-on' is a required property"), "{log}");

    // What the recipe promises: OIDC, a per-service concurrency group that queues.
    let deploy = fs::read_to_string(&workflows[0]).unwrap();
    for needle in [
        "id-token: write",
        "aws-actions/configure-aws-credentials@",
        "role-to-assume:",
        "group: greenlight-${{ vars.GREENLIGHT_SERVICE",
        "cancel-in-progress: false",
        "needs.deploy.outputs.outcome == 'paused'",
    ] {
        assert!(deploy.contains(needle), "deploy.yml: {needle}");
    }
}

#[test]
fn codepipeline_template_passes_cfn_lint() {
    venv();
    let tmp = tempfile::tempdir().unwrap();
    let broken = broken_copy(
        tmp.path(),
        "examples/codebuild/pipeline.yaml",
        "ExecutionMode: QUEUED",
        "ExecutionMode: QUEUE",
    );
    let template = root().join("examples/codebuild/pipeline.yaml");
    let out = Command::new("bash")
        .arg(root().join("infra/lint.sh"))
        .arg(&template)
        .arg(&broken)
        .output()
        .expect("run infra/lint.sh");
    let log = text(&out);
    assert!(!out.status.success(), "the broken copy must fail:\n{log}");
    assert!(log.contains("on 2 template(s)"), "{log}");
    assert!(log.contains("'QUEUE' is not one of"), "{log}");
    let findings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(".yaml:") && !l.starts_with("lint.sh"))
        .collect();
    assert!(!findings.is_empty(), "{log}");
    assert!(
        findings
            .iter()
            .all(|l| l.starts_with(&broken.display().to_string())),
        "pipeline.yaml itself has findings:\n{log}"
    );
    // The buildspec the project names is the one in this folder, and the stage runs it.
    let t = yaml(&template);
    assert_eq!(
        s(&t["Parameters"]["BuildSpecPath"]["Default"]),
        "buildspec.yml"
    );
    let stages: Vec<&str> = t["Resources"]["Pipeline"]["Properties"]["Stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| s(&st["Name"]))
        .collect();
    assert_eq!(stages, ["Source", "Deploy", "Promote"]);
}

/// Problems with a buildspec, against AWS's documented buildspec 0.2 syntax (CodeBuild User
/// Guide, "Build specification reference": top-level version, run-as, env, proxy, batch,
/// phases, reports, artifacts, cache; env's shell, variables, parameter-store,
/// exported-variables, secrets-manager, git-credential-helper; phases install, pre_build,
/// build, post_build, each with run-as, on-failure, runtime-versions (install only), commands
/// (required), finally).
fn buildspec_problems(spec: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let keys =
        |v: &Value, at: &str, allowed: &[&str], problems: &mut Vec<String>| match v.as_object() {
            Some(map) => {
                for k in map.keys() {
                    if !allowed.contains(&k.as_str()) {
                        problems.push(format!("{at}: unknown key {k}"));
                    }
                }
            }
            None => problems.push(format!("{at}: not a mapping")),
        };
    let strings = |v: &Value, at: &str, problems: &mut Vec<String>| {
        if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            problems.push(format!("{at}: not a list of strings"));
        }
    };
    keys(
        spec,
        "buildspec",
        &[
            "version",
            "run-as",
            "env",
            "proxy",
            "batch",
            "phases",
            "reports",
            "artifacts",
            "cache",
        ],
        &mut problems,
    );
    if spec["version"] != json!(0.2) && spec["version"] != json!("0.2") {
        problems.push(format!("version: {} (0.2 expected)", spec["version"]));
    }
    if let Some(env) = spec.get("env") {
        keys(
            env,
            "env",
            &[
                "shell",
                "variables",
                "parameter-store",
                "exported-variables",
                "secrets-manager",
                "git-credential-helper",
            ],
            &mut problems,
        );
        if let Some(shell) = env.get("shell")
            && !["bash", "/bin/sh", "sh", "powershell.exe", "cmd.exe", "pwsh"]
                .contains(&shell.as_str().unwrap_or_default())
        {
            problems.push(format!("env.shell: {shell}"));
        }
        for map in ["variables", "parameter-store", "secrets-manager"] {
            if let Some(m) = env.get(map)
                && !m
                    .as_object()
                    .is_some_and(|o| o.values().all(|v| v.is_string()))
            {
                problems.push(format!("env.{map}: values must be strings (quote them)"));
            }
        }
        if let Some(e) = env.get("exported-variables") {
            strings(e, "env.exported-variables", &mut problems);
        }
    }
    match spec.get("phases") {
        None => problems.push("phases: missing".into()),
        Some(phases) => {
            keys(
                phases,
                "phases",
                &["install", "pre_build", "build", "post_build"],
                &mut problems,
            );
            for (name, phase) in phases.as_object().into_iter().flatten() {
                let mut allowed = vec!["run-as", "on-failure", "commands", "finally"];
                if name == "install" {
                    allowed.push("runtime-versions");
                }
                keys(phase, &format!("phases.{name}"), &allowed, &mut problems);
                match phase.get("commands") {
                    Some(c) => strings(c, &format!("phases.{name}.commands"), &mut problems),
                    None => problems.push(format!("phases.{name}.commands: missing")),
                }
                if let Some(f) = phase.get("finally") {
                    strings(f, &format!("phases.{name}.finally"), &mut problems);
                }
            }
        }
    }
    if let Some(artifacts) = spec.get("artifacts") {
        keys(
            artifacts,
            "artifacts",
            &[
                "files",
                "name",
                "discard-paths",
                "base-directory",
                "exclude-paths",
                "enable-symlinks",
                "s3-prefix",
                "secondary-artifacts",
            ],
            &mut problems,
        );
        match artifacts.get("files") {
            Some(f) => strings(f, "artifacts.files", &mut problems),
            None => problems.push("artifacts.files: missing".into()),
        }
    }
    if let Some(cache) = spec.get("cache") {
        keys(
            cache,
            "cache",
            &["paths", "key", "fallback-keys", "action"],
            &mut problems,
        );
    }
    problems
}

#[test]
fn buildspec_has_only_documented_keys() {
    let spec = buildspec();
    assert_eq!(buildspec_problems(spec), Vec::<String>::new());
    // Every exported variable is exported by the build commands.
    let build = spec["phases"]["build"]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(s)
        .collect::<Vec<_>>()
        .join("\n");
    for var in spec["env"]["exported-variables"].as_array().unwrap() {
        let var = s(var);
        assert!(build.contains(&format!("{var}=")), "{var} is never set");
        assert!(
            build.contains("export OUTCOME EXIT_CODE RELEASE_LIVE"),
            "{var}"
        );
    }

    // The check bites: a misspelt phase, a phase without commands, a wrong version.
    let mut broken = spec.clone();
    let build_phase = broken["phases"]["build"].take();
    broken["phases"].as_object_mut().unwrap().remove("build");
    broken["phases"]["deploy"] = build_phase;
    broken["phases"]["install"]["command"] = broken["phases"]["install"]["commands"].take();
    broken["phases"]["install"]
        .as_object_mut()
        .unwrap()
        .remove("commands");
    broken["version"] = json!(0.3);
    broken["env"]["variables"]["GREENLIGHT_VERSION"] = json!(0.1);
    let problems = buildspec_problems(&broken);
    for expected in [
        "phases: unknown key deploy",
        "phases.install: unknown key command",
        "phases.install.commands: missing",
        "version: 0.3 (0.2 expected)",
        "env.variables: values must be strings (quote them)",
    ] {
        assert!(
            problems.iter().any(|p| p == expected),
            "{expected} not in {problems:?}"
        );
    }
}

/// What the Groovy compiler made of the Jenkinsfile (and of a broken copy): one object per
/// file, {ok, error} or {ok, steps: [{stage, line, script, constant}], environment: {K: v}}.
fn jenkins_parse() -> &'static (Value, Value) {
    static PARSED: OnceLock<(Value, Value)> = OnceLock::new();
    PARSED.get_or_init(|| {
        let venv = lint_tools();
        let tmp = tempfile::tempdir().unwrap();
        let extractor = tmp.path().join("sh_steps.groovy");
        fs::write(&extractor, GROOVY_SH_STEPS).unwrap();
        // A missing `)`: the kind of slip a YAML-only check would never see.
        let broken = broken_copy(
            tmp.path(),
            "examples/jenkins/Jenkinsfile",
            "timeout(time: 90, unit: 'MINUTES')",
            "timeout(time: 90, unit: 'MINUTES'",
        );
        let out = Command::new("java")
            .arg("-cp")
            .arg(venv.join("share/greenlight-lint/groovy/*"))
            .arg("groovy.ui.GroovyMain")
            .arg(&extractor)
            .arg(root().join("examples/jenkins/Jenkinsfile"))
            .arg(&broken)
            .output()
            .expect("run java (the Groovy compiler)");
        assert!(out.status.success(), "{}", text(&out));
        let results: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        (results[0].clone(), results[1].clone())
    })
}

/// Parses files with the Groovy compiler (through semantic analysis) and prints, as JSON, each
/// file's `sh` steps (stage, line, the script if a constant string) and its `environment {}`
/// constants.
const GROOVY_SH_STEPS: &str = r#"
import org.codehaus.groovy.ast.CodeVisitorSupport
import org.codehaus.groovy.ast.expr.*
import org.codehaus.groovy.control.CompilationFailedException
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.Phases
import groovy.json.JsonOutput

class Steps extends CodeVisitorSupport {
    List stages = []
    List found = []
    Map environment = [:]
    boolean inEnvironment = false
    static String constant(Expression e) {
        (e instanceof ConstantExpression && e.value instanceof String) ? e.value : null
    }
    void visitMethodCallExpression(MethodCallExpression call) {
        def name = call.methodAsString
        def args = call.arguments instanceof TupleExpression ? call.arguments.expressions : []
        if (name == 'stage' && args && constant(args[0]) != null) {
            stages.push(constant(args[0]))
            super.visitMethodCallExpression(call)
            stages.pop()
            return
        }
        if (name == 'environment') {
            inEnvironment = true
            super.visitMethodCallExpression(call)
            inEnvironment = false
            return
        }
        if (name == 'sh') {
            def script = null
            def first = args ? args[0] : null
            if (first instanceof MapExpression) {
                def entry = first.mapEntryExpressions.find { constant(it.keyExpression) == 'script' }
                script = entry ? constant(entry.valueExpression) : null
            } else if (first != null) {
                script = constant(first)
            }
            found << [stage: stages ? stages[-1] : null, line: call.lineNumber, script: script,
                      constant: script != null]
        }
        super.visitMethodCallExpression(call)
    }
    void visitBinaryExpression(BinaryExpression e) {
        if (inEnvironment && e.operation.text == '=' && e.leftExpression instanceof VariableExpression) {
            environment[e.leftExpression.name] = constant(e.rightExpression)
        }
        super.visitBinaryExpression(e)
    }
}

def results = args.collect { path ->
    def unit = new CompilationUnit()
    def source = unit.addSource(new File(path))
    try {
        unit.compile(Phases.SEMANTIC_ANALYSIS)
    } catch (CompilationFailedException e) {
        return [file: path, ok: false, error: e.message]
    }
    def visitor = new Steps()
    source.AST.statementBlock.visit(visitor)
    source.AST.methods.each { it.code?.visit(visitor) }
    [file: path, ok: true, steps: visitor.found, environment: visitor.environment]
}
println JsonOutput.toJson(results)
"#;

#[test]
fn jenkinsfile_parses_with_the_groovy_compiler() {
    let (good, broken) = jenkins_parse();
    assert_eq!(good["ok"], true, "{good}");
    assert_eq!(
        broken["ok"], false,
        "the broken copy must not parse: {broken}"
    );
    assert!(
        s(&broken["error"]).contains("Unexpected input"),
        "{}",
        broken["error"]
    );
    let steps = good["steps"].as_array().unwrap();
    let stages: Vec<&str> = steps.iter().map(|st| s(&st["stage"])).collect();
    assert_eq!(stages, ["Install greenlight", "Deploy", "Promote"]);
    for step in steps {
        assert_eq!(
            step["constant"], true,
            "a sh step with Groovy interpolation: {step}"
        );
        assert!(
            s(&step["script"]).starts_with("#!/usr/bin/env bash\n"),
            "Jenkins runs a script without #! with /bin/sh: {step}"
        );
    }
    assert_eq!(good["environment"]["GREENLIGHT_CONFIG"], "greenlight.toml");
}

#[test]
fn shell_scripts_and_steps_pass_shellcheck() {
    let venv = lint_tools();
    let tmp = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = [
        "action/install.sh",
        "action/run.sh",
        "scripts/release.sh",
        "examples/lint-tools.sh",
    ]
    .iter()
    .map(|f| root().join(f))
    .collect();
    // The buildspec's commands, as the one bash script CodeBuild runs them in.
    let spec = buildspec();
    let mut buildspec = String::from("#!/usr/bin/env bash\n");
    for (name, value) in spec["env"]["variables"].as_object().unwrap() {
        buildspec.push_str(&format!("export {name}={}\n", s(value)));
    }
    for phase in ["install", "build"] {
        for command in spec["phases"][phase]["commands"].as_array().unwrap() {
            buildspec.push_str(s(command));
            buildspec.push('\n');
        }
    }
    let path = tmp.path().join("buildspec-commands.sh");
    fs::write(&path, buildspec).unwrap();
    files.push(path);
    // The Jenkinsfile's sh steps, each a script.
    let (good, _) = jenkins_parse();
    for (i, step) in good["steps"].as_array().unwrap().iter().enumerate() {
        let path = tmp.path().join(format!("jenkins-sh-{i}.sh"));
        fs::write(&path, s(&step["script"])).unwrap();
        files.push(path);
    }
    // A broken copy: unquoted array expansion (SC2068).
    let broken = broken_copy(
        tmp.path(),
        "action/run.sh",
        "\"$bin\" \"${args[@]}\" | tee",
        "$bin ${args[@]} | tee",
    );
    files.push(broken.clone());

    let out = Command::new(venv.join("bin/shellcheck"))
        .args(["--format", "json1", "--external-sources"])
        .args(&files)
        .output()
        .expect("run shellcheck");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("shellcheck output: {e}\n{}", text(&out)));
    let comments = report["comments"].as_array().unwrap();
    let mut in_files: Vec<&str> = comments.iter().map(|c| s(&c["file"])).collect();
    in_files.dedup();
    let broken_name = broken.display().to_string();
    assert_eq!(
        in_files,
        [broken_name.as_str()],
        "shellcheck findings:\n{}",
        serde_json::to_string_pretty(comments).unwrap()
    );
    assert!(comments.iter().any(|c| c["code"] == 2068), "{comments:?}");
}

// ---------------------------------------------------------------------------------------------
// The buildspec and the Jenkinsfile, run against the emulator

struct Ran {
    code: i32,
    log: String,
    exported: BTreeMap<String, String>,
}

/// Runs the buildspec's install and build phases as CodeBuild does with `env: shell: bash`: every
/// command in one shell, one after the other; the first that fails (non-zero status) ends the
/// build with it. Environment: the buildspec's variables, overridden by `env`.
fn run_buildspec(env: &[(&str, String)], cwd: &Path) -> Ran {
    let spec = buildspec();
    assert_eq!(s(&spec["env"]["shell"]), "bash");
    let tmp = tempfile::tempdir().unwrap();
    let exports = tmp.path().join("exported");
    let exported: Vec<&str> = spec["env"]["exported-variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    let mut script = format!(
        "__export() {{ for v in {}; do printf '%s=%s\\n' \"$v\" \"${{!v-}}\"; done >'{}'; }}\n",
        exported.join(" "),
        exports.display()
    );
    for phase in ["install", "pre_build", "build", "post_build"] {
        let commands = spec["phases"][phase]["commands"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (i, command) in commands.iter().enumerate() {
            script.push_str(&format!(
                "{{\n{}\n}}\n__s=$?\nif [ \"$__s\" -ne 0 ]; then echo \"[codebuild] phase {phase}: command {} failed with exit status $__s\" >&2; __export; exit \"$__s\"; fi\n",
                s(command),
                i + 1
            ));
        }
    }
    script.push_str("__export\n");
    let file = tmp.path().join("codebuild.sh");
    fs::write(&file, script).unwrap();
    let mut cmd = assert_cmd::Command::new("bash");
    cmd.arg(&file)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", SYSTEM_PATH)
        .env("HOME", tmp.path())
        .env("CODEBUILD_SRC_DIR", cwd)
        .timeout(Duration::from_secs(180));
    for (k, v) in spec["env"]["variables"].as_object().unwrap() {
        cmd.env(k, s(v));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the buildspec");
    Ran {
        code: out.status.code().unwrap_or(-1),
        log: text(&out),
        exported: parse_github_output(&fs::read_to_string(&exports).unwrap_or_default()),
    }
}

fn install_env(p: &Packaged, dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("GREENLIGHT_VERSION", p.version.clone()),
        ("GREENLIGHT_DOWNLOAD_URL", p.url.clone()),
        ("GREENLIGHT_TARGET", p.target.clone()),
        (
            "GREENLIGHT_INSTALL_DIR",
            dir.join("bin").display().to_string(),
        ),
    ]
}

#[test]
fn buildspec_installs_and_deploys_on_the_emulator() {
    let p = packaged();
    let s = session();
    let seeded = s.seed("codebuild", &[]);
    let src = tempfile::tempdir().unwrap();
    let listener = seeded.str("listener_arn");
    let tg_b = seeded.target_group(1);
    let base = || {
        let mut env = s.aws_env();
        env.extend(install_env(p, src.path()));
        env.push(("GREENLIGHT_CONFIG", config(&seeded)));
        env
    };

    let mut env = base();
    env.push(("RELEASE", "v2".into()));
    env.push(("IMAGE_ID", seeded.image(1)));
    let ran = run_buildspec(&env, src.path());
    assert_eq!(ran.code, 0, "{}", ran.log);
    assert!(
        ran.log.contains(&format!("greenlight {} ", p.version)),
        "{}",
        ran.log
    );
    assert!(
        ran.log.contains(": OK"),
        "sha256sum checked the tarball: {}",
        ran.log
    );
    assert_eq!(ran.exported["OUTCOME"], "released", "{}", ran.log);
    assert_eq!(ran.exported["EXIT_CODE"], "0");
    assert_eq!(ran.exported["RELEASE_LIVE"], "v2");
    if s.emulator.hooks {
        assert_eq!(share(&s, &listener, &tg_b), 100);
    }
    let artifact = fs::read_to_string(src.path().join("greenlight-events.jsonl")).unwrap();
    assert!(
        artifact
            .lines()
            .last()
            .unwrap()
            .contains(r#""event":"released""#),
        "{artifact}"
    );

    // rollback through the same buildspec.
    let mut env = base();
    env.push(("GREENLIGHT_COMMAND", "rollback".into()));
    let ran = run_buildspec(&env, src.path());
    assert_eq!(ran.code, 0, "{}", ran.log);
    assert_eq!(ran.exported["OUTCOME"], "rolled_back");
    assert_eq!(ran.exported["RELEASE_LIVE"], seeded.fleet("blue"));

    // A failing deploy fails the build with greenlight's exit code, outcome exported.
    let mut env = base();
    env.push(("RELEASE", "v3".into()));
    env.push(("IMAGE_ID", "ami-00000000000000000".into()));
    let ran = run_buildspec(&env, src.path());
    assert_eq!(ran.code, 2, "{}", ran.log);
    assert_eq!(ran.exported["OUTCOME"], "error");
    assert_eq!(ran.exported["EXIT_CODE"], "2");
    assert!(
        ran.log.contains("outcome error, exit code 2"),
        "{}",
        ran.log
    );
    assert!(
        ran.log.contains("command 6 failed with exit status 2"),
        "{}",
        ran.log
    );

    // Without RELEASE the build stops at its first command, before greenlight runs.
    let ran = run_buildspec(&base(), src.path());
    assert_eq!(ran.code, 1, "{}", ran.log);
    assert!(
        ran.log.contains("RELEASE is required to deploy"),
        "{}",
        ran.log
    );
    assert!(
        ran.log.contains("phase build: command 1 failed"),
        "{}",
        ran.log
    );
}

/// Runs one `sh` step of the Jenkinsfile as Jenkins does with a `#!` line: the script as an
/// executable file, in the workspace, with the job's environment.
fn run_jenkins_sh(stage: &str, env: &[(&str, String)], workspace: &Path) -> Ran {
    let (good, _) = jenkins_parse();
    let steps: Vec<&Value> = good["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| st["stage"] == stage)
        .collect();
    assert_eq!(steps.len(), 1, "stage {stage}");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("script.sh");
    fs::write(&file, s(&steps[0]["script"])).unwrap();
    let chmod = Command::new("chmod").arg("+x").arg(&file).status().unwrap();
    assert!(chmod.success());
    let mut cmd = assert_cmd::Command::new(&file);
    cmd.current_dir(workspace)
        .env_clear()
        .env("PATH", SYSTEM_PATH)
        .env("HOME", tmp.path())
        .env("WORKSPACE", workspace)
        .timeout(Duration::from_secs(180));
    for (k, v) in good["environment"].as_object().unwrap() {
        if let Some(v) = v.as_str() {
            cmd.env(k, v);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run a sh step");
    Ran {
        code: out.status.code().unwrap_or(-1),
        log: text(&out),
        exported: BTreeMap::new(),
    }
}

#[test]
fn jenkinsfile_sh_steps_deploy_a_canary_and_promote_it_on_the_emulator() {
    let p = packaged();
    let s = session();
    let seeded = s.seed("jenkins", &[]);
    add_canary(&seeded);
    let ws = tempfile::tempdir().unwrap();
    let listener = seeded.str("listener_arn");
    let tg_b = seeded.target_group(1);
    let base = |release: &str, image: &str, strategy: &str| {
        let mut env = s.aws_env();
        env.extend(install_env(p, ws.path()));
        env.push(("GREENLIGHT_CONFIG", config(&seeded)));
        env.push(("RELEASE", release.to_owned()));
        env.push(("IMAGE_ID", image.to_owned()));
        env.push(("STRATEGY", strategy.to_owned()));
        env
    };
    let image = seeded.image(1);
    let env = base("v2", &image, "canary");

    let ran = run_jenkins_sh("Install greenlight", &env, ws.path());
    assert_eq!(ran.code, 0, "{}", ran.log);
    assert!(
        ran.log.contains(&format!("greenlight {} ", p.version)),
        "{}",
        ran.log
    );

    let ran = run_jenkins_sh("Deploy", &env, ws.path());
    assert_eq!(ran.code, 0, "{}", ran.log);
    let outcome = fs::read_to_string(ws.path().join("greenlight-outcome.txt")).unwrap();
    // The Promote stage's `when` reads this file.
    assert_eq!(outcome.trim(), "paused", "{}", ran.log);
    if s.emulator.hooks {
        assert_eq!(share(&s, &listener, &tg_b), 10);
    }

    let ran = run_jenkins_sh("Promote", &env, ws.path());
    assert_eq!(ran.code, 0, "{}", ran.log);
    let promoted = fs::read_to_string(ws.path().join("greenlight-promote.jsonl")).unwrap();
    assert!(
        promoted
            .lines()
            .last()
            .unwrap()
            .contains(r#""event":"released""#),
        "{promoted}"
    );
    if s.emulator.hooks {
        assert_eq!(share(&s, &listener, &tg_b), 100);
    }

    // A failing deploy fails the stage with greenlight's exit code; Promote's `when` is false.
    let env = base("v3", "ami-00000000000000000", "bluegreen");
    let ran = run_jenkins_sh("Deploy", &env, ws.path());
    assert_eq!(ran.code, 2, "{}", ran.log);
    let outcome = fs::read_to_string(ws.path().join("greenlight-outcome.txt")).unwrap();
    assert_eq!(outcome.trim(), "error");
    assert!(
        ran.log.contains("greenlight deploy: error, exit code 2"),
        "{}",
        ran.log
    );
}
