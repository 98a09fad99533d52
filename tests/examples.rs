//! The deployment examples are real: the Kubernetes manifest is an Indexed
//! Job whose shard count agrees with its `--shard /N`, and the systemd unit
//! and Dockerfile run the daemon the way the README says.

use std::path::Path;

fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name),
    )
    .unwrap()
}

#[test]
fn k8s_manifest_is_an_indexed_job_with_matching_shards() {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&example("k8s/migration-job.yaml")).expect("valid YAML");
    assert_eq!(doc["apiVersion"].as_str(), Some("batch/v1"));
    assert_eq!(doc["kind"].as_str(), Some("Job"));
    let spec = &doc["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_u64().expect("completions");
    assert!(spec["parallelism"]
        .as_u64()
        .is_some_and(|p| p >= 1 && p <= completions));
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    let shard = args
        .iter()
        .position(|a| *a == "--shard")
        .map(|i| args[i + 1])
        .expect("--shard");
    assert_eq!(
        shard,
        format!("/{completions}"),
        "the shard count is the number of completions"
    );
    assert!(args.contains(&"sync"));
}

#[test]
fn k8s_manifest_passes_the_kubernetes_api_models() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join("scripts/check-k8s-manifest"))
        .arg(root.join("examples/k8s/migration-job.yaml"))
        .output()
        .expect("run scripts/check-k8s-manifest (python3 with the kubernetes client; scripts/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("is a valid V1Job"), "{text}");
}

#[test]
fn service_unit_and_dockerfile_run_the_daemon() {
    let unit = example("mailferry.service");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/mailferry --config /etc/mailferry/config.toml run")
    );
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    for hardening in [
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "StateDirectory=mailferry",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    let dockerfile = example("Dockerfile");
    assert!(dockerfile.contains("USER mailferry"));
    assert!(dockerfile.contains("CMD [\"run\"]"));
}
