//! The operator's `call` command and the `alicloud-cloud-emulator` binary, as people run them.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use alicloud_ops_operator::emulator::{DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET};
use support::emulator;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alicloud-ops-operator"));
    c.env_remove("ALICLOUD_OPS_ENDPOINT")
        .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN");
    c
}

fn emulator_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_alicloud-cloud-emulator"))
}

/// The operator allocates with jemalloc, one arena, as `make bench-cluster` measured it:
/// jemalloc's own statistics, printed at exit, say which options it runs with.
#[test]
fn the_operator_allocates_with_one_jemalloc_arena() {
    let out = bin()
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("jemalloc statistics"), "not jemalloc:\n{text}");
    assert!(text.contains("opt.narenas: 1\n"), "{text}");
}

/// The operator's binary carries neither the emulator nor its default access key.
#[test]
fn the_operator_binary_holds_no_emulator() {
    let out = bin().arg("emulator").output().unwrap();
    assert!(!out.status.success(), "no emulator subcommand");
    // grep -a reads the binary as text; it is quick where a debug-built scan is not.
    let contains = |needle: &str| {
        let status = Command::new("grep")
            .args(["-a", "-q", "-F", needle, env!("CARGO_BIN_EXE_alicloud-ops-operator")])
            .status()
            .unwrap();
        assert!(status.code().is_some_and(|c| c <= 1), "grep failed");
        status.success()
    };
    assert!(contains("reconcile-requested-at"), "the search itself works");
    assert!(
        !contains(DEFAULT_ACCESS_KEY_SECRET),
        "the emulator's default secret is in the operator binary"
    );
    assert!(
        !contains("/_emulator/faults"),
        "the emulator's admin API is in the operator binary"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn call_prints_json_and_failures_exit_1_with_code_message_and_request_id() {
    let emu = emulator().await;
    for sig in ["v2", "v3"] {
        let out = bin()
            .args([
                "call",
                "ecd",
                "DescribeDesktops",
                "RegionId=cn-shanghai",
                "MaxResults=5",
                "--endpoint",
                &emu.url(),
                "--signature-version",
                sig,
            ])
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", DEFAULT_ACCESS_KEY_SECRET)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["Desktops"].as_array().unwrap().len(), 5);
        assert_eq!(json["TotalCount"], 20);
    }
    // The form body placement of ApproveOtaTask, and a cloud error.
    let out = bin()
        .args([
            "call",
            "appstream-center",
            "ApproveOtaTask",
            "AppInstanceGroupId=aig-hz0001",
            "BizRegionId=cn-hangzhou",
        ])
        .args([
            "TaskId=stale",
            "OtaType=Fota",
            "StartTime=2099-01-01T00:00:00Z",
            "--endpoint",
            &emu.url(),
        ])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", DEFAULT_ACCESS_KEY_SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: InvalidParameter.TaskId (HTTP 400)"), "{stderr}");
    assert!(stderr.contains("request id: "), "{stderr}");
    let out = bin()
        .args([
            "call",
            "ecd",
            "DescribeFotaTasks",
            "RegionId=cn-hangzhou",
            "--endpoint",
            &emu.url(),
        ])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret-42")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
    assert!(!stderr.contains("not-the-secret-42"), "{stderr}");
    let out = bin().args(["call", "ecs", "DescribeInstances"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap rejects an unknown product");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown product"));
}

#[test]
fn emulator_loads_a_yaml_state_file_and_its_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.yaml");
    std::fs::write(
        &state,
        "ecd:\n  eu-central-1:\n    globalAutoUpdate: false\n    fotaTasks:\n      - {TaskUid: aot-eu1, AppVersion: '9', Status: Pending}\n    desktops: []\n",
    )
    .unwrap();
    let mut child = emulator_bin()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--state",
            state.to_str().unwrap(),
            "--access-key",
            "AKID:s3cret",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    let out = bin()
        .args([
            "call",
            "ecd",
            "DescribeFotaTasks",
            "RegionId=eu-central-1",
            "--endpoint",
            &url,
        ])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "AKID")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s3cret")
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["FotaTasks"][0]["TaskUid"], "aot-eu1");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "ecs: {}\n").unwrap();
    let out = emulator_bin()
        .args(["--listen", "127.0.0.1:0", "--state", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `ecs`"));
}
