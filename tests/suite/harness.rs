//! The AWS emulator for end-to-end tests: one per test binary, started on a free loopback
//! port on first use, reset before each test, and gone when the test process ends (it exits
//! when its stdin closes). With `GREENLIGHT_TEST_ENDPOINT` set, tests use that endpoint instead
//! (LocalStack, say) and skip the ones that need the emulator's test-only hooks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::Action;
use serde_json::Value;

pub const REGION: &str = "us-east-1";

pub struct Emulator {
    pub endpoint: String,
    /// Whether the endpoint is greenlight's own emulator, with reset and scripted health.
    pub hooks: bool,
    // Kept open: the emulator exits when this pipe closes, i.e. when the test process ends.
    _stdin: Option<Mutex<ChildStdin>>,
    _child: Option<Mutex<Child>>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

/// The emulator, serialised: moto is not thread-safe and tests share its state.
pub struct Session {
    pub emulator: &'static Emulator,
    _guard: MutexGuard<'static, ()>,
}

/// Starts (once) and resets the emulator, and holds it for one test.
pub fn session() -> Session {
    let guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let emulator = EMULATOR.get_or_init(start);
    if emulator.hooks {
        post(&emulator.endpoint, "/moto-api/reset", "").expect("reset the emulator");
    }
    Session {
        emulator,
        _guard: guard,
    }
}

/// The project's emulator venv, installed by `localstack/install.sh` on first use.
/// A YAML file as JSON, read by a plain YAML parser (PyYAML's safe_load, YAML 1.1: `yes` and
/// `on` are true; no `!Ref`-style tags), in the project venv.
pub fn yaml(path: &Path) -> Value {
    let out = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{} is not plain YAML: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

pub fn venv() -> PathBuf {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let install = Command::new("bash")
            .arg(root().join("localstack/install.sh"))
            .status()
            .expect("run localstack/install.sh");
        assert!(install.success(), "localstack/install.sh failed");
    });
    root().join("localstack/.venv")
}

fn start() -> Emulator {
    if let Ok(endpoint) = std::env::var("GREENLIGHT_TEST_ENDPOINT") {
        return Emulator {
            endpoint,
            hooks: false,
            _stdin: None,
            _child: None,
        };
    }
    // moto's request recorder writes here; the adapter tests read it to see what was sent.
    let recording = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("moto-recording-{}.jsonl", std::process::id()));
    let mut child = Command::new(venv().join("bin/python"))
        .env("MOTO_RECORDER_FILEPATH", &recording)
        .arg(root().join("localstack/emulator.py"))
        // Targets of a target group no listener uses report `unused`, as on AWS.
        .args(["--port", "0", "--exit-on-stdin-eof", "--report-not-in-use"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start localstack/emulator.py");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let endpoint = loop {
        let line = lines
            .next()
            .expect("the emulator exited before it was ready")
            .expect("read the emulator's stdout");
        if let Some(url) = line.strip_prefix("GREENLIGHT_EMULATOR_READY ") {
            break url.trim().to_owned();
        }
    };
    // Keep draining stdout so the emulator never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let stdin = child.stdin.take().expect("piped stdin");
    Emulator {
        endpoint,
        hooks: true,
        _stdin: Some(Mutex::new(stdin)),
        _child: Some(Mutex::new(child)),
    }
}

/// A minimal HTTP/1.1 request to the emulator on loopback; returns the status and body.
pub fn request(
    endpoint: &str,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let address = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = TcpStream::connect(&address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn post(endpoint: &str, path: &str, body: &str) -> std::io::Result<String> {
    let (status, body) = request(endpoint, "POST", path, body)?;
    assert!((200..300).contains(&status), "POST {path}: {status} {body}");
    Ok(body)
}

/// A service seeded by `localstack/seed.py`, with its config written to a temp dir.
pub struct Seeded {
    /// The service name: as asked on greenlight's emulator (reset before each test), made
    /// unique per run on an endpoint that keeps its state between runs.
    pub service: String,
    pub info: Value,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Seeded {
    /// The name of the service's fleet for `release` (`blue` for the seeded one).
    pub fn fleet(&self, release: &str) -> String {
        format!("{}-{release}", self.service)
    }

    pub fn str(&self, key: &str) -> String {
        self.info[key]
            .as_str()
            .unwrap_or_else(|| panic!("seed output has no {key}: {}", self.info))
            .to_owned()
    }

    pub fn target_group(&self, slot: usize) -> String {
        self.info["target_groups"][slot]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn image(&self, n: usize) -> String {
        self.info["images"][n].as_str().unwrap().to_owned()
    }
}

impl Session {
    fn python(&self) -> PathBuf {
        // seed.py needs boto3, which the emulator's venv has whichever endpoint is used.
        venv().join("bin/python")
    }

    /// Seeds a sample service named `service` with `extra` seed.py flags.
    pub fn seed(&self, service: &str, extra: &[&str]) -> Seeded {
        let service = if self.emulator.hooks {
            service.to_owned()
        } else {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() % 1_000_000)
                .unwrap_or_default();
            format!("{service}-{stamp}")
        };
        let service = service.as_str();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("greenlight.toml");
        let output = Command::new(self.python())
            .arg(root().join("localstack/seed.py"))
            .args(["--service", service, "--config"])
            .arg(&config)
            .args(extra)
            .envs(self.aws_env())
            .output()
            .expect("run seed.py");
        assert!(
            output.status.success(),
            "seed.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let info: Value = serde_json::from_slice(&output.stdout).expect("seed.py prints JSON");
        // Poll often: the emulator answers in milliseconds and tests should not idle.
        let text = std::fs::read_to_string(&config).expect("seeded config");
        let text = text
            .lines()
            .map(|line| {
                if line.starts_with("interval") {
                    "interval = \"200ms\""
                } else {
                    line
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&config, text + "\n").expect("rewrite config");
        Seeded {
            service: service.to_owned(),
            info,
            config,
            _dir: dir,
        }
    }

    /// The environment a user of the emulator sets, and nothing from the developer's own AWS setup.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.emulator.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }

    /// The greenlight binary, set up as a user on the emulator would run it.
    pub fn greenlight(&self, config: &Path) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("greenlight").expect("binary built");
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.aws_env())
            .arg("--config")
            .arg(config)
            .timeout(Duration::from_secs(180));
        cmd
    }

    /// Scripts the health of targets matching `selector` (emulator hook).
    pub fn script_health(&self, selector: Value, sequence: Value) {
        assert!(self.emulator.hooks, "needs greenlight's emulator");
        let mut body = selector;
        body["sequence"] = sequence;
        post(
            &self.emulator.endpoint,
            "/_greenlight/target-health",
            &body.to_string(),
        )
        .expect("script target health");
    }

    /// How many AWS requests the emulator has served so far (emulator hook): a mark to read the
    /// requests made after it with [`Session::requests_since`].
    pub fn request_mark(&self) -> usize {
        self.requests_since(usize::MAX).1
    }

    /// The AWS requests (service, action) the emulator served from `mark` on, and the total.
    pub fn requests_since(&self, mark: usize) -> (Vec<(String, String)>, usize) {
        assert!(self.emulator.hooks, "needs greenlight's emulator");
        let since = if mark == usize::MAX { 0 } else { mark };
        let (status, body) = request(
            &self.emulator.endpoint,
            "GET",
            &format!("/_greenlight/requests?since={since}"),
            "",
        )
        .expect("read the request log");
        assert_eq!(status, 200, "request log: {body}");
        let log: Value = serde_json::from_str(&body).expect("request log JSON");
        let total = log["total"].as_u64().expect("total") as usize;
        if mark == usize::MAX {
            return (Vec::new(), total);
        }
        let requests = log["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .map(|r| {
                (
                    r["service"].as_str().unwrap_or_default().to_owned(),
                    r["action"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        (requests, total)
    }

    /// The requests since `mark` that change something in AWS (anything not a read).
    pub fn mutations_since(&self, mark: usize) -> Vec<String> {
        self.requests_since(mark)
            .0
            .into_iter()
            .filter(|(_, action)| !is_read(action))
            .map(|(service, action)| format!("{service}:{action}"))
            .collect()
    }

    /// An SDK config for reading AWS state directly, independently of greenlight's adapter.
    pub async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.emulator.endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_autoscaling::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .load()
            .await
    }
}

/// AWS's read-only actions, by their names.
pub fn is_read(action: &str) -> bool {
    ["Describe", "Get", "List"]
        .iter()
        .any(|prefix| action.starts_with(prefix))
}

/// The forward action among a listener's or rule's actions, if it has one.
pub fn forward_action(actions: &[Action]) -> Option<&Action> {
    actions
        .iter()
        .find(|a| a.r#type().map(|t| t.as_str()) == Some("forward"))
}

/// (target group ARN, weight) of a forward action, read as AWS means it: a forward naming one
/// target group without a ForwardConfig, or a target group without a weight, has weight 1.
pub fn forwards_of(action: &Action) -> Vec<(String, i32)> {
    match action.forward_config() {
        Some(config) if !config.target_groups().is_empty() => config
            .target_groups()
            .iter()
            .map(|t| {
                (
                    t.target_group_arn().unwrap_or_default().to_owned(),
                    t.weight().unwrap_or(1),
                )
            })
            .collect(),
        _ => vec![(action.target_group_arn().unwrap_or_default().to_owned(), 1)],
    }
}
