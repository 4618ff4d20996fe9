//! Records the commit greenlight is built from, for `--version`. Without git (a source
//! tarball), it says `unknown commit`.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit =
        git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown commit".into());
    println!("cargo:rustc-env=GREENLIGHT_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    // A new commit or a checkout changes HEAD, or the ref it points at (in a worktree too).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) {
        let mut watched = vec![dir.join("HEAD")];
        if let Some(common) = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from) {
            watched.push(common.join("packed-refs"));
            if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watched.push(common.join(head));
            }
        }
        for path in watched.into_iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
