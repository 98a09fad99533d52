//! The realistic test corpus (`tests/support/corpus.rs`): deterministic, no two messages alike (bytes or identity), every kind of message present, and Dovecot's POP3 serving it as `e2e::as_copied` assumes.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use mailferry::message::{identity, message_id};
use support::corpus::{
    everything, exact_duplicates, python_email_data_dir, python_email_samples,
    python_samples_named, realistic, realistic_named,
};

/// The lines of a message as mailferry splits them (CRLF, LF or CR ends a
/// line): (content, ending).
fn lines(m: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < m.len() {
        let end = match m[i] {
            b'\r' if m.get(i + 1) == Some(&b'\n') => 2,
            b'\r' | b'\n' => 1,
            _ => {
                i += 1;
                continue;
            }
        };
        out.push((&m[start..i], &m[i..i + end]));
        i += end;
        start = i;
    }
    if start < m.len() {
        out.push((&m[start..], &m[m.len()..]));
    }
    out
}

/// (header block, body): split at the first empty line; no body when
/// there is none.
fn split(m: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut offset = 0;
    for (content, ending) in lines(m) {
        if content.is_empty() {
            return (&m[..offset], Some(&m[offset + ending.len()..]));
        }
        offset += content.len() + ending.len();
    }
    (m, None)
}

fn header_lines(m: &[u8]) -> Vec<&[u8]> {
    lines(split(m).0).into_iter().map(|(c, _)| c).collect()
}

fn body_lines(m: &[u8]) -> Vec<&[u8]> {
    split(m)
        .1
        .map(|b| lines(b).into_iter().map(|(c, _)| c).collect())
        .unwrap_or_default()
}

fn contains(m: &[u8], needle: &[u8]) -> bool {
    m.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn field<'a>(m: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header_lines(m).into_iter().find_map(|l| {
        let colon = l.iter().position(|&b| b == b':')?;
        l[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| l[colon + 1..].trim_ascii())
    })
}

#[test]
fn every_call_gives_the_same_bytes() {
    assert_eq!(realistic("det"), realistic("det"));
    assert_eq!(everything("det"), everything("det"));
    assert_eq!(exact_duplicates("det"), exact_duplicates("det"));
    assert_eq!(python_email_samples(), python_email_samples());
    assert_ne!(realistic("det"), realistic("other"));
}

#[test]
fn every_message_has_its_own_bytes_and_identity() {
    let named: Vec<(String, Vec<u8>)> = realistic_named("distinct")
        .into_iter()
        .map(|(n, m)| (n.to_string(), m))
        .chain(
            python_samples_named().iter().map(|(n, _)| n.clone()).zip(
                everything("distinct")
                    .into_iter()
                    .skip(realistic("x").len()),
            ),
        )
        .collect();
    assert_eq!(named.len(), everything("distinct").len());
    let mut by_bytes: HashMap<&[u8], &str> = HashMap::new();
    let mut by_identity = HashMap::new();
    for (name, m) in &named {
        if let Some(other) = by_bytes.insert(m, name) {
            panic!("{other} and {name} are byte-equal");
        }
        if let Some(other) = by_identity.insert(identity(m), name) {
            panic!("{other} and {name} have one identity");
        }
    }
    // Two tags share nothing, not even an identity.
    let other: Vec<_> = everything("distinct-2")
        .iter()
        .map(|m| identity(m))
        .collect();
    for id in &other {
        assert!(
            !by_identity.contains_key(id),
            "tags distinct and distinct-2 share {}",
            by_identity[id]
        );
    }
}

#[test]
fn the_tag_is_in_every_header() {
    let tag = "tag-4f2a";
    for (i, m) in everything(tag).iter().enumerate() {
        let (head, _) = split(m);
        assert!(
            contains(head, tag.as_bytes()),
            "message {i} has no {tag} in its header: {:?}",
            String::from_utf8_lossy(&m[..m.len().min(300)])
        );
    }
}

#[test]
fn sizes_range_from_tiny_to_two_megabytes() {
    let all = realistic("sizes");
    assert!((40..=60).contains(&all.len()), "{} messages", all.len());
    let sizes: Vec<usize> = all.iter().map(Vec::len).collect();
    let total: usize = sizes.iter().sum();
    let max = *sizes.iter().max().unwrap();
    let min = *sizes.iter().min().unwrap();
    eprintln!(
        "realistic: {} messages, {total} bytes, {min}..={max}; with the Python samples: {} messages, {} bytes",
        all.len(),
        everything("sizes").len(),
        everything("sizes").iter().map(Vec::len).sum::<usize>()
    );
    assert!(min < 300, "smallest {min}");
    assert!((1_800_000..2_300_000).contains(&max), "largest {max}");
    assert!(sizes.iter().filter(|&&s| s >= 200_000).count() >= 3);
    assert!(sizes.iter().any(|&s| (1_000..10_000).contains(&s)));
    assert!(sizes.iter().any(|&s| (10_000..100_000).contains(&s)));
}

type Check = Box<dyn Fn(&[u8]) -> bool>;

#[test]
fn every_kind_of_message_is_there() {
    let all = everything("kinds");
    let has = |pat: &'static [u8]| -> Check { Box::new(move |m: &[u8]| contains(m, pat)) };
    let checks: Vec<(&str, Check)> = vec![
        ("NUL byte", Box::new(|m: &[u8]| m.contains(&0))),
        (
            "bare LF",
            Box::new(|m: &[u8]| lines(m).iter().any(|(_, e)| *e == b"\n")),
        ),
        (
            "bare CR",
            Box::new(|m: &[u8]| lines(m).iter().any(|(_, e)| *e == b"\r")),
        ),
        (
            "CRLF",
            Box::new(|m: &[u8]| lines(m).iter().any(|(_, e)| *e == b"\r\n")),
        ),
        (
            "mixed line ends",
            Box::new(|m: &[u8]| {
                let mut kinds: Vec<&[u8]> = lines(m)
                    .iter()
                    .map(|(_, e)| *e)
                    .filter(|e| !e.is_empty())
                    .collect();
                kinds.sort();
                kinds.dedup();
                kinds.len() >= 2
            }),
        ),
        (
            "no final line end",
            Box::new(|m: &[u8]| !m.ends_with(b"\n") && !m.ends_with(b"\r")),
        ),
        (
            "line of 1,000..10,000 bytes",
            Box::new(|m: &[u8]| {
                lines(m)
                    .iter()
                    .any(|(c, _)| (1_000..=10_000).contains(&c.len()))
            }),
        ),
        (
            "line over 10,000 bytes",
            Box::new(|m: &[u8]| lines(m).iter().any(|(c, _)| c.len() > 10_000)),
        ),
        ("base64", has(b"Content-Transfer-Encoding: base64")),
        (
            "quoted-printable",
            has(b"Content-Transfer-Encoding: quoted-printable"),
        ),
        (
            "QP soft line break",
            Box::new(|m: &[u8]| {
                contains(m, b"quoted-printable") && body_lines(m).iter().any(|l| l.ends_with(b"="))
            }),
        ),
        (
            "QP =00 and =FF",
            Box::new(|m: &[u8]| contains(m, b"=00") && contains(m, b"=FF")),
        ),
        ("binary CTE", has(b"Content-Transfer-Encoding: binary")),
        ("multipart/mixed", has(b"multipart/mixed")),
        ("multipart/alternative", has(b"multipart/alternative")),
        ("text/html part", has(b"Content-Type: text/html")),
        ("message/rfc822", has(b"message/rfc822")),
        (
            "8-bit header byte",
            Box::new(|m: &[u8]| split(m).0.iter().any(|&b| b >= 0x80)),
        ),
        (
            "raw UTF-8 header",
            Box::new(|m: &[u8]| {
                let h = split(m).0;
                h.iter().any(|&b| b >= 0x80) && std::str::from_utf8(h).is_ok()
            }),
        ),
        (
            "raw Latin-1 header",
            Box::new(|m: &[u8]| {
                let h = split(m).0;
                h.iter().any(|&b| b >= 0x80) && std::str::from_utf8(h).is_err()
            }),
        ),
        (
            "RFC 2047 encoded-word",
            Box::new(|m: &[u8]| contains(split(m).0, b"?B?") || contains(split(m).0, b"?Q?")),
        ),
        (
            "folded header",
            Box::new(|m: &[u8]| {
                header_lines(m)
                    .iter()
                    .skip(1)
                    .any(|l| l.starts_with(b" ") || l.starts_with(b"\t"))
            }),
        ),
        (
            "body line `From `",
            Box::new(|m: &[u8]| body_lines(m).iter().any(|l| l.starts_with(b"From "))),
        ),
        (
            "body line `>From `",
            Box::new(|m: &[u8]| body_lines(m).iter().any(|l| l.starts_with(b">From "))),
        ),
        (
            "body line `.`",
            Box::new(|m: &[u8]| body_lines(m).iter().any(|l| *l == b".")),
        ),
        (
            "no Message-ID",
            Box::new(|m: &[u8]| message_id(m).is_none()),
        ),
        ("header only", Box::new(|m: &[u8]| split(m).1.is_none())),
        ("empty body", Box::new(|m: &[u8]| split(m).1 == Some(b""))),
        (
            "Status, X-UID and X-UIDL",
            Box::new(|m: &[u8]| {
                field(m, "Status").is_some()
                    && field(m, "X-UID").is_some()
                    && field(m, "X-UIDL").is_some()
            }),
        ),
        ("at least 200 KB", Box::new(|m: &[u8]| m.len() >= 200_000)),
    ];
    let mut table = String::new();
    let mut missing = Vec::new();
    for (what, check) in &checks {
        let n = all.iter().filter(|m| check(m)).count();
        table += &format!("{n:4}  {what}\n");
        if n == 0 {
            missing.push(*what);
        }
    }
    eprintln!("{} messages:\n{table}", all.len());
    assert!(missing.is_empty(), "no message for {missing:?}");

    // Relations between messages.
    let ids: Vec<Option<String>> = all.iter().map(|m| message_id(m)).collect();
    let dup_id = (0..all.len()).any(|i| {
        (i + 1..all.len()).any(|j| ids[i].is_some() && ids[i] == ids[j] && all[i] != all[j])
    });
    assert!(dup_id, "two messages with one Message-ID");
    let one_byte_apart = (0..all.len()).any(|i| {
        (i + 1..all.len()).any(|j| {
            all[i].len() == all[j].len()
                && all[i].iter().zip(&all[j]).filter(|(a, b)| a != b).count() == 1
                && split(&all[i]).0 == split(&all[j]).0
        })
    });
    assert!(one_byte_apart, "same header, bodies one byte apart");
    let same_body = (0..all.len()).any(|i| {
        (i + 1..all.len()).any(|j| {
            let (hi, bi) = split(&all[i]);
            let (hj, bj) = split(&all[j]);
            bi.is_some() && bi == bj && hi != hj && bi != Some(b"")
        })
    });
    assert!(same_body, "same body, headers apart");
    let mut uidls: HashMap<&[u8], usize> = HashMap::new();
    for m in &all {
        if let Some(v) = field(m, "X-UIDL") {
            *uidls.entry(v).or_default() += 1;
        }
    }
    assert!(
        uidls.values().any(|&n| n >= 3),
        "one X-UIDL field value in three messages: {uidls:?}"
    );
}

/// The identity drops the fields stores add (docs/ARCHITECTURE.md, "Message identity"): the message
/// with them is the same message without them, and still unlike the rest.
#[test]
fn store_added_fields_are_what_the_identity_ignores() {
    let (_, m) = realistic_named("store")
        .into_iter()
        .find(|(n, _)| *n == "store-fields")
        .expect("store-fields");
    let (head, body) = split(&m);
    let ignored = [
        "Return-Path",
        "Status",
        "X-Status",
        "X-Keywords",
        "X-UID",
        "X-UIDL",
        "Content-Length",
        "Lines",
        "X-Mozilla-Status",
        "X-Mozilla-Status2",
        "X-IMAPbase",
        "X-IMAP",
        "X-Message-Flag",
        "X-Yahoo-Newman-Property",
    ];
    let mut kept = Vec::new();
    let mut dropping = false;
    for (content, ending) in lines(head) {
        if !content.starts_with(b" ") && !content.starts_with(b"\t") {
            let name = content.split(|&b| b == b':').next().unwrap_or_default();
            dropping = ignored
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f.as_bytes()));
        }
        if !dropping {
            kept.extend_from_slice(content);
            kept.extend_from_slice(ending);
        }
    }
    assert!(
        kept.len() < head.len() / 2,
        "most of its header is store fields"
    );
    kept.extend_from_slice(b"\n");
    kept.extend_from_slice(body.expect("a body"));
    assert_eq!(identity(&kept), identity(&m));
}

#[test]
fn python_samples_are_sorted_and_byte_exact() {
    let dir = python_email_data_dir();
    let named = python_samples_named();
    assert!(named.len() >= 40, "{} samples in {dir:?}", named.len());
    let names: Vec<&String> = named.iter().map(|(n, _)| n).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for (name, bytes) in named {
        assert_eq!(&std::fs::read(dir.join(name)).unwrap(), bytes, "{name}");
    }
    assert_eq!(
        python_email_samples(),
        named.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn exact_duplicates_are_byte_identical_pairs() {
    let d = exact_duplicates("dups");
    assert_eq!(d.len(), 6);
    for i in 0..3 {
        assert_eq!(d[i], d[i + 3]);
        for j in i + 1..3 {
            assert_ne!(d[i], d[j]);
            assert_ne!(identity(&d[i]), identity(&d[j]));
        }
    }
    let all = everything("dups");
    assert!(d.iter().all(|m| !all.contains(m)));
    assert!(d.iter().any(|m| m.contains(&0)));
    assert!(d.iter().any(|m| contains(m, b"base64")));
}

/// What Dovecot's POP3 `RETR` serves for every corpus message (as loaded
/// into a Maildir by the tests) is what `e2e::as_copied` builds on:
/// `Dovecot::as_served` plus a final CRLF where it lacks one.
#[test]
fn dovecot_pop3_serves_the_corpus_as_modelled() {
    let dovecot = support::dovecot::shared();
    let user = dovecot.user("served");
    let mail = support::e2e::corpus_with_big("served", 3, 10);
    dovecot.load(&user, "INBOX", &mail);
    let stream = TcpStream::connect(("127.0.0.1", dovecot.pop3_port())).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut status = |reader: &mut BufReader<TcpStream>| {
        line.clear();
        reader.read_until(b'\n', &mut line).unwrap();
        assert!(
            line.starts_with(b"+OK"),
            "{:?}",
            String::from_utf8_lossy(&line)
        );
    };
    status(&mut reader);
    write!(out, "USER {}\r\nPASS {}\r\n", user.name, user.password).unwrap();
    status(&mut reader);
    status(&mut reader);
    let mut wrong = Vec::new();
    for (i, message) in mail.iter().enumerate() {
        write!(out, "RETR {}\r\n", i + 1).unwrap();
        status(&mut reader);
        let mut served = Vec::new();
        loop {
            let mut l = Vec::new();
            reader.read_until(b'\n', &mut l).unwrap();
            assert!(!l.is_empty(), "connection closed inside RETR {}", i + 1);
            if l == b".\r\n" {
                break;
            }
            let unstuffed = if l.starts_with(b".") { &l[1..] } else { &l[..] };
            served.extend_from_slice(unstuffed);
        }
        let mut want = support::dovecot::Dovecot::as_served(message);
        if !want.ends_with(b"\r\n") {
            want.extend_from_slice(b"\r\n");
        }
        if served != want {
            let at = served
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(served.len().min(want.len()));
            wrong.push(format!(
                "message {} ({} bytes): served {} bytes, model {}; first difference at {at}: served {:?}, model {:?}",
                i + 1,
                message.len(),
                served.len(),
                want.len(),
                String::from_utf8_lossy(&served[at.saturating_sub(20)..(at + 20).min(served.len())]),
                String::from_utf8_lossy(&want[at.saturating_sub(20)..(at + 20).min(want.len())]),
            ));
        }
    }
    write!(out, "QUIT\r\n").unwrap();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
