//! The nginx router backend, as a user runs it: the real binary, real HTTP backends on
//! loopback that greenlight health-checks itself, and the include it owns. Most tests stand in
//! for nginx with a reload command that records every include it is asked to load, so that
//! the routing nginx would have had at every moment can be checked; one runs real nginx.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A backend: answers `/healthz` with `health` and anything else with `status`, naming itself.
struct Backend {
    port: u16,
    health: Arc<AtomicU16>,
    status: Arc<AtomicU16>,
    served: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
}

impl Backend {
    fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a backend");
        let port = listener.local_addr().unwrap().port();
        let backend = Backend {
            port,
            health: Arc::new(AtomicU16::new(200)),
            status: Arc::new(AtomicU16::new(200)),
            served: Arc::default(),
            stopped: Arc::default(),
        };
        let (health, status, served, stopped, name) = (
            backend.health.clone(),
            backend.status.clone(),
            backend.served.clone(),
            backend.stopped.clone(),
            name.to_owned(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (health, status, served, name) =
                    (health.clone(), status.clone(), served.clone(), name.clone());
                std::thread::spawn(move || serve(stream, &health, &status, &served, &name));
            }
        });
        backend
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag and closes the listener.
        let _ = TcpStream::connect(self.addr());
    }
}

fn serve(
    stream: TcpStream,
    health: &AtomicU16,
    status: &AtomicU16,
    served: &AtomicU64,
    name: &str,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut close = false;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header.to_ascii_lowercase().starts_with("connection: close") {
                close = true;
            }
            if header == "\r\n" || header == "\n" {
                break;
            }
        }
        let code = if path == "/healthz" {
            health.load(Ordering::SeqCst)
        } else {
            served.fetch_add(1, Ordering::SeqCst);
            status.load(Ordering::SeqCst)
        };
        let body = format!("{name}\n");
        let answer = format!(
            "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nX-Backend: {name}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if writer.write_all(answer.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// A service on nginx in a temporary directory.
struct Service {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Service {
    /// `reload` records the include it loads in `loaded/<n>.conf`, like nginx taking it.
    fn new(a: &[&Backend], b: &[&Backend], extra: &str) -> Service {
        Service::with_router(a, b, "", extra)
    }

    /// `router` goes into `[router]`, `extra` after the other tables.
    fn with_router(a: &[&Backend], b: &[&Backend], router: &str, extra: &str) -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let list = |backends: &[&Backend]| {
            backends
                .iter()
                .map(|b| format!("\"{}\"", b.addr()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        std::fs::create_dir_all(dir.path().join("loaded")).unwrap();
        let reload = format!(
            "n=$(ls {d}/loaded | wc -l); cp {d}/nginx/web.conf {d}/loaded/$(printf %04d $n).conf"
        );
        let config = dir.path().join("greenlight.toml");
        let text = format!(
            r#"service = "web"

[router]
kind = "nginx"
include = "{d}/nginx/web.conf"
test = ["sh", "-c", "test -s {d}/nginx/web.conf"]
reload = ["sh", "-c", "{reload}"]
backends = [[{a}], [{b}]]
drain = "1s"
{router}

[router.health_check]
path = "/healthz"
interval = "1s"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 2

[health]
interval = "1s"
timeout = "20s"

[retention]
keep_warm = "1h"
keep_failed = "1s"

{extra}
"#,
            a = list(a),
            b = list(b),
        );
        std::fs::write(&config, text).unwrap();
        let service = Service { dir, config };
        let include = service.greenlight().arg("nginx-include").assert().success();
        let first = String::from_utf8(include.get_output().stdout.clone()).unwrap();
        std::fs::create_dir_all(service.path("nginx")).unwrap();
        std::fs::write(service.path("nginx/web.conf"), first).unwrap();
        service
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn greenlight(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("greenlight").expect("binary built");
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("--config")
            .arg(&self.config)
            .timeout(Duration::from_secs(120));
        cmd
    }

    fn status(&self) -> Value {
        let out = self
            .greenlight()
            .args(["status", "--output", "json"])
            .assert()
            .success();
        serde_json::from_slice(&out.get_output().stdout).expect("status is JSON")
    }

    /// Every include nginx was asked to load, in order, as (weight a, weight b).
    fn loaded(&self) -> Vec<(u16, u16)> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.path("loaded"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names.iter().map(|p| weights(p)).collect()
    }
}

/// The weights an include states, read from its `split_clients` lines with this test's own
/// parsing (not greenlight's).
fn weights(path: &Path) -> (u16, u16) {
    let text = std::fs::read_to_string(path).unwrap();
    // After the block's opening brace (`${request_id}` has braces of its own).
    let block = text.split_once("$greenlight_web {").unwrap().1;
    let block = block.split_once('}').unwrap().0;
    let mut share = (0.0f64, 0.0f64);
    let mut rest = None;
    for entry in block.lines().map(str::trim).filter(|l| l.ends_with(';')) {
        let (pct, name) = entry.trim_end_matches(';').split_once(' ').unwrap();
        let slot_a = name.ends_with("_a");
        if pct == "*" {
            rest = Some(slot_a);
        } else {
            let v: f64 = pct.trim_end_matches('%').parse().unwrap();
            if slot_a { share.0 += v } else { share.1 += v }
        }
    }
    match rest {
        Some(true) => share.0 = 100.0 - share.1,
        Some(false) => share.1 = 100.0 - share.0,
        None => {}
    }
    (share.0.round() as u16, share.1.round() as u16)
}

fn live_slot(status: &Value) -> &str {
    status["live_slot"].as_str().unwrap_or("none")
}

#[test]
fn a_release_waits_for_its_backends_health_flips_once_and_rolls_back() {
    let (a, b) = (Backend::start("v1"), Backend::start("v2"));
    b.health.store(503, Ordering::SeqCst);
    let service = Service::new(&[&a], &[&b], "");
    assert_eq!(live_slot(&service.status()), "a");

    let deploy = {
        let mut cmd = service.greenlight();
        cmd.args(["deploy", "--release", "v2", "--output", "json"]);
        std::thread::spawn(move || cmd.assert().get_output().clone())
    };
    // While v2's backend fails its checks, nothing routes to it.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(service.loaded(), Vec::<(u16, u16)>::new());
    b.health.store(200, Ordering::SeqCst);
    let output = deploy.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(service.loaded(), vec![(0, 100)]);
    let events: Vec<Value> = output
        .stdout
        .split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    // The same JSON events as on AWS: health waits, then the release.
    assert!(kinds.contains(&"health"), "{kinds:?}");
    assert_eq!(kinds.first(), Some(&"deploy_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"released"), "{kinds:?}");
    let status = service.status();
    assert_eq!(live_slot(&status), "b");
    assert_eq!(status["live_release"], "v2");

    service.greenlight().arg("rollback").assert().success();
    assert_eq!(service.loaded(), vec![(0, 100), (100, 0)]);
    assert_eq!(service.status()["live_release"], "web-initial-a");
}

#[test]
fn a_backend_that_never_passes_fails_the_release_without_routing_to_it() {
    let (a, b) = (Backend::start("v1"), Backend::start("v2"));
    b.stop();
    let service = Service::new(&[&a], &[&b], "");
    std::fs::write(
        &service.config,
        std::fs::read_to_string(&service.config)
            .unwrap()
            .replace("timeout = \"20s\"", "timeout = \"3s\""),
    )
    .unwrap();
    let out = service
        .greenlight()
        .args(["deploy", "--release", "v2"])
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        format!("{stdout}{stderr}").contains("healthy"),
        "{stdout}{stderr}"
    );
    assert_eq!(service.loaded(), Vec::<(u16, u16)>::new());
    assert_eq!(live_slot(&service.status()), "a");
}

#[test]
fn a_failing_nginx_test_changes_no_routing() {
    let (a, b) = (Backend::start("v1"), Backend::start("v2"));
    let service = Service::new(&[&a], &[&b], "");
    let before = std::fs::read(service.path("nginx/web.conf")).unwrap();
    let config = std::fs::read_to_string(&service.config).unwrap();
    let broken = config.lines().map(|l| {
        if l.starts_with("test = ") {
            "test = [\"sh\", \"-c\", \"echo 'nginx: [emerg] host not found in upstream' >&2; exit 1\"]".to_owned()
        } else {
            l.to_owned()
        }
    });
    std::fs::write(&service.config, broken.collect::<Vec<_>>().join("\n")).unwrap();
    let out = service
        .greenlight()
        .args(["deploy", "--release", "v2"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("host not found in upstream"), "{stderr}");
    assert!(stderr.contains("routing did not change"), "{stderr}");
    assert_eq!(
        std::fs::read(service.path("nginx/web.conf")).unwrap(),
        before
    );
    assert_eq!(service.loaded(), Vec::<(u16, u16)>::new());
    let status = service.status();
    assert_eq!(live_slot(&status), "a");
    assert_eq!(status["traffic"][0]["percent"], 100);
}

#[test]
fn canary_analysis_reads_the_access_log_and_aborts_back_to_the_live_slot() {
    let (a, b) = (Backend::start("v1"), Backend::start("v2"));
    let log = tempfile::NamedTempFile::new().unwrap();
    let service = Service::with_router(
        &[&a],
        &[&b],
        &format!("access_log = \"{}\"", log.path().display()),
        "[canary]\nsteps = [ { weight = 10, pause = \"3s\" }, { weight = 50, pause = \"3s\" }, { weight = 100 } ]\n\n\
         [analysis]\nmax_5xx_rate = 0.05\nmin_requests = 10\n",
    );
    // Traffic as nginx would log it: slot b (v2) answers 500 to one request in five.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), log.path().to_owned());
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64();
                let (upstream, status) = if n.is_multiple_of(2) {
                    (
                        "greenlight_web_b",
                        if n.is_multiple_of(10) { 500 } else { 200 },
                    )
                } else {
                    ("greenlight_web_a", 200)
                };
                writeln!(
                    file,
                    r#"{{"time":{now:.3},"status":{status},"request_time":0.004,"upstream":"{upstream}","upstream_status":"{status}"}}"#
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let out = service
        .greenlight()
        .args(["deploy", "--release", "v2", "--strategy", "canary"])
        .assert()
        .code(3);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        format!("{stdout}{stderr}").contains("5xx"),
        "{stdout}{stderr}"
    );
    // The first step, then straight back: 50% was never loaded.
    assert_eq!(service.loaded(), vec![(90, 10), (100, 0)]);
    assert_eq!(live_slot(&service.status()), "a");
}

#[test]
fn bad_nginx_input_is_one_line_exit_2_and_changes_nothing() {
    let (a, b) = (Backend::start("v1"), Backend::start("v2"));
    let service = Service::new(&[&a], &[&b], "");
    let before = std::fs::read(service.path("nginx/web.conf")).unwrap();
    let out = service
        .greenlight()
        .args([
            "deploy",
            "--release",
            "v2",
            "--image-id",
            "ami-0123456789abcdef0",
        ])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("[router] backends"), "{stderr}");

    std::fs::remove_file(service.path("nginx/web.conf")).unwrap();
    let out = service
        .greenlight()
        .args(["deploy", "--release", "v2"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("greenlight nginx-include >"), "{stderr}");
    assert!(!service.path("nginx/web.conf").exists());
    std::fs::write(service.path("nginx/web.conf"), &before).unwrap();
    assert_eq!(service.loaded(), Vec::<(u16, u16)>::new());
    // Nothing recorded either: the state file was never written.
    assert!(!service.path("nginx/.web.conf.greenlight.json").exists());
}

/// The nginx binary: on PATH, else installed from Debian's packages by `scripts/nginx.sh`.
fn nginx() -> PathBuf {
    if let Ok(out) = std::process::Command::new("sh")
        .args(["-c", "command -v nginx || ls /usr/sbin/nginx"])
        .output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nginx.sh");
    let out = std::process::Command::new(&script)
        .output()
        .expect("run scripts/nginx.sh");
    assert!(
        out.status.success(),
        "scripts/nginx.sh could not install nginx: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap(),
    )
}

/// One GET through nginx: the status and the backend that answered.
fn get(port: u16) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to nginx");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let backend = answer
        .lines()
        .find_map(|l| l.strip_prefix("X-Backend: "))
        .unwrap_or("-")
        .to_owned();
    (status, backend)
}

/// `nginx -s reload` returns once nginx has the signal; its old workers may take a few more
/// connections before they stop accepting. Waits for 20 answers in a row from `backend`.
fn settles_on(port: u16, backend: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut streak = 0;
    while streak < 20 {
        assert!(
            Instant::now() < deadline,
            "nginx never settled on {backend}"
        );
        let (status, from) = get(port);
        assert_eq!(status, 200, "a request failed while nginx reloaded");
        streak = if from == backend { streak + 1 } else { 0 };
    }
}

#[test]
fn real_nginx_routes_as_greenlight_writes_and_counts_what_analysis_reads() {
    let nginx = nginx();
    let (a, b) = (Backend::start("v1"), Backend::start("v2"));
    let service = Service::new(&[&a], &[&b], "");
    let prefix = service.path("nginx");
    for dir in ["logs", "tmp"] {
        std::fs::create_dir_all(prefix.join(dir)).unwrap();
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = prefix.display();
    let conf = format!(
        "worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  client_body_temp_path {p}/tmp/body;\n  proxy_temp_path {p}/tmp/proxy;\n\
         fastcgi_temp_path {p}/tmp/fastcgi;\n  uwsgi_temp_path {p}/tmp/uwsgi;\n\
         scgi_temp_path {p}/tmp/scgi;\n  include {p}/web.conf;\n\
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
         proxy_pass http://$greenlight_web;\n      proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n\
         access_log {p}/logs/web.log greenlight_web;\n    }}\n  }}\n}}\n"
    );
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    let n = nginx.display();
    let base = format!("\"{n}\", \"-p\", \"{p}\", \"-c\", \"{p}/nginx.conf\"");
    let config = std::fs::read_to_string(&service.config).unwrap();
    let config: Vec<String> = config
        .lines()
        .map(|l| {
            if l.starts_with("test = ") {
                format!("test = [{base}, \"-t\", \"-q\"]")
            } else if l.starts_with("reload = ") {
                format!("reload = [{base}, \"-s\", \"reload\"]\naccess_log = \"{p}/logs/web.log\"")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&service.config, config.join("\n")).unwrap();
    let started = std::process::Command::new(&nginx)
        .args(["-p", &p.to_string(), "-c", &format!("{p}/nginx.conf")])
        .status()
        .expect("start nginx");
    assert!(started.success(), "nginx did not start");
    struct Quit(PathBuf, String);
    impl Drop for Quit {
        fn drop(&mut self) {
            let _ = std::process::Command::new(&self.0)
                .args([
                    "-p",
                    &self.1,
                    "-c",
                    &format!("{}/nginx.conf", self.1),
                    "-s",
                    "stop",
                ])
                .status();
        }
    }
    let _quit = Quit(nginx.clone(), p.to_string());

    assert_eq!(get(port), (200, "v1".to_owned()));
    service
        .greenlight()
        .args(["deploy", "--release", "v2"])
        .assert()
        .success();
    // nginx -s reload returns before the new workers take over: wait for them.
    settles_on(port, "v2");
    // The access log is in the format the include defines, and names the slot.
    let log = std::fs::read_to_string(prefix.join("logs/web.log")).unwrap();
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["upstream"], "greenlight_web_b");
    assert_eq!(last["status"], 200);

    service.greenlight().arg("rollback").assert().success();
    settles_on(port, "v1");
    assert!(a.served.load(Ordering::SeqCst) >= 2);
    assert!(b.served.load(Ordering::SeqCst) >= 20);
}

#[test]
fn two_deploys_at_once_flip_once() {
    let (a, b) = (Backend::start("v1"), Backend::start("v2"));
    let service = Service::new(&[&a], &[&b], "");
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = service.greenlight();
            cmd.args(["deploy", "--release", "v2"]);
            std::thread::spawn(move || cmd.assert().get_output().status.code())
        })
        .collect();
    let codes: Vec<Option<i32>> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    // One deploys; the other finds the lock taken (4) or the release already live (0).
    assert!(codes.contains(&Some(0)), "{codes:?}");
    assert!(
        codes.iter().all(|c| matches!(c, Some(0) | Some(4))),
        "{codes:?}"
    );
    assert_eq!(service.loaded(), vec![(0, 100)]);
    assert_eq!(service.status()["live_release"], "v2");
}
