//! Measures the ledger's hot paths and the identity hash: run with
//! `cargo run --release --example ledger_bench [DIR]` (DIR defaults to a temp dir;
//! give a path on the disk the real ledger will use, fsync cost depends on it).

use std::num::NonZeroU32;
use std::time::Instant;

use mailferry::ledger::{Ledger, NewIntent, Outcome, RouteKey, SeenMessage};
use mailferry::message::{identity, Hash};

fn hash(n: u32) -> Hash {
    Hash(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::args_os().nth(1) {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let mut ledger = Ledger::open(dir.path().join("bench.db"))?;
    let route = RouteKey::new("pop", "imap", "INBOX");

    let uidls: Vec<String> = (0..100_000).map(|i| format!("{i:08x}-UIDL")).collect();
    let seen: Vec<SeenMessage<'_>> = (0u32..)
        .zip(&uidls)
        .map(|(i, u)| SeenMessage {
            uidl: u,
            size: 4096,
            hash: hash(i),
        })
        .collect();
    let t = Instant::now();
    ledger.record_seen(&route, &seen)?;
    println!("record 100,000 seen (1 transaction): {:?}", t.elapsed());
    let dups: Vec<(&str, Outcome<'_>)> = uidls
        .iter()
        .map(|u| (u.as_str(), Outcome::Duplicate { of: None }))
        .collect();
    let t = Instant::now();
    ledger.record_outcomes(&route, &dups)?;
    println!("record 100,000 outcomes (1 transaction): {:?}", t.elapsed());

    for round in 0..3 {
        let t = Instant::now();
        let settled = ledger.settled(&route, &uidls, 3)?;
        println!(
            "settled lookup of 100,000 UIDLs (all settled), run {round}: {:?} ({} found)",
            t.elapsed(),
            settled.len()
        );
    }
    let fresh: Vec<String> = (0..100_000).map(|i| format!("new-{i}")).collect();
    let t = Instant::now();
    let none = ledger.settled(&route, &fresh, 3)?;
    println!(
        "settled lookup of 100,000 unknown UIDLs: {:?} ({} found)",
        t.elapsed(),
        none.len()
    );

    for batch in [100usize, 1] {
        let n = if batch == 1 { 1_000 } else { 10_000 };
        let copy_route = RouteKey::new("pop", "imap", format!("Copies-{batch}"));
        let uidls: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let t = Instant::now();
        for (chunk_no, chunk) in uidls.chunks(batch).enumerate() {
            let base = u32::try_from(chunk_no * batch)? + 1_000_000;
            let seen: Vec<SeenMessage<'_>> = (base..)
                .zip(chunk)
                .map(|(i, u)| SeenMessage {
                    uidl: u,
                    size: 4096,
                    hash: hash(i),
                })
                .collect();
            ledger.record_seen(&copy_route, &seen)?;
            let intents: Vec<NewIntent<'_>> = seen
                .iter()
                .map(|s| NewIntent {
                    route: &copy_route,
                    uidl: s.uidl,
                    hash: s.hash,
                    size: s.size,
                    uidvalidity: NonZeroU32::new(1),
                    uidnext_before: NonZeroU32::new(1),
                })
                .collect();
            let ids = ledger.add_intents(&intents)?;
            let appended: Vec<_> = ids
                .iter()
                .zip(1u32..)
                .map(|(id, uid)| (*id, NonZeroU32::new(uid)))
                .collect();
            ledger.settle_appended(&appended, false)?;
        }
        let e = t.elapsed();
        println!(
            "record {n} copies (seen + intents + settle, batches of {batch}, 3 FULL commits per batch): {e:?} ({:.0} copies/s)",
            n as f64 / e.as_secs_f64()
        );
    }

    let body: Vec<u8> = b"Subject: x\r\nStatus: RO\r\n\r\n"
        .iter()
        .copied()
        .chain((0..1_000_000).map(|i| {
            if i % 72 == 71 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        }))
        .collect();
    let t = Instant::now();
    let rounds = 200;
    for _ in 0..rounds {
        std::hint::black_box(identity(std::hint::black_box(&body)));
    }
    let mb = (body.len() * rounds) as f64 / 1e6;
    println!(
        "identity of a 1 MB LF message: {:.0} MB/s",
        mb / t.elapsed().as_secs_f64()
    );
    let crlf = mailferry::message::to_crlf(&body).into_owned();
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(identity(std::hint::black_box(&crlf)));
    }
    println!(
        "identity of a 1 MB CRLF message: {:.0} MB/s",
        mb / t.elapsed().as_secs_f64()
    );
    Ok(())
}
