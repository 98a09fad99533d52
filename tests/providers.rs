//! Providers' habits, played by scripted servers against the real binary and
//! a real Dovecot target: a POP3 source that, like Gmail's, lists only a
//! window of not-yet-fetched messages per session.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::dovecot::shared;
use support::e2e::{as_copied, corpus, count, sorted, sync};

/// A maildrop that shows at most `window` messages not yet fetched per
/// session, and marks the ones it showed as fetched at QUIT.
struct WindowedPop3 {
    messages: Vec<Vec<u8>>,
    fetched: Vec<bool>,
    window: usize,
    sessions: usize,
}

/// Serves POP3 on 127.0.0.1 (plain text) until the test process ends.
fn serve(maildrop: Arc<Mutex<WindowedPop3>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let maildrop = maildrop.clone();
            std::thread::spawn(move || session(stream, &maildrop));
        }
    });
    port
}

fn session(stream: TcpStream, maildrop: &Mutex<WindowedPop3>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream);
    // This session's view: message numbers 1.. map to these indexes.
    let shown: Vec<usize> = {
        let mut d = maildrop.lock().unwrap();
        d.sessions += 1;
        let window = d.window;
        (0..d.messages.len())
            .filter(|&i| !d.fetched[i])
            .take(window)
            .collect()
    };
    let _ = out.write_all(b"+OK windowed POP3 ready\r\n");
    let mut line = String::new();
    while lines.read_line(&mut line).unwrap_or(0) > 0 {
        let command = line.trim_end().to_string();
        line.clear();
        let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let arg: Option<usize> = command.split(' ').nth(1).and_then(|a| a.parse().ok());
        let d = maildrop.lock().unwrap();
        let reply = match verb.as_str() {
            "CAPA" => "+OK\r\nUSER\r\nUIDL\r\nTOP\r\n.\r\n".to_string(),
            "USER" | "PASS" | "NOOP" | "RSET" | "DELE" => "+OK\r\n".to_string(),
            "STAT" => format!(
                "+OK {} {}\r\n",
                shown.len(),
                shown.iter().map(|&i| d.messages[i].len()).sum::<usize>()
            ),
            "UIDL" => {
                let mut r = String::from("+OK\r\n");
                for (n, i) in shown.iter().enumerate() {
                    r += &format!("{} msg-{i}\r\n", n + 1);
                }
                r + ".\r\n"
            }
            "LIST" => {
                let mut r = String::from("+OK\r\n");
                for (n, i) in shown.iter().enumerate() {
                    r += &format!("{} {}\r\n", n + 1, d.messages[*i].len());
                }
                r + ".\r\n"
            }
            "RETR" => match arg.and_then(|n| shown.get(n.wrapping_sub(1))) {
                Some(&i) => {
                    let mut r = format!("+OK {} octets\r\n", d.messages[i].len()).into_bytes();
                    for l in d.messages[i].split_inclusive(|b| *b == b'\n') {
                        if l.starts_with(b".") {
                            r.push(b'.');
                        }
                        r.extend_from_slice(l);
                    }
                    r.extend_from_slice(b".\r\n");
                    let _ = out.write_all(&r);
                    continue;
                }
                None => "-ERR no such message\r\n".to_string(),
            },
            "QUIT" => {
                drop(d);
                let mut d = maildrop.lock().unwrap();
                for &i in &shown {
                    d.fetched[i] = true;
                }
                let _ = out.write_all(b"+OK bye\r\n");
                return;
            }
            _ => "-ERR unknown command\r\n".to_string(),
        };
        let _ = out.write_all(reply.as_bytes());
    }
}

#[test]
fn a_source_that_lists_a_window_per_session_is_emptied_in_one_sync() {
    let dovecot = shared();
    let dst = dovecot.user("gdst");
    let mail: Vec<Vec<u8>> = corpus("window", 54)
        .into_iter()
        .map(|m| served(&m))
        .collect();
    let state = Arc::new(Mutex::new(WindowedPop3 {
        fetched: vec![false; mail.len()],
        messages: mail.clone(),
        window: 25,
        sessions: 0,
    }));
    let port = serve(state.clone());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailferry.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\npath = \"{ledger}\"\n\n[[source]]\nname = \"gmail-pop\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             security = \"plain\"\nallow_plaintext = true\nusername = \"recent:someone\"\npassword = \"x\"\ntimeout = \"20s\"\n\n\
             [[target]]\nname = \"dst\"\nhost = \"localhost\"\nport = {imaps}\nusername = \"{user}\"\npassword = \"{pw}\"\nca_file = \"{ca}\"\n\n\
             [[route]]\nfrom = \"gmail-pop\"\nto = \"dst\"\n",
            ledger = dir.path().join("ledger.db").display(),
            imaps = dovecot.imaps_port(),
            user = dst.name,
            pw = dst.password,
            ca = dovecot.ca_file().display()
        ),
    )
    .unwrap();
    let reports = sync(&config, &[], 0);
    assert_eq!(
        count(&reports[0], "copied"),
        mail.len() as u64,
        "{reports:?}"
    );
    let want = sorted(mail.iter().map(|m| as_copied(m)).collect());
    assert_eq!(sorted(dovecot.messages(&dst, "INBOX")), want);
    // 25 + 25 + 10, then one session that shows nothing new.
    assert_eq!(state.lock().unwrap().sessions, 4);
}

/// A message as a POP3 server would serve it: CRLF line ends.
fn served(m: &[u8]) -> Vec<u8> {
    let mut served = support::dovecot::Dovecot::as_served(m);
    if !served.ends_with(b"\r\n") {
        served.extend_from_slice(b"\r\n");
    }
    served
}
