//! A realistic, deterministic mail corpus for tests that compare copied mail with its source.
//!
//! - [`realistic`]: ~57 generated messages of the kinds real maildrops hold
//!   and that break mail tools: MIME parts in quoted-printable and base64
//!   (valid, truncated, invalid), nested `message/rfc822`, raw 8-bit and
//!   RFC 2047 headers, NUL bytes, bare LF / bare CR / mixed line ends, lines
//!   over 1,000 and 10,000 bytes, folded headers, `From ` and `.` lines,
//!   missing and shared Message-IDs, near-duplicates, store-added fields, and
//!   sizes from a few dozen bytes to ~2 MB. Each carries `tag` in its header,
//!   so corpora of different tests never share a message.
//! - [`python_email_samples`]: CPython's `email` test messages, byte-exact.
//! - [`everything`]: both, what content-comparing tests should use.
//! - [`exact_duplicates`]: byte-identical pairs, for dedup tests.
//!
//! No randomness but a fixed-seed splitmix64: every call gives the same bytes.
//! Every message of [`everything`] has its own [`mailferry::message::identity`]
//! (near-duplicates differ in a byte the identity keeps; messages with
//! store-added fields differ elsewhere too), so a migration of it must copy
//! each one.

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The generated messages, in a fixed order. See the module doc.
pub fn realistic(tag: &str) -> Vec<Vec<u8>> {
    realistic_named(tag).into_iter().map(|(_, m)| m).collect()
}

/// [`realistic`] with each message's name (its kind), for failure messages.
pub fn realistic_named(tag: &str) -> Vec<(&'static str, Vec<u8>)> {
    let mut c = Corpus {
        tag,
        out: Vec::new(),
    };
    c.mime_parts();
    c.headers();
    c.line_ends();
    c.long_lines();
    c.body_hazards();
    c.identities();
    c.store_fields();
    c.charsets();
    c.big();
    c.out
}

/// CPython's `email` test messages (`test/test_email/data/msg_*.txt`),
/// sorted by file name, byte-exact. Panics (naming the Debian package)
/// when Python's test suite is not installed.
pub fn python_email_samples() -> Vec<Vec<u8>> {
    python_samples_named()
        .iter()
        .map(|(_, m)| m.clone())
        .collect()
}

/// [`python_email_samples`] with their file names.
pub fn python_samples_named() -> &'static [(String, Vec<u8>)] {
    static SAMPLES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let dir = python_email_data_dir();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("list {dir:?}: {e}"))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("msg_") && n.ends_with(".txt"))
            .collect();
        names.sort();
        assert!(!names.is_empty(), "no msg_*.txt in {dir:?}");
        names
            .into_iter()
            .map(|n| {
                let bytes = std::fs::read(dir.join(&n)).unwrap_or_else(|e| panic!("read {n}: {e}"));
                (n, bytes)
            })
            .collect()
    })
}

/// `realistic(tag)` and the Python samples, no two byte-equal. Each Python
/// sample gets one header line `X-Corpus-Tag: <tag>` (in its own line-end
/// style; first, or right after a leading mbox `From ` envelope line), so
/// that corpora of two tags share no message either: tests load several
/// corpora into one mailbox.
pub fn everything(tag: &str) -> Vec<Vec<u8>> {
    let mut all = realistic(tag);
    for sample in python_email_samples() {
        let tagged = tag_sample(&sample, tag);
        if !all.contains(&tagged) {
            all.push(tagged);
        }
    }
    all
}

/// Three messages, each twice (`a b c a b c`), byte-identical in each pair:
/// a plain one, one with base64 and quoted-printable parts, one with bare LF
/// line ends and a NUL.
pub fn exact_duplicates(tag: &str) -> Vec<Vec<u8>> {
    let plain = crlf(&format!(
        "From: Twin Sender <twin@corpus.example>\nTo: user@example.net\nSubject: [{tag}] exact duplicate, plain\nDate: 3 Mar 2021 09:15:00 +0000\nMessage-ID: <twin-plain.{tag}@corpus.example>\n\nThe same bytes twice.\n"
    ));
    let mime = crlf(&format!(
        "From: Twin Sender <twin@corpus.example>\nTo: user@example.net\nSubject: [{tag}] exact duplicate, MIME\nDate: 3 Mar 2021 09:16:00 +0000\nMessage-ID: <twin-mime.{tag}@corpus.example>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"twin\"\n\n--twin\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nGr=C3=BC=C3=9Fe, twice=\n over.\n--twin\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n{}--twin--\n",
        String::from_utf8(b64(&SplitMix(7).bytes(300), 76, "\n")).expect("base64 is ASCII")
    ));
    let mut lf = format!(
        "From: Twin Sender <twin@corpus.example>\nSubject: [{tag}] exact duplicate, LF and NUL\nMessage-ID: <twin-lf.{tag}@corpus.example>\n\nA NUL: "
    )
    .into_bytes();
    lf.extend_from_slice(b"\0 and on.\n");
    let mut out = vec![plain, mime, lf];
    out.extend(out.clone());
    out
}

/// `sample` with `X-Corpus-Tag: <tag>` as its first header line: its first
/// line, or its second after an mbox envelope line (`From sender date`),
/// which stays in front.
fn tag_sample(sample: &[u8], tag: &str) -> Vec<u8> {
    let first_eol = sample.iter().position(|&b| b == b'\n');
    let eol: &[u8] = match first_eol {
        Some(i) if i > 0 && sample[i - 1] == b'\r' => b"\r\n",
        _ => b"\n",
    };
    let at = match first_eol {
        Some(i) if sample.starts_with(b"From ") => i + 1,
        _ => 0,
    };
    let mut out = sample[..at].to_vec();
    out.extend_from_slice(format!("X-Corpus-Tag: {tag}").as_bytes());
    out.extend_from_slice(eol);
    out.extend_from_slice(&sample[at..]);
    out
}

/// Where the CPython email test data lives, asked of `python3` itself;
/// panics naming the Debian package when it is missing.
pub fn python_email_data_dir() -> PathBuf {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import test.test_email, os; print(os.path.join(os.path.dirname(test.test_email.__file__), 'data'))",
        ])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
        other => {
            let version = std::process::Command::new("python3")
                .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|| "3.X".into());
            panic!(
                "Python's email test messages (test.test_email) are missing: install the Debian \
                 package libpython{version}-testsuite (scripts/test does); python3 said: {:?}",
                other.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            )
        }
    }
}

// ------------------------------------------------------------------ helpers

/// splitmix64 with a fixed seed: deterministic filler bytes.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// Words for prose, some with non-ASCII letters (so QP has work to do).
const WORDS: &[&str] = &[
    "the",
    "mail",
    "server",
    "migration",
    "invoice",
    "meeting",
    "café",
    "naïve",
    "Größe",
    "façade",
    "smörgåsbord",
    "déjà",
    "vu",
    "quarterly",
    "report",
    "attached",
    "please",
    "find",
    "regards",
    "tomorrow",
    "über",
    "Ærøskøbing",
    "coöperate",
    "€",
    "budget",
    "résumé",
    "£",
    "schedule",
    "and",
    "of",
    "to",
    "a",
    "in",
    "is",
    "for",
    "on",
    "with",
    "as",
    "Zürich",
    "Łódź",
    "naïveté",
    "jalapeño",
    "piñata",
    "crème",
    "brûlée",
    "日本語",
    "テスト",
    "mailbox",
    "archive",
    "copy",
    "exactly",
    "once",
    "delivery",
    "status",
    "x=y",
    "50%",
    "=",
    "tab\there",
];

/// `words` words of prose broken into lines of about 72 columns (`\n`).
fn prose(rng: &mut SplitMix, words: usize) -> String {
    let mut out = String::new();
    let mut col = 0;
    for i in 0..words {
        let w = WORDS[rng.below(WORDS.len())];
        if col > 0 && col + w.len() > 72 {
            out.push('\n');
            col = 0;
        } else if col > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(w);
        col += w.len();
        if i % 97 == 96 {
            out.push_str(".\n\n");
            col = 0;
        }
    }
    out.push('\n');
    out
}

/// Quoted-printable (RFC 2045 §6.7): `\n` in `data` is a hard line break
/// (`eol`), lines are soft-broken (`=` + `eol`) before 76 columns, and
/// whitespace before a line break is encoded.
fn qp(data: &[u8], eol: &str) -> String {
    let mut out = String::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push_str(eol);
        }
        let mut col = 0;
        for (j, &b) in line.iter().enumerate() {
            let last = j + 1 == line.len();
            let literal =
                ((b == b' ' || b == b'\t') && !last) || ((33..=126).contains(&b) && b != b'=');
            let piece = if literal {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            if col + piece.len() > 75 {
                out.push('=');
                out.push_str(eol);
                col = 0;
            }
            out.push_str(&piece);
            col += piece.len();
        }
    }
    out
}

/// Base64 in lines of `width` characters each ended by `eol` (one line
/// when `width` is 0).
fn b64(data: &[u8], width: usize, eol: &str) -> Vec<u8> {
    let text = STANDARD.encode(data);
    if width == 0 {
        return format!("{text}{eol}").into_bytes();
    }
    let mut out = Vec::with_capacity(text.len() + text.len() / width * eol.len() + 4);
    for chunk in text.as_bytes().chunks(width) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(eol.as_bytes());
    }
    out
}

fn b64s(data: &[u8], eol: &str) -> String {
    String::from_utf8(b64(data, 76, eol)).expect("base64 is ASCII")
}

/// An RFC 2047 "B" encoded-word.
fn ew_b(charset: &str, text: &[u8]) -> String {
    format!("=?{charset}?B?{}?=", STANDARD.encode(text))
}

/// An RFC 2047 "Q" encoded-word.
fn ew_q(charset: &str, text: &[u8]) -> String {
    let mut out = format!("=?{charset}?Q?");
    for &b in text {
        match b {
            b' ' => out.push('_'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("={b:02X}")),
        }
    }
    out.push_str("?=");
    out
}

/// Every `\n` of `text` as CRLF.
fn crlf(text: &str) -> Vec<u8> {
    crlf_bytes(text.as_bytes())
}

fn crlf_bytes(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 30);
    for &b in text {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A date for message `k` (no weekday, as RFC 5322 allows).
fn date(k: usize) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const ZONES: [&str; 5] = ["+0100", "-0500", "+0000", "+0530", "-0800"];
    format!(
        "{} {} {} {:02}:{:02}:{:02} {}",
        1 + k % 28,
        MONTHS[k % 12],
        2015 + k % 9,
        (k * 7) % 24,
        (k * 13) % 60,
        (k * 29) % 60,
        ZONES[k % ZONES.len()]
    )
}

/// The payloads of the big messages: the same for every tag, made once.
struct Big {
    /// ~205 KB of quoted-printable prose.
    qp_text: String,
    /// ~560 KB: an HTML table, base64 (CRLF lines).
    html_b64: String,
    /// ~1.45 MB of filler, base64 (CRLF lines): ~2 MB.
    zip_b64: String,
}

fn big_payloads() -> &'static Big {
    static BIG: OnceLock<Big> = OnceLock::new();
    BIG.get_or_init(|| {
        let mut rng = SplitMix(0x00c0_ffee);
        let text = prose(&mut rng, 21_000);
        let mut html = String::from(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Newsletter</title></head>\n<body><table>\n",
        );
        let mut row = 0;
        while html.len() < 405_000 {
            row += 1;
            html.push_str(&format!(
                "<tr><td class=\"n\">{row}</td><td>{}</td><td style=\"color:#{:06x}\">{}</td></tr>\n",
                WORDS[rng.below(WORDS.len())],
                rng.next() & 0xff_ffff,
                prose(&mut rng, 6).trim_end()
            ));
        }
        html.push_str("</table></body></html>\n");
        let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
        zip.extend(rng.bytes(1_450_000));
        Big {
            qp_text: qp(text.as_bytes(), "\n"),
            html_b64: b64s(html.as_bytes(), "\r\n"),
            zip_b64: b64s(&zip, "\r\n"),
        }
    })
}

// ------------------------------------------------------------------ the corpus

struct Corpus<'t> {
    tag: &'t str,
    out: Vec<(&'static str, Vec<u8>)>,
}

impl Corpus<'_> {
    fn push(&mut self, name: &'static str, message: Vec<u8>) {
        debug_assert!(
            self.out.iter().all(|(n, _)| *n != name),
            "two messages named {name}"
        );
        self.out.push((name, message));
    }

    /// An ordinary header block (`\n` line ends, no empty line after it):
    /// Received chain, From, To, Subject with the tag, Date, Message-ID.
    fn head(&self, name: &str, subject: &str) -> String {
        let k = self.out.len();
        let tag = self.tag;
        format!(
            "Return-Path: <sender{k}@corpus.example>\n\
             Received: from mx{k}.corpus.example (mx{k}.corpus.example [192.0.2.{ip}])\n\
             \tby pop.example.net (Postfix) with ESMTPS id 4F{k:04X}A1\n\
             \tfor <user@example.net>; {date}\n\
             From: Corpus Sender {k} <sender{k}@corpus.example>\n\
             To: user@example.net\n\
             Subject: [{tag}] {subject}\n\
             Date: {date}\n\
             Message-ID: <{name}.{tag}@corpus.example>\n\
             MIME-Version: 1.0\n",
            ip = 1 + k % 250,
            date = date(k),
        )
    }

    fn mime_parts(&mut self) {
        let mut rng = SplitMix(1);
        let plain = prose(&mut rng, 180);
        let html = format!(
            "<html><body><p style=\"font-family: Arial; margin: 0\">{}</p>\n<p>A very long paragraph that a mailer would soft-break: {}</p></body></html>\n",
            prose(&mut rng, 40).replace('\n', "<br>\n"),
            prose(&mut rng, 60).replace('\n', " ")
        );

        let m = format!(
            "{}Content-Type: multipart/alternative; boundary=\"alt-1\"\n\nThis is a multi-part message in MIME format.\n\n--alt-1\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n{}\n--alt-1\nContent-Type: text/html; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n{}\n--alt-1--\n",
            self.head("alt-qp", "multipart/alternative, both parts quoted-printable"),
            qp(plain.as_bytes(), "\n"),
            qp(html.as_bytes(), "\n"),
        );
        self.push("alt-qp", m.into_bytes());

        let m = format!(
            "{}Content-Type: multipart/alternative;\n boundary=\"----=_Part_4711_1234567.1580000000000\"\n\n------=_Part_4711_1234567.1580000000000\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{}\n------=_Part_4711_1234567.1580000000000\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{}\n------=_Part_4711_1234567.1580000000000--\n",
            self.head("alt-b64", "multipart/alternative, both parts base64, CRLF"),
            b64s(plain.as_bytes(), "\n"),
            b64s(html.as_bytes(), "\n"),
        );
        self.push("alt-b64", crlf(&m));

        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend(rng.bytes(3_000));
        let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
        pdf.extend(rng.bytes(5_000));
        let m = format!(
            "{}Content-Type: multipart/mixed; boundary=\"mixed-outer\"\n\n--mixed-outer\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\nTwo attachments: a picture inline, a PDF with an RFC 2231 file name.\n\n--mixed-outer\nContent-Type: image/png; name=\"chart.png\"\nContent-Transfer-Encoding: base64\nContent-Disposition: inline; filename=\"chart.png\"\nContent-ID: <chart@corpus.example>\n\n{}\n--mixed-outer\nContent-Type: application/pdf; name=\"=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?=\"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment;\n filename*=UTF-8''r%C3%A9sum%C3%A9.pdf\n\n{}--mixed-outer--\n",
            self.head("mixed-attach", "multipart/mixed with a PNG and a PDF, base64"),
            b64s(&png, "\n"),
            b64s(&pdf, "\n"),
        );
        self.push("mixed-attach", crlf(&m));

        let good = STANDARD.encode(rng.bytes(1_000));
        let truncated = &good[..good.len() - 7];
        let m = format!(
            "{}Content-Type: multipart/mixed; boundary=\"bad\"\n\n--bad\nContent-Type: text/plain\n\nThree broken base64 parts follow.\n--bad\nContent-Type: application/octet-stream; name=\"cut.bin\"\nContent-Transfer-Encoding: base64\n\n{}\n--bad\nContent-Type: image/jpeg; name=\"garbage.jpg\"\nContent-Transfer-Encoding: base64\n\n/9j/4AAQSkZJRgABAQ*&^%$#@!\nthis is not base64 at all\n====\nAAAA=BBBB\n--bad\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nNot encoded although the header says base64.\n--bad--\n",
            self.head("bad-b64", "truncated and invalid base64 parts"),
            truncated.as_bytes().chunks(76).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("\n"),
        );
        self.push("bad-b64", m.into_bytes());

        let m = format!(
            "{}Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nSoft line breaks join this sentence across three encoded lines, as every=\n mail client writes them when a paragraph is longer than seventy-six chara=\ncters.\nEscaped NUL here: =00 and a byte FF here: =FF and an equals sign: =3D.\nLatin-1 letters: caf=E9, na=EFve, Stra=DFe, =C0 bient=F4t.\nLower-case hex, which decoders tolerate: caf=e9.\nTrailing space kept with=20\nTrailing tab kept with=09\nAn encoded CR LF pair =0D=0A inside a line, and a lone =0D too.\nA soft break at the very end=\n",
            self.head("qp-escapes", "quoted-printable with soft breaks, =00 and =FF"),
        );
        self.push("qp-escapes", m.into_bytes());

        let text = format!(
            "{}\nA line with trailing spaces   \nA line with a trailing tab\t\n\n{}",
            prose(&mut rng, 120),
            prose(&mut rng, 80)
        );
        let m = format!(
            "{}Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n{}",
            self.head("qp-crlf", "quoted-printable, CRLF soft breaks"),
            qp(text.as_bytes(), "\n")
        );
        self.push("qp-crlf", crlf(&m));

        let tag = self.tag;
        let inner_text = prose(&mut rng, 90);
        let m = format!(
            "{head}Content-Type: multipart/mixed; boundary=\"outer\"\n\n--outer\nContent-Type: text/plain; charset=us-ascii\n\nSee the forwarded messages below.\n\n--outer\nContent-Type: message/rfc822\nContent-Disposition: inline\n\nFrom: Inner Sender <inner@corpus.example>\nTo: user@example.net\nSubject: inner: quarterly figures\nDate: {d}\nMessage-ID: <inner.{tag}@corpus.example>\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"inner\"\n\n--inner\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n{qp}\n--inner\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{html}\n--inner--\n\n--outer\nContent-Type: message/rfc822\n\nFrom: Deeper <deeper@corpus.example>\nSubject: Fwd: a forward inside the forward\nMIME-Version: 1.0\nContent-Type: message/rfc822\n\nFrom: Deepest <deepest@corpus.example>\nSubject: the original\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{orig}\n--outer--\n",
            head = self.head("rfc822", "Fwd: nested message/rfc822, three deep"),
            d = date(99),
            qp = qp(inner_text.as_bytes(), "\n"),
            html = b64s(html.as_bytes(), "\n"),
            orig = b64s(prose(&mut rng, 50).as_bytes(), "\n"),
        );
        self.push("rfc822", crlf(&m));

        let mut sig = vec![0x30, 0x82, 0x05, 0xdc];
        sig.extend(rng.bytes(1_500));
        let m = format!(
            "{}Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256;\n\tboundary=\"signed-b\"\n\nThis is a cryptographically signed message in MIME format.\n\n--signed-b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n{}\n--signed-b\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"smime.p7s\"\n\n{}\n--signed-b--\n",
            self.head("signed", "S/MIME signed: any changed byte breaks it"),
            qp(prose(&mut rng, 60).as_bytes(), "\n"),
            b64s(&sig, "\n"),
        );
        self.push("signed", crlf(&m));

        let m = format!(
            "{}Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"smime.p7m\"\n\n{}",
            self.head("smime", "S/MIME encrypted, one base64 part"),
            b64s(&rng.bytes(6_000), "\n"),
        );
        self.push("smime", m.into_bytes());

        let m = format!(
            "{head}From: Mail Delivery System <MAILER-DAEMON@mx.corpus.example>\nContent-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"report-b\"\n\n--report-b\nContent-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\nThis is the mail system at host mx.corpus.example.\n\nI'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n--report-b\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.corpus.example\nArrival-Date: {d}\n\nFinal-Recipient: rfc822; nobody@example.invalid\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 <nobody@example.invalid>: Recipient address rejected\n\n--report-b\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\nFrom: Corpus Sender <sender@corpus.example>\nTo: nobody@example.invalid\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\nMessage-ID: <bounced.{tag}@corpus.example>\n\n--report-b--\n",
            head = self.head("bounce", "Undelivered Mail Returned to Sender"),
            d = date(5),
        );
        self.push("bounce", m.into_bytes());

        let ics = crlf("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Corpus//EN\nMETHOD:REQUEST\nBEGIN:VEVENT\nUID:4711@corpus.example\nDTSTART:20200302T100000Z\nDTEND:20200302T110000Z\nSUMMARY:Mig\u{e9}ration review\nDESCRIPTION:Line one\\nLine two with a comma\\, escaped\nEND:VEVENT\nEND:VCALENDAR\n");
        let m = format!(
            "{}Content-Type: multipart/mixed; boundary=\"cal-mixed\"\n\n--cal-mixed\nContent-Type: multipart/alternative; boundary=\"cal-alt\"\n\n--cal-alt\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nMigration review =E2=80=93 Monday 10:00 UTC\n--cal-alt\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\nContent-Transfer-Encoding: base64\n\n{}\n--cal-alt--\n\n--cal-mixed\nContent-Type: application/ics; name=\"invite.ics\"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"invite.ics\"\n\n{}\n--cal-mixed--\n",
            self.head("calendar", "Invitation: a text/calendar part"),
            b64s(&ics, "\n"),
            b64s(&ics, "\n"),
        );
        self.push("calendar", crlf(&m));

        let m = format!(
            "{}Content-Type: multipart/digest; boundary=\"digest-b\"\n\n--digest-b\n\nFrom: one@corpus.example\nSubject: digest part 1\n\nFirst message of the digest (message/rfc822 by default).\n\n--digest-b\n\nFrom: two@corpus.example\nSubject: digest part 2\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{}\n--digest-b--\n",
            self.head("digest", "multipart/digest of two messages"),
            b64s("Zweite Nachricht: Grüße.\n".as_bytes(), "\n"),
        );
        self.push("digest", m.into_bytes());

        let m = format!(
            "{}Content-Type: multipart/mixed;\n\tboundary=\"----=_NextPart_000_0012_01D5F3A2.8E0F1C20\"\nX-Mailer: Microsoft Outlook 16.0\n\nThis is a multipart message in MIME format (the preamble).\n\n------=_NextPart_000_0012_01D5F3A2.8E0F1C20\nContent-Type: text/plain; charset=\"us-ascii\"\nContent-Transfer-Encoding: 7bit\n\nA line that only looks like a boundary:\n------=_NextPart_000_0012_01D5F3A2.8E0F1C20X\n--\n\n------=_NextPart_000_0012_01D5F3A2.8E0F1C20\nContent-Type: application/vnd.ms-excel; name=\"Book1.xls\"\nContent-Transfer-Encoding: base64\n\n{}\n------=_NextPart_000_0012_01D5F3A2.8E0F1C20--\n\nThe epilogue, which nobody reads.\n",
            self.head("preamble", "multipart with preamble and epilogue"),
            b64s(&rng.bytes(900), "\n"),
        );
        self.push("preamble", crlf(&m));

        let body = STANDARD.encode(rng.bytes(2_000));
        let m = format!(
            "{}Content-Type: multipart/mixed; boundary=\"open\"\n\n--open\nContent-Type: text/plain\n\nThe attachment below was cut off in transit: no closing boundary.\n\n--open\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n{}",
            self.head("unclosed", "multipart without its closing boundary"),
            body.as_bytes()[..1_500]
                .chunks(76)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("\n"),
        );
        self.push("unclosed", m.into_bytes());

        let m = format!(
            "{}Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{}",
            self.head("single-b64", "a single-part base64 text body"),
            b64s(prose(&mut rng, 150).as_bytes(), "\n"),
        );
        self.push("single-b64", m.into_bytes());

        let mut utf16 = vec![0xff, 0xfe];
        for u in "UTF-16 text: Grüße, 日本語.\r\n".encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        let m = format!(
            "{}Content-Type: text/plain; charset=utf-16\nContent-Transfer-Encoding: base64\n\n{}",
            self.head("utf16", "UTF-16 text in base64"),
            b64s(&utf16, "\n"),
        );
        self.push("utf16", crlf(&m));

        let uu = "begin 644 notes.txt\nM5&AI<R!I<R!A('5U96YC;V1E9\"!F:6QE+B!)=\"!C87)R:65S(&)A8VMQ=6]T\n1970@8&!@(&%N9\"!E<75A;',*\n`\nend\n";
        let m = format!(
            "{}Content-Type: text/plain\n\nAn old-school attachment, uuencoded in the body:\n\n{uu}\nThat was it.\n",
            self.head("uuencode", "uuencoded attachment in a text body"),
        );
        self.push("uuencode", m.into_bytes());
    }

    fn headers(&mut self) {
        let tag = self.tag;
        let k = self.out.len();
        let m = format!(
            "From: Jürgen Müller-Lüdenscheidt <juergen@corpus.example>\nTo: \"Zoë Ångström\" <zoe@example.net>\nSubject: [{tag}] Grüße aus Köln — 日本語のテスト ✉\nDate: {}\nMessage-ID: <utf8-head.{tag}@corpus.example>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nRaw UTF-8 in the header (RFC 6532 style) and in the body: naïve café, 😀.\n",
            date(k)
        );
        self.push("utf8-head", m.into_bytes());

        let mut m = b"From: Fran\xe7ois M\xfcller <francois@corpus.example>\nTo: user@example.net\nSubject: [".to_vec();
        m.extend_from_slice(tag.as_bytes());
        m.extend_from_slice(b"] R\xe9sum\xe9 \xe0 r\xe9viser, tr\xe8s urgent\n");
        m.extend_from_slice(
            format!(
                "Date: {}\nMessage-ID: <latin1-head.{tag}@corpus.example>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n",
                date(k + 1)
            )
            .as_bytes(),
        );
        m.extend_from_slice(b"Voil\xe0 le r\xe9sum\xe9, \xa9 2020, 50\xb0 \xbd \xbc.\n");
        self.push("latin1-head", crlf_bytes(&m));

        let m = format!(
            "From: {} Pirard <pirard@corpus.example>\nTo: {} <xn@example.net>, \"{}\" <zoe@example.net>\nCc: =?utf-8?q?unterminated encoded word <cc@corpus.example>\nSubject: [{tag}] {} {}\n {}\nX-Bad-Encoded: =?bogus-charset?X?abc?= and =?utf-8?B?!!!?=\nDate: {}\nMessage-ID: <rfc2047.{tag}@corpus.example>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\nEncoded-words in From, To and a folded Subject; some malformed.\n",
            ew_q("ISO-8859-1", b"Andr\xe9"),
            ew_b("UTF-8", "Ünïcödé Ümläüt".as_bytes()),
            ew_q("utf-8", "Zoë".as_bytes()),
            ew_b("UTF-8", "Grüße".as_bytes()),
            ew_q("UTF-8", "und viel Glück".as_bytes()),
            ew_b("ISO-2022-JP", b"\x1b$BF|K\\8l\x1b(B"),
            date(k + 2)
        );
        self.push("rfc2047", m.into_bytes());

        let refs: Vec<String> = (0..25)
            .map(|i| format!("<thread-{i}.{tag}@corpus.example>"))
            .collect();
        let m = format!(
            "Received: from relay.corpus.example\n\t(relay.corpus.example [198.51.100.7])\n\tby mx.example.net with ESMTP id 1A2B3C\n\t; {d}\nDKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=corpus.example;\n\ts=sel1; h=from:to:subject:date:message-id;\n\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\n\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgbG9va3MgbGlr\n\t ZSBvbmUgZm9yIHRoZSBwdXJwb3NlIG9mIHRoZSB0ZXN0\nFrom: Folded Sender <folded@corpus.example>\nTo: user@example.net\nSubject: [{tag}] a subject folded\n over three lines,\n\twith a tab in front of the last\nX-Whitespace-Continuation: the next line holds only a space\n \n and this one continues the field\nReferences: {refs}\nDate: {d}\nMessage-ID: <folded.{tag}@corpus.example>\n\nFolded header fields above; the references are folded too.\n",
            d = date(k + 3),
            refs = refs.join("\n "),
        );
        self.push("folded", m.into_bytes());

        let m = format!(
            "SUBJECT:[{tag}] odd header syntax, no space after the colon\nfrom : Spaced Colon <spaced@corpus.example>\nmessage-id :<odd.{tag}@corpus.example>\nX-Empty:\nX-Tab:\tvalue after a tab\nX-Trailing-Space: value   \nX-Dup: one\nX-Dup: two\nThis header line has no colon at all\nDate: yesterday, around noon\n\nBody after a malformed header and an unparseable date.\n"
        );
        self.push("odd-head", m.into_bytes());

        let m = format!(
            "From sender@corpus.example Mon Mar  2 10:00:00 2020\n{}\nA message stored with its mbox envelope line still on top.\n",
            self.head("mbox-envelope", "an mbox From_ line above the header")
        );
        self.push("mbox-envelope", m.into_bytes());
    }

    fn line_ends(&mut self) {
        let tag = self.tag;
        let k = self.out.len();
        let m = format!(
            "From: Classic Mac <mac@corpus.example>\rTo: user@example.net\rSubject: [{tag}] old Mac line ends: bare CR only\rDate: {}\rMessage-ID: <bare-cr.{tag}@corpus.example>\r\rFirst line.\r.\rA dot line above, then a From line:\rFrom the old days.\r\rLast line.\r",
            date(k)
        );
        self.push("bare-cr", m.into_bytes());

        let m = format!(
            "{}Content-Type: text/plain\n\nProgress: 10%\r20%\r30%\r100%\ncolumn one\rcolumn two\na line ending in CR CR LF\r\nend\n",
            self.head("cr-inside", "bare CRs inside CRLF lines")
        );
        self.push("cr-inside", crlf(&m));

        let mut m = crlf(&self.head("mixed-ends", "mixed line ends"));
        m.extend_from_slice(b"Content-Type: text/plain\r\n\nLF line\nCRLF line\r\nLF CR pair\n\rCR CR LF\r\r\nbare CR\rlast line ends with a CR\r");
        self.push("mixed-ends", m);

        let m = format!(
            "{}Content-Type: text/plain\n\nEvery line ends in a bare LF, as in a Maildir.\nTrailing whitespace lines follow.\n   \n\t\n\n\n",
            self.head("lf-trailing", "bare LF, trailing blank lines")
        );
        self.push("lf-trailing", m.into_bytes());
    }

    fn long_lines(&mut self) {
        let mut rng = SplitMix(3);
        let one_line = |rng: &mut SplitMix, len: usize| -> String {
            let mut s = String::new();
            while s.len() < len {
                s.push_str(WORDS[rng.below(WORDS.len())]);
                s.push(' ');
            }
            s.trim_end().to_string()
        };
        let hdr = format!("X-Long-Header: {}\n", "a".repeat(1_200));
        let m = format!(
            "{}{hdr}Content-Type: text/plain; charset=utf-8\n\n{}\n{}\n{}\nshort line\n",
            self.head("long-1k", "lines over 998 bytes"),
            one_line(&mut rng, 1_500),
            "b".repeat(998),
            "c".repeat(999),
        );
        self.push("long-1k", m.into_bytes());

        let m = format!(
            "{}X-Spam-Report: {}\nContent-Type: text/html; charset=utf-8\n\n<html><body>{}</body></html>\n",
            self.head("long-10k", "a header line and a body line over 10,000 bytes"),
            one_line(&mut rng, 11_000),
            one_line(&mut rng, 12_345),
        );
        self.push("long-10k", crlf(&m));

        let m = format!(
            "{}Content-Type: multipart/mixed; boundary=\"one\"\n\n--one\nContent-Type: text/plain\n\nThe attachment is base64 on one single line.\n--one\nContent-Type: application/octet-stream; name=\"blob.bin\"\nContent-Transfer-Encoding: base64\n\n{}--one--\n",
            self.head("b64-one-line", "base64 attachment as one 40,000-byte line"),
            String::from_utf8(b64(&rng.bytes(30_000), 0, "\n")).expect("ascii"),
        );
        self.push("b64-one-line", crlf(&m));
    }

    fn body_hazards(&mut self) {
        let m = format!(
            "{}Content-Type: text/plain\n\nFrom the desk of the CFO: this line starts with \"From \".\n>From an mbox-quoted line.\n>>From a doubly quoted one.\nFrom: this looks like a header but is body.\n From with a leading space.\nFrom\n",
            self.head("from-lines", "body lines starting with From and >From")
        );
        self.push("from-lines", m.into_bytes());

        let m = format!(
            "{}Content-Type: text/plain\n\nA line that is a single dot follows.\n.\n..\n...\n. \n.hidden file\nThe last line is a dot without a line end.\n.",
            self.head("dot-lines", "a body line that is a single dot")
        );
        self.push("dot-lines", crlf(&m));

        let mut m = crlf(&self.head("nul-body", "NUL bytes in the body"));
        m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nbefore\0after\r\n\0leading NUL\r\ntrailing NUL\0\r\n\0\0\0\r\nend\r\n");
        self.push("nul-body", m);

        let mut m = crlf(&self.head("control", "control characters in the body"));
        m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nform feed\x0cnext page\r\n\x1b[1mANSI bold\x1b[0m\r\nback\x08space, DEL\x7f, vertical\x0btab\r\n");
        self.push("control", m);

        let m = format!(
            "{}Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\nContent-Transfer-Encoding: 8bit\n\nThis paragraph is flowed: each line but the last ends in a \nspace that joins it to the next one, so trailing spaces \nmatter.\n\n> Quoted, flowed too, \n> and continued.\n>> Deeper quote.\n From space-stuffed.\n-- \nSignature after the dash-dash-space line\n",
            self.head("flowed", "format=flowed with trailing spaces")
        );
        self.push("flowed", m.into_bytes());
    }

    fn identities(&mut self) {
        let tag = self.tag;
        let k = self.out.len();
        let m = format!(
            "From: No Id <noid@corpus.example>\nTo: user@example.net\nSubject: [{tag}] no Message-ID and no Date\n\nNeither a Message-ID nor a Date.\n"
        );
        self.push("no-id", m.into_bytes());

        let m = format!(
            "From: No Id <noid@corpus.example>\nTo: user@example.net\nSubject: [{tag}] no Message-ID, multipart\nDate: {}\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"noid\"\n\n--noid\nContent-Type: text/plain\n\nhello\n--noid\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n{}--noid--\n",
            date(k),
            b64s(&SplitMix(4).bytes(400), "\n"),
        );
        self.push("no-id-mime", crlf(&m));

        let dup_id = format!("<dup-id.{tag}@corpus.example>");
        for (name, subject, body) in [
            (
                "dup-id-a",
                "first of two with one Message-ID",
                "The first body.",
            ),
            (
                "dup-id-b",
                "second of two with one Message-ID",
                "A different second body.",
            ),
        ] {
            let m = format!(
                "From: Dup Id <dup@corpus.example>\nTo: user@example.net\nSubject: [{tag}] {subject}\nDate: {}\nMessage-ID: {dup_id}\n\n{body}\n",
                date(k + 1)
            );
            self.push(name, m.into_bytes());
        }

        // Same header, bodies one byte apart.
        let head = format!(
            "From: Billing <billing@corpus.example>\nTo: user@example.net\nSubject: [{tag}] your invoice\nDate: {}\nMessage-ID: <near-body.{tag}@corpus.example>\n\n",
            date(k + 2)
        );
        self.push(
            "near-body-a",
            crlf(&format!("{head}Total due: EUR 1,000.00\nThank you.\n")),
        );
        self.push(
            "near-body-b",
            crlf(&format!("{head}Total due: EUR 1,000.01\nThank you.\n")),
        );

        // Same body, one header field apart.
        for (name, mailer) in [("near-head-a", "1.0"), ("near-head-b", "1.1")] {
            let m = format!(
                "From: Newsletter <news@corpus.example>\nTo: user@example.net\nSubject: [{tag}] weekly news\nDate: {}\nMessage-ID: <near-head.{tag}@corpus.example>\nX-Mailer: Corpus Mailer {mailer}\n\nThe same body in both.\n",
                date(k + 3)
            );
            self.push(name, m.into_bytes());
        }

        let m = format!(
            "From: Header Only <ho@corpus.example>\nSubject: [{tag}] header only, no empty line, no body\nDate: {}\nMessage-ID: <header-only.{tag}@corpus.example>\n",
            date(k + 4)
        );
        self.push("header-only", m.into_bytes());

        let m = format!(
            "From: Header Only <ho@corpus.example>\nSubject: [{tag}] header only, no final line end\nMessage-ID: <header-only-open.{tag}@corpus.example>"
        );
        self.push("header-only-open", crlf(&m));

        let m = format!(
            "From: Empty Body <eb@corpus.example>\nSubject: [{tag}] an empty body\nDate: {}\nMessage-ID: <empty-body.{tag}@corpus.example>\n\n",
            date(k + 5)
        );
        self.push("empty-body", crlf(&m));
    }

    fn store_fields(&mut self) {
        let tag = self.tag;
        let k = self.out.len();
        let m = format!(
            "Return-Path: <store@corpus.example>\nStatus: RO\nX-Status: A\nX-Keywords: $Forwarded Junk\nX-UID: 42\nX-UIDL: 1f2e3d4c5b6a\n  folded-uidl-continuation\nContent-Length: 9999\nLines: 3\nX-Mozilla-Status: 0001\nX-Mozilla-Status2: 00000000\nX-IMAPbase: 1234567890 0000000043\nFrom: Store <store@corpus.example>\nTo: user@example.net\nSubject: [{tag}] fields a mail store added\nDate: {}\nMessage-ID: <store-fields.{tag}@corpus.example>\nX-Message-Flag: Follow up\nX-Yahoo-Newman-Property: ymail-3\nX-IMAP: 1234567890 0000000043\n\nStatus: this body line is not a header field.\nX-UID: nor is this one.\n",
            date(k)
        );
        self.push("store-fields", m.into_bytes());

        // Three distinct messages whose own header carries one X-UIDL value
        // (copied from one maildrop to another by some old tool).
        for (i, name) in ["xuidl-1", "xuidl-2", "xuidl-3"].into_iter().enumerate() {
            let m = format!(
                "X-UIDL: GmailId16f3a7b2c1d0e9f8\nFrom: Shared Uidl <uidl@corpus.example>\nTo: user@example.net\nSubject: [{tag}] one of three with the same X-UIDL field ({})\nDate: {}\nMessage-ID: <{name}.{tag}@corpus.example>\n\nBody number {}.\n",
                i + 1,
                date(k + 1 + i),
                i + 1
            );
            let m = if i == 1 { crlf(&m) } else { m.into_bytes() };
            self.push(name, m);
        }
    }

    fn charsets(&mut self) {
        let mut m = crlf(&self.head("cte-binary", "Content-Transfer-Encoding: binary"));
        m.extend_from_slice(
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: binary\r\n\r\n",
        );
        m.extend_from_slice(
            "Binary transfer: 8-bit UTF-8 (ÄÖÜ äöü ß), long lines allowed.\r\n".as_bytes(),
        );
        let high: Vec<u8> = (0x80..=0xffu8).collect();
        m.extend_from_slice(&high);
        m.extend_from_slice(b"\r\n");
        let low: Vec<u8> = (0x01..0x20u8)
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect();
        m.extend_from_slice(&low);
        m.extend_from_slice(b"\r\n");
        m.extend_from_slice("ü".repeat(700).as_bytes());
        m.extend_from_slice(b"\r\n");
        self.push("cte-binary", m);

        let m = format!(
            "{}Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\nDeclared 7bit, but: naïve café, Grüße, 日本語.\n",
            self.head("8bit-as-7bit", "8-bit body declared 7bit")
        );
        self.push("8bit-as-7bit", m.into_bytes());

        let mut m = crlf(&self.head("cp1252", "windows-1252 HTML, 8-bit"));
        m.extend_from_slice(b"Content-Type: text/html; charset=windows-1252\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<p>\x93Smart quotes\x94 \x96 an en dash, \x80 100, \x85</p>\r\n");
        self.push("cp1252", m);

        let mut m = self
            .head("iso-2022-jp", "ISO-2022-JP: escape sequences in the body")
            .into_bytes();
        m.extend_from_slice(
            b"Content-Type: text/plain; charset=ISO-2022-JP\nContent-Transfer-Encoding: 7bit\n\n\x1b$BF|K\\8l\x1b(B text\n\x1b$B$3$s$K$A$O\x1b(B\n",
        );
        self.push("iso-2022-jp", m);
    }

    fn big(&mut self) {
        let big = big_payloads();
        let m = format!(
            "{}Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n{}",
            self.head("big-qp", "~200 KB of quoted-printable text"),
            big.qp_text
        );
        self.push("big-qp", m.into_bytes());

        let m = [
            crlf(&format!(
                "{}Content-Type: multipart/alternative; boundary=\"big-alt\"\n\n--big-alt\nContent-Type: text/plain; charset=utf-8\n\nThe HTML part holds the newsletter.\n--big-alt\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n",
                self.head("big-html", "~560 KB HTML newsletter, base64")
            )),
            big.html_b64.as_bytes().to_vec(),
            b"--big-alt--\r\n".to_vec(),
        ]
        .concat();
        self.push("big-html", m);

        let m = cat(&[
            &crlf(&format!(
                "{}Content-Type: multipart/mixed; boundary=\"big-mixed\"\n\n--big-mixed\nContent-Type: text/plain; charset=us-ascii\n\nThe archive is attached.\n\n--big-mixed\nContent-Type: application/zip; name=\"archive.zip\"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"archive.zip\"\n\n",
                self.head("big-zip", "~2 MB zip attachment, base64")
            )),
            big.zip_b64.as_bytes(),
            b"--big-mixed--\r\n",
        ]);
        self.push("big-zip", m);
    }
}
