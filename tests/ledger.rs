//! The ledger against real files: creation, refusal of a second writer and
//! of files that are not ours, crash survival, settle atomicity, deletion.

use std::io::{BufRead, BufReader};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mailferry::ledger::{
    DeliveryState, Ledger, LedgerError, NewIntent, Outcome, RouteKey, RunCounts, SeenMessage,
    TargetMessage, UidValidityChange,
};
use mailferry::message::Hash;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Env var that turns one test of this binary into the child of the crash test.
const CHILD_LEDGER: &str = "MAILFERRY_TEST_CHILD_LEDGER";

fn hash(n: u32) -> Hash {
    Hash(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

fn nz(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

fn inbox() -> RouteKey {
    RouteKey::new("old-isp", "new", "INBOX")
}

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state").join("mailferry.db");
    (dir, path)
}

/// Records `uidl` as seen on `route` and copied through an intent.
fn copy(ledger: &mut Ledger, route: &RouteKey, uidl: &str, h: Hash, uid: u32) -> TestResult {
    ledger.record_seen(
        route,
        &[SeenMessage {
            uidl,
            size: 100,
            hash: h,
        }],
    )?;
    let ids = ledger.add_intents(&[NewIntent {
        route,
        uidl,
        hash: h,
        size: 100,
        uidvalidity: nz(7),
        uidnext_before: nz(uid),
    }])?;
    ledger.settle_appended(&[(ids[0], nz(uid))], true)?;
    Ok(())
}

fn assert_names_file(err: &LedgerError, path: &Path) {
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(err.is_fatal(), "{text}");
}

#[test]
fn creates_file_and_directory_then_reopens() -> TestResult {
    let (_dir, path) = temp();
    {
        let mut ledger = Ledger::open(&path)?;
        ledger.record_seen(
            &inbox(),
            &[SeenMessage {
                uidl: "a",
                size: 1,
                hash: hash(1),
            }],
        )?;
    }
    assert!(path.is_file());
    let ledger = Ledger::open(&path)?;
    let status = ledger.route_status(&inbox())?;
    assert_eq!(status.states.seen, 1);
    assert_eq!(status.last_run, None);
    Ok(())
}

#[test]
fn migrates_an_empty_file() -> TestResult {
    let (dir, _) = temp();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"")?;
    let mut ledger = Ledger::open(&path)?;
    ledger.record_seen(
        &inbox(),
        &[SeenMessage {
            uidl: "a",
            size: 1,
            hash: hash(1),
        }],
    )?;
    assert_eq!(
        ledger.delivery(&inbox(), "a")?.map(|d| d.state),
        Some(DeliveryState::Seen)
    );
    Ok(())
}

#[test]
fn second_writer_in_process_is_refused_with_pid() -> TestResult {
    let (_dir, path) = temp();
    let _first = Ledger::open(&path)?;
    let err = Ledger::open(&path).err().ok_or("second open succeeded")?;
    assert!(matches!(err, LedgerError::Busy { pid: Some(p), .. } if p == std::process::id()));
    assert_names_file(&err, &path);
    assert!(err
        .to_string()
        .contains(&format!("pid {}", std::process::id())));
    // A reader is still welcome.
    Ledger::open_read_only(&path)?;
    Ok(())
}

/// The child half of `intents_survive_kill_9`: a no-op unless the parent set
/// the env var. Opens the ledger, commits intents, says READY, then waits to
/// be killed.
#[test]
fn crash_child_role() -> TestResult {
    let Some(path) = std::env::var_os(CHILD_LEDGER) else {
        return Ok(());
    };
    let mut ledger = Ledger::open(PathBuf::from(path))?;
    let route = inbox();
    ledger.record_seen(
        &route,
        &[SeenMessage {
            uidl: "u1",
            size: 100,
            hash: hash(1),
        }],
    )?;
    let intent = NewIntent {
        route: &route,
        uidl: "u1",
        hash: hash(1),
        size: 100,
        uidvalidity: nz(7),
        uidnext_before: nz(40),
    };
    ledger.add_intents(&[intent])?;
    println!("READY");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn intents_survive_kill_9_and_lock_names_holder() -> TestResult {
    let (_dir, path) = temp();
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "crash_child_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_LEDGER, &path)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("READY"));
    assert!(ready, "child did not get ready");

    let err = Ledger::open(&path)
        .err()
        .ok_or("open beside a live writer succeeded")?;
    assert!(
        matches!(err, LedgerError::Busy { pid: Some(p), .. } if p == child.id()),
        "{err}"
    );
    assert_names_file(&err, &path);

    child.kill()?; // SIGKILL: no destructor, no clean close.
    child.wait()?;
    let mut ledger = Ledger::open(&path)?;
    let pending = ledger.pending_intents("new", "INBOX")?;
    assert_eq!(pending.len(), 1);
    let intent = &pending[0];
    assert_eq!(
        (intent.uidl.as_str(), intent.hash, intent.size),
        ("u1", hash(1), 100)
    );
    assert_eq!((intent.uidvalidity, intent.uidnext_before), (nz(7), nz(40)));
    assert_eq!(ledger.route_status(&inbox())?.pending_intents, 1);
    ledger.settle_appended(&[(intent.id, nz(41))], true)?;
    assert!(ledger.pending_intents("new", "INBOX")?.is_empty());
    Ok(())
}

#[test]
fn unwritable_location_is_a_fatal_error_naming_the_file() {
    // /sys refuses new directories even to root, unlike a chmod'ed temp dir.
    let path = Path::new("/sys/mailferry-test-no-such-dir/ledger.db");
    let err = Ledger::open(path).err();
    let err = err.expect("open under /sys succeeded");
    assert_names_file(&err, path);
}

#[test]
fn read_only_file_is_refused() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = temp();
    drop(Ledger::open(&path)?);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))?;
    std::fs::set_permissions(
        dir.path().join("state"),
        std::fs::Permissions::from_mode(0o555),
    )?;
    let writable = std::fs::OpenOptions::new().append(true).open(&path).is_ok();
    let result = Ledger::open(&path);
    std::fs::set_permissions(
        dir.path().join("state"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    if writable {
        eprintln!("running as root: permissions do not apply; only checked that open works");
        result?;
        return Ok(());
    }
    let err = result.err().ok_or("open of a read-only ledger succeeded")?;
    assert_names_file(&err, &path);
    Ok(())
}

#[test]
fn foreign_and_corrupt_files_are_refused_untouched() -> TestResult {
    let (dir, _) = temp();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "Subject: not a database\n\nhello\n".repeat(50))?;
    let other = dir.path().join("other.sqlite");
    rusqlite::Connection::open(&other)?
        .execute_batch("CREATE TABLE theirs (x); INSERT INTO theirs VALUES (1);")?;
    let corrupt = dir.path().join("corrupt.db");
    drop(Ledger::open(&corrupt)?);
    let mut bytes = std::fs::read(&corrupt)?;
    bytes[100..600].fill(0xA5); // page 1's b-tree (the schema), past the 100-byte header
    std::fs::write(&corrupt, &bytes)?;

    for path in [&text, &other, &corrupt] {
        let before = std::fs::read(path)?;
        let err = Ledger::open(path)
            .err()
            .ok_or("opened a file that is not a ledger")?;
        assert_names_file(&err, path);
        assert!(
            matches!(
                err,
                LedgerError::Foreign { .. } | LedgerError::Corrupt { .. }
            ),
            "{err:?}"
        );
        assert!(Ledger::open_read_only(path).is_err());
        assert_eq!(
            std::fs::read(path)?,
            before,
            "{} was modified",
            path.display()
        );
    }
    Ok(())
}

#[test]
fn newer_schema_is_refused() -> TestResult {
    let (_dir, path) = temp();
    drop(Ledger::open(&path)?);
    rusqlite::Connection::open(&path)?.pragma_update(None, "user_version", 99)?;
    for err in [
        Ledger::open(&path).err(),
        Ledger::open_read_only(&path).err(),
    ] {
        let err = err.ok_or("opened a newer ledger")?;
        assert!(
            matches!(err, LedgerError::TooNew { found: 99, .. }),
            "{err:?}"
        );
        assert_names_file(&err, &path);
    }
    Ok(())
}

#[test]
fn read_only_open_never_creates_and_sees_writes() -> TestResult {
    let (_dir, path) = temp();
    let err = Ledger::open_read_only(&path)
        .err()
        .ok_or("opened a missing file")?;
    assert!(matches!(err, LedgerError::Missing { .. }));
    assert!(!path.exists() && !path.parent().is_some_and(Path::exists));

    let mut writer = Ledger::open(&path)?;
    let reader = Ledger::open_read_only(&path)?;
    copy(&mut writer, &inbox(), "u1", hash(1), 5)?;
    assert_eq!(reader.route_status(&inbox())?.states.copied, 1);
    assert!(reader.has_hash("new", "INBOX", &hash(1))?);
    Ok(())
}

#[test]
fn settled_counts_states_and_attempts() -> TestResult {
    let (_dir, path) = temp();
    let mut l = Ledger::open(&path)?;
    let r = inbox();
    let seen: Vec<SeenMessage<'_>> = ["c", "d", "s", "f", "n"]
        .iter()
        .zip(1..)
        .map(|(u, i)| SeenMessage {
            uidl: u,
            size: 1,
            hash: hash(i),
        })
        .collect();
    l.record_seen(&r, &seen)?;
    copy(&mut l, &r, "c", hash(1), 3)?;
    l.record_outcomes(
        &r,
        &[
            ("d", Outcome::Duplicate { of: None }),
            ("s", Outcome::Skipped { reason: "too big" }),
        ],
    )?;
    l.record_outcomes(
        &r,
        &[(
            "f",
            Outcome::Failed {
                reason: "NO [TOOBIG]",
            },
        )],
    )?;
    // A failure before download: no seen row needed.
    l.record_outcomes(
        &r,
        &[(
            "x",
            Outcome::Failed {
                reason: "RETR -ERR",
            },
        )],
    )?;
    // A copied message is never downgraded.
    l.record_outcomes(&r, &[("c", Outcome::Failed { reason: "late" })])?;

    let all = ["c", "d", "s", "f", "n", "x", "unknown"];
    let mut settled: Vec<String> = l.settled(&r, &all, 2)?.into_iter().collect();
    settled.sort();
    assert_eq!(settled, ["c", "d", "s"]);
    l.record_outcomes(&r, &[("f", Outcome::Failed { reason: "again" })])?;
    assert!(l.settled(&r, &all, 2)?.contains("f"));
    let f = l.delivery(&r, "f")?.ok_or("no delivery")?;
    assert_eq!(
        (f.state, f.attempts, f.last_error.as_deref()),
        (DeliveryState::Failed, 2, Some("again"))
    );
    // Another route of the same source knows none of it.
    assert!(l
        .settled(&RouteKey::new("old-isp", "new", "Archive"), &all, 2)?
        .is_empty());

    let status = l.route_status(&r)?;
    assert_eq!(
        (
            status.states.copied,
            status.states.duplicate,
            status.states.skipped,
            status.states.failed,
            status.states.seen
        ),
        (1, 1, 1, 2, 1)
    );
    assert_eq!(status.last_message_error.as_deref(), Some("again"));
    Ok(())
}

#[test]
fn settle_is_atomic() -> TestResult {
    let (_dir, path) = temp();
    let mut l = Ledger::open(&path)?;
    let r = inbox();
    l.record_seen(
        &r,
        &[SeenMessage {
            uidl: "a",
            size: 100,
            hash: hash(1),
        }],
    )?;
    let ids = l.add_intents(&[NewIntent {
        route: &r,
        uidl: "a",
        hash: hash(1),
        size: 100,
        uidvalidity: nz(7),
        uidnext_before: nz(10),
    }])?;
    let bogus = mailferry::ledger::IntentId(ids[0].0 + 1000);
    let err = l
        .settle_appended(&[(ids[0], nz(10)), (bogus, None)], true)
        .err();
    assert!(err.is_some());
    assert_eq!(l.pending_intents("new", "INBOX")?.len(), 1);
    assert!(!l.has_hash("new", "INBOX", &hash(1))?);
    assert_eq!(
        l.delivery(&r, "a")?.map(|d| d.state),
        Some(DeliveryState::Seen)
    );

    l.settle_appended(&[(ids[0], nz(10))], true)?;
    assert!(l.pending_intents("new", "INBOX")?.is_empty());
    assert_eq!(
        l.delivery(&r, "a")?.map(|d| d.state),
        Some(DeliveryState::Copied)
    );
    assert!(!l.drop_intent(ids[0])?);
    Ok(())
}

#[test]
fn deletable_needs_every_route() -> TestResult {
    let (_dir, path) = temp();
    let mut l = Ledger::open(&path)?;
    let a = inbox();
    let b = RouteKey::new("old-isp", "backup", "Archive");
    let routes = [a.clone(), b.clone()];
    copy(&mut l, &a, "m1", hash(1), 1)?;
    copy(&mut l, &a, "m2", hash(2), 2)?;
    l.record_seen(
        &b,
        &[SeenMessage {
            uidl: "m1",
            size: 100,
            hash: hash(1),
        }],
    )?;
    assert!(l.deletable("old-isp", &routes, None)?.is_empty());
    l.record_outcomes(
        &b,
        &[
            ("m1", Outcome::Duplicate { of: None }),
            ("m2", Outcome::Skipped { reason: "filter" }),
        ],
    )?;
    assert_eq!(l.deletable("old-isp", &routes, None)?, ["m1"]);
    assert_eq!(l.deletable("old-isp", &routes[..1], None)?, ["m1", "m2"]);
    assert!(l
        .deletable("old-isp", &routes, Some(Duration::from_secs(3600)))?
        .is_empty());
    assert!(l.deletable("old-isp", &[], None)?.is_empty());
    assert!(l.deletable("other", &routes, None).is_err());

    l.mark_deleted("old-isp", &["m1"])?;
    assert!(l.deletable("old-isp", &routes, None)?.is_empty());
    assert_eq!(l.route_status(&a)?.states.deleted, 1);
    Ok(())
}

#[test]
fn uidvalidity_change_forgets_the_mailbox_record() -> TestResult {
    let (_dir, path) = temp();
    let mut l = Ledger::open(&path)?;
    let seven = NonZeroU32::new(7).ok_or("zero")?;
    let eight = NonZeroU32::new(8).ok_or("zero")?;
    assert_eq!(l.uidvalidity("new", "INBOX")?, None);
    assert_eq!(
        l.set_uidvalidity("new", "INBOX", seven)?,
        UidValidityChange::First
    );
    assert_eq!(
        l.set_uidvalidity("new", "INBOX", seven)?,
        UidValidityChange::Unchanged
    );
    copy(&mut l, &inbox(), "m1", hash(1), 3)?;
    l.record_target_messages(
        "new",
        "INBOX",
        &[TargetMessage {
            hash: hash(9),
            uid: nz(4),
            size: Some(5),
        }],
    )?;
    let uids: Vec<_> = l
        .target_messages("new", "INBOX")?
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, [nz(3), nz(4)]);
    assert_eq!(l.highest_uid("new", "INBOX")?, nz(4));
    let present = l.hashes_present("new", "INBOX", &[hash(1), hash(2), hash(9)])?;
    assert_eq!(present.len(), 2);

    assert_eq!(
        l.set_uidvalidity("new", "INBOX", eight)?,
        UidValidityChange::Changed { old: seven }
    );
    assert_eq!(l.uidvalidity("new", "INBOX")?, Some(eight));
    // The recreated mailbox is unknown until reconciled.
    assert!(l.target_messages("new", "INBOX")?.is_empty());
    assert_eq!(l.highest_uid("new", "INBOX")?, None);
    assert!(!l.has_hash("new", "INBOX", &hash(1))?);
    // An APPENDUID under the old UIDVALIDITY is not recorded as a UID.
    copy(&mut l, &inbox(), "m2", hash(2), 6)?;
    let m2 = l
        .target_messages("new", "INBOX")?
        .into_iter()
        .find(|m| m.hash == hash(2));
    assert_eq!(m2.map(|m| m.uid), Some(None));
    Ok(())
}

#[test]
fn runs_show_in_status() -> TestResult {
    let (_dir, path) = temp();
    let mut l = Ledger::open(&path)?;
    let first = l.start_run(&inbox())?;
    l.finish_run(
        first,
        &RunCounts {
            copied: 3,
            bytes: 300,
            ..RunCounts::default()
        },
        None,
    )?;
    let second = l.start_run(&inbox())?;
    let status = l.route_status(&inbox())?;
    let last = status.last_run.ok_or("no run")?;
    assert_eq!((last.id, last.finished), (second, None));
    l.finish_run(second, &RunCounts::default(), Some("connection reset"))?;
    let last = l.route_status(&inbox())?.last_run.ok_or("no run")?;
    assert_eq!(last.error.as_deref(), Some("connection reset"));
    assert!(last.finished.is_some_and(|f| f >= last.started));
    Ok(())
}
