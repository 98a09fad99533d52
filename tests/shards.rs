//! `--shard i/N` against a real Dovecot: three shard processes at once, one
//! ledger each, together copy every message exactly once; `status --merge`
//! adds their ledgers up.

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use support::dovecot::{shared, User};
use support::e2e::{as_copied, corpus, mailferry, sorted, write_config, RouteSpec};

#[test]
fn three_shards_at_once_copy_everything_exactly_once() {
    let dovecot = shared();
    // Twelve routes: ten one-to-one migrations and two sources consolidated
    // into one mailbox (which must land in one shard).
    let sources: Vec<User> = (0..12).map(|i| dovecot.user(&format!("sh{i}"))).collect();
    let targets: Vec<User> = (0..11).map(|i| dovecot.user(&format!("st{i}"))).collect();
    let mut mail = Vec::new();
    for (i, user) in sources.iter().enumerate() {
        let m = corpus(&format!("shard{i}"), 5);
        dovecot.load(user, "INBOX", &m);
        mail.push(m);
    }
    let routes: Vec<RouteSpec<'_>> = sources
        .iter()
        .enumerate()
        .map(|(i, from)| RouteSpec {
            from,
            to: &targets[i.min(10)],
            mailbox: "INBOX",
            delete: "\"after-copy\"",
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), dovecot, &routes);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("ledger.db", "ledger-{shard}.db");
    std::fs::write(&config, text).unwrap();

    // Three processes at once, each run (and its pipes drained) on a thread.
    let runs: Vec<(i32, String, String)> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..3)
            .map(|i| {
                let config = &config;
                s.spawn(move || {
                    mailferry(config, &["--json", "--shard", &format!("{i}/3"), "sync"])
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut seen = BTreeSet::new();
    let mut copied = 0;
    for (code, stdout, stderr) in runs {
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        for r in doc["routes"].as_array().unwrap() {
            assert!(
                seen.insert(r["report"]["route"].as_str().unwrap().to_string()),
                "route in two shards"
            );
            copied += r["report"]["counts"]["copied"].as_u64().unwrap();
        }
    }
    assert_eq!(seen.len(), 12, "every route in some shard");
    let total: usize = mail.iter().map(Vec::len).sum();
    assert_eq!(copied, total as u64);
    for (i, user) in targets.iter().enumerate() {
        let mut want: Vec<Vec<u8>> = mail[i].iter().map(|m| as_copied(m)).collect();
        if i == 10 {
            want.extend(mail[11].iter().map(|m| as_copied(m)));
        }
        want.sort();
        assert_eq!(sorted(dovecot.messages(user, "INBOX")), want, "target {i}");
    }
    assert!(sources.iter().all(|s| dovecot.count(s, "INBOX") == 0));

    // The merged status of the three ledgers adds up to everything.
    let ledgers: Vec<String> = (0..3)
        .map(|i| {
            dir.path()
                .join(format!("ledger-{i}.db"))
                .display()
                .to_string()
        })
        .collect();
    let mut args = vec!["--json", "status", "--merge"];
    args.extend(ledgers.iter().map(String::as_str));
    let (code, out, err) = support::e2e::mailferry(&config, &args);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let merged: u64 = doc["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["copied"].as_u64().unwrap())
        .sum();
    assert_eq!(merged, total as u64, "{doc}");
}

/// Measurement, not a test: aggregate throughput of 1, 2 and 4 shard
/// processes over the same 16 routes (fresh users each time). Run with
/// `cargo test --release --test shards -- --ignored --nocapture`.
#[test]
#[ignore]
fn shard_throughput() {
    let dovecot = shared();
    for shards in [1u32, 2, 4] {
        let sources: Vec<User> = (0..16)
            .map(|i| dovecot.user(&format!("tp{shards}s{i}")))
            .collect();
        let targets: Vec<User> = (0..16)
            .map(|i| dovecot.user(&format!("tp{shards}t{i}")))
            .collect();
        let mut total = 0usize;
        let mut bytes = 0usize;
        for (i, user) in sources.iter().enumerate() {
            let m = support::e2e::corpus_with_big(&format!("tp{shards}-{i}"), 150, 300);
            total += m.len();
            bytes += m.iter().map(Vec::len).sum::<usize>();
            dovecot.load(user, "INBOX", &m);
        }
        let routes: Vec<RouteSpec<'_>> = sources
            .iter()
            .zip(&targets)
            .map(|(from, to)| RouteSpec {
                from,
                to,
                mailbox: "INBOX",
                delete: "\"never\"",
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), dovecot, &routes);
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("ledger.db", "ledger-{shard}.db");
        std::fs::write(&config, text).unwrap();
        let started = Instant::now();
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..shards)
                .map(|i| {
                    let config = &config;
                    s.spawn(move || {
                        let shard = format!("{i}/{shards}");
                        mailferry(config, &["--json", "--shard", &shard, "sync"])
                    })
                })
                .collect();
            for run in runs {
                let (code, out, err) = run.join().unwrap();
                assert_eq!(code, 0, "{out}\n{err}");
            }
        });
        let secs = started.elapsed().as_secs_f64();
        let copied: usize = targets.iter().map(|t| dovecot.count(t, "INBOX")).sum();
        assert_eq!(copied, total);
        println!(
            "{shards} shard process(es): {total} messages, {:.1} MB in {secs:.2} s = {:.0} msg/s, {:.1} MB/s",
            bytes as f64 / 1e6,
            total as f64 / secs,
            bytes as f64 / 1e6 / secs
        );
    }
}
