//! The files nginx and greenlight share: the include greenlight owns (written, tested, loaded)
//! and the access log metric analysis reads.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::core::cloud::{CloudError, CloudErrorKind, CloudResult};
use crate::core::names::ServiceName;
use crate::core::nginx::{self, AccessRecord, NginxSpec};

use super::store::write_atomically;

/// The longest the test or reload command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The code of the error a missing include gives.
pub const NO_INCLUDE: &str = "NginxIncludeMissing";

/// The weights the include on disk states.
pub fn read(service: &ServiceName, spec: &NginxSpec, operation: &str) -> CloudResult<[u16; 2]> {
    let missing = |how: &str| {
        CloudError::new(
            CloudErrorKind::NotFound,
            operation,
            format!("{} {how}", spec.include.display()),
        )
        .with_code(NO_INCLUDE)
    };
    let text = match fs::read_to_string(&spec.include) {
        // Empty as well as missing: `greenlight nginx-include > <include>` empties the file
        // before greenlight reads it.
        Ok(text) if text.trim().is_empty() => return Err(missing("is empty")),
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing("does not exist")),
        Err(e) => {
            return Err(CloudError::new(
                CloudErrorKind::AccessDenied,
                operation,
                format!("cannot read {}: {e}", spec.include.display()),
            )
            .with_code("NginxInclude"));
        }
    };
    nginx::read_weights(service, &text).ok_or_else(|| {
        CloudError::new(
            CloudErrorKind::InvalidRequest,
            operation,
            format!(
                "{} has no `split_clients … ${} {{ … }}` over greenlight's two upstreams; \
                 write it with `greenlight nginx-include`",
                spec.include.display(),
                nginx::variable(service)
            ),
        )
        .with_code("NginxInclude")
    })
}

/// Puts `text` in place as the include, has the test command check nginx's whole
/// configuration with it, and reloads nginx. A failing test or reload puts the previous
/// include back: nginx, the file and greenlight's records keep agreeing.
pub fn apply(spec: &NginxSpec, text: &str, operation: &str) -> CloudResult<()> {
    let previous = match fs::read(&spec.include) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(file_error(operation, &spec.include, &e)),
    };
    write_atomically(&spec.include, text.as_bytes())
        .map_err(|e| file_error(operation, &spec.include, &e))?;
    let restore = || -> CloudResult<()> {
        match &previous {
            Some(bytes) => write_atomically(&spec.include, bytes),
            None => fs::remove_file(&spec.include),
        }
        .map_err(|e| file_error(operation, &spec.include, &e))
    };
    if let Err(why) = run(&spec.test) {
        restore()?;
        return Err(CloudError::new(
            CloudErrorKind::InvalidRequest,
            operation,
            format!(
                "`{}` refused the new include ({why}); the previous include is back and nginx \
                 was not reloaded, so routing did not change",
                spec.test.join(" ")
            ),
        )
        .with_code("NginxConfigTest"));
    }
    if let Err(why) = run(&spec.reload) {
        restore()?;
        return Err(CloudError::new(
            CloudErrorKind::Unavailable,
            operation,
            format!(
                "`{}` failed ({why}); the previous include is back. Is nginx running?",
                spec.reload.join(" ")
            ),
        )
        .with_code("NginxReload"));
    }
    Ok(())
}

fn file_error(operation: &str, path: &Path, error: &io::Error) -> CloudError {
    let kind = if error.kind() == io::ErrorKind::PermissionDenied {
        CloudErrorKind::AccessDenied
    } else {
        CloudErrorKind::Other
    };
    CloudError::new(kind, operation, format!("{}: {error}", path.display()))
        .with_code("NginxInclude")
}

/// Runs `argv` to its end (at most [`COMMAND_TIMEOUT`]); `Err` with the last line it wrote
/// when it fails.
fn run(argv: &[String]) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("no command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "still running after {}",
                    humantime::format_duration(COMMAND_TIMEOUT)
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let last = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.contains("test failed"))
        .unwrap_or("no output");
    Err(format!("{status}: {last}"))
}

/// The access log's records from `since` on; none while there is no log yet.
pub fn access_records(
    path: &Path,
    since: SystemTime,
    operation: &str,
) -> CloudResult<Vec<AccessRecord>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CloudError::new(
                CloudErrorKind::AccessDenied,
                operation,
                format!("cannot read the access log {}: {e}", path.display()),
            )
            .with_code("NginxAccessLog"));
        }
    };
    Ok(text
        .lines()
        .filter_map(nginx::parse_access_line)
        .filter(|r| r.time >= since)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::nginx::{Backend, CheckSpec};

    fn spec(dir: &Path, test: &str) -> NginxSpec {
        NginxSpec {
            include: dir.join("web.conf"),
            state: dir.join("state.json"),
            test: vec!["sh".into(), "-c".into(), test.into()],
            reload: vec![
                "sh".into(),
                "-c".into(),
                format!("cp {0}/web.conf {0}/loaded.conf", dir.display()),
            ],
            access_log: None,
            backends: [
                vec![Backend::parse("127.0.0.1:1").unwrap()],
                vec![Backend::parse("127.0.0.1:2").unwrap()],
            ],
            check: CheckSpec::default(),
            drain: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_passing_test_reloads_the_new_include() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path(), "grep -q greenlight-weights web.conf || true");
        apply(&spec, "# new\n", "t").unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("loaded.conf")).unwrap(),
            "# new\n"
        );
    }

    #[test]
    fn a_failing_test_puts_the_previous_include_back_and_does_not_reload() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("web.conf"), "# old\n").unwrap();
        let spec = spec(
            dir.path(),
            &format!(
                "echo 'nginx: [emerg] unexpected \"}}\" in {}/web.conf:3' >&2; \
                 echo 'nginx: configuration file test failed' >&2; exit 1",
                dir.path().display()
            ),
        );
        let error = apply(&spec, "# broken\n", "ModifyListener").unwrap_err();
        assert_eq!(error.kind, CloudErrorKind::InvalidRequest);
        assert_eq!(error.code.as_deref(), Some("NginxConfigTest"));
        assert!(error.message.contains("unexpected"), "{error}");
        assert_eq!(
            fs::read_to_string(dir.path().join("web.conf")).unwrap(),
            "# old\n"
        );
        assert!(!dir.path().join("loaded.conf").exists());
    }

    #[test]
    fn a_failing_reload_puts_the_previous_include_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path(), "true");
        spec.reload = vec![
            "sh".into(),
            "-c".into(),
            "echo 'no pid file' >&2; exit 1".into(),
        ];
        let error = apply(&spec, "# new\n", "ModifyListener").unwrap_err();
        assert_eq!(error.code.as_deref(), Some("NginxReload"));
        assert!(error.message.contains("no pid file"), "{error}");
        assert!(!dir.path().join("web.conf").exists());
    }
}
