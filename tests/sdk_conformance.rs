//! The emulator against Alibaba's official Python SDKs (`tests/conformance/`, pytest in
//! `target/venv`, which `scripts/setup-python.sh` makes). It runs from here so that it drives
//! the emulator binary this very build made, and `cargo test` compiles the project once.

use std::path::Path;
use std::process::Command;

#[test]
fn the_official_sdks_accept_every_answer_of_the_emulator() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: `make python` (scripts/setup-python.sh) installs the SDKs and pytest",
        python.display()
    );
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/conformance"])
        .env("EMULATOR_BIN", env!("CARGO_BIN_EXE_alicloud-cloud-emulator"))
        .current_dir(root)
        .output()
        .expect("run pytest");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "pytest tests/conformance failed ({}):\n{report}",
        out.status
    );
    // Nothing deselected or skipped: every SDK call ran.
    let summary = report.lines().rev().find(|l| l.contains(" passed")).unwrap_or_default();
    assert!(
        !summary.contains("skipped") && !summary.contains("deselected"),
        "every conformance test must run: {summary}"
    );
    println!("{summary}");
}
