//! dkimpy, an implementation independent of ours, verifying DKIM signatures against zone
//! lines (what `remailer dns` prints), through tests/dkim_verify.py. Needs
//! `scripts/test-deps.sh` (the test command runs it).

use std::path::Path;
use std::process::Command;

/// Verifies every signature of `message` with the keys in `zone`. Returns (all signatures
/// verified, dkimpy's report). Panics when dkimpy itself cannot run.
#[allow(dead_code)] // not every test binary that includes this module calls it
pub fn verify(work_dir: &Path, message: &[u8], zone: &str) -> (bool, String) {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tag = format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let msg_path = work_dir.join(format!("dkimpy-{tag}.eml"));
    let zone_path = work_dir.join(format!("dkimpy-{tag}.zone"));
    std::fs::write(&msg_path, message).unwrap();
    std::fs::write(&zone_path, zone).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dkim_verify.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&msg_path)
        .arg(&zone_path)
        .output()
        .expect("python3 not found; run: bash scripts/test-deps.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "dkimpy missing; run: bash scripts/test-deps.sh\n{stderr}"
    );
    assert!(
        out.status.code().is_some_and(|c| c < 2),
        "dkim_verify.py failed to run:\n{stdout}{stderr}"
    );
    (out.status.success(), format!("{stdout}{stderr}"))
}

/// Verifies every signature of each of `messages` in one run of dkimpy (one process for the
/// whole batch). Returns, per message in order, (all its signatures verified, the report).
/// Panics when dkimpy itself cannot run.
pub fn verify_many(work_dir: &Path, messages: &[Vec<u8>], zone: &str) -> Vec<(bool, String)> {
    let dir = work_dir.join(format!("dkimpy-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let zone_path = dir.join("keys.zone");
    std::fs::write(&zone_path, zone).unwrap();
    let mut files = Vec::with_capacity(messages.len());
    for (n, message) in messages.iter().enumerate() {
        let path = dir.join(format!("{n}.eml"));
        std::fs::write(&path, message).unwrap();
        files.push(path);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dkim_verify.py");
    let out = Command::new("python3")
        .arg(script)
        .arg("--batch")
        .arg(&zone_path)
        .args(&files)
        .output()
        .expect("python3 not found; run: bash scripts/test-deps.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "dkimpy missing; run: bash scripts/test-deps.sh\n{stderr}"
    );
    assert!(
        out.status.success(),
        "dkim_verify.py failed to run:\n{stdout}{stderr}"
    );
    let results: Vec<(bool, String)> = stdout
        .lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).expect("one JSON line per message");
            (
                v["ok"].as_bool().unwrap(),
                v["report"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        results.len(),
        messages.len(),
        "one result per message:\n{stdout}{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    results
}
