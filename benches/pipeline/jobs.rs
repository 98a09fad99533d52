//! The rows the bench runs with the crate's own sessions, each in a child process of its own so its peak RSS is its own.
//!
//! The parent runs `pipeline child '<job as JSON>'` under `/usr/bin/time -v`;
//! the child prints one [`JobResult`] line on stdout. Every session is over
//! implicit TLS to `localhost`, trusting the test CA, like the other rows.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use mailferry::config::{Account, Security};
use mailferry::imap::{AppendMessage, AppendMode, ImapOptions, ImapSession};
use mailferry::pop3::{Pop3Options, Pop3Session};

use crate::corpus::Corpus;

/// Where and as whom a child logs in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Login {
    pub port: u16,
    pub user: String,
    pub password: String,
    pub ca_file: PathBuf,
}

impl Login {
    fn account(&self) -> Account {
        let (user, password) = (&self.user, &self.password);
        Account {
            host: "localhost".into(),
            ca_file: Some(self.ca_file.clone()),
            timeout: Duration::from_secs(120),
            ..crate::support::account::account(user, self.port, Security::Tls, user, password)
        }
    }
}

/// One row's work.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Job {
    /// Raw POP3 limit: every message by pipelined RETR, bytes discarded.
    /// Timed from the first RETR to the last byte (login excluded).
    PopRetr { pop: Login, messages: u32 },
    /// Raw IMAP limit: the corpus, generated before the clock starts, by
    /// MULTIAPPEND + LITERAL+ (login and generation excluded).
    ImapAppend {
        imap: Login,
        corpus: Corpus,
        messages: usize,
    },
    /// The naive copier: RETR one, APPEND it waiting for `+` and the
    /// tagged OK, repeat. Timed from connect to logout, like a real run.
    Naive {
        pop: Login,
        imap: Login,
        messages: u32,
    },
    /// Connect, log in, UIDL, QUIT: the floor of a no-op re-poll.
    Uidl { pop: Login },
    /// `PopRetr` and `ImapAppend` at the same time, both timed from one
    /// start to the later end: what the two servers manage together on this
    /// machine, the ceiling of any copier that uses both.
    Both {
        pop: Login,
        imap: Login,
        corpus: Corpus,
        messages: usize,
    },
}

/// What a child prints.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobResult {
    pub messages: u64,
    pub bytes: u64,
    pub secs: f64,
}

/// Runs one job in this (child) process.
pub fn run(job: &Job) -> Result<JobResult, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        match job {
            Job::PopRetr { pop, messages } => pop_retr(pop, *messages).await,
            Job::ImapAppend {
                imap,
                corpus,
                messages,
            } => imap_append(imap, corpus, *messages).await,
            Job::Naive {
                pop,
                imap,
                messages,
            } => naive(pop, imap, *messages).await,
            Job::Uidl { pop } => uidl(pop).await,
            Job::Both {
                pop,
                imap,
                corpus,
                messages,
            } => both(pop, imap, corpus, *messages).await,
        }
    })
}

async fn pop_retr(login: &Login, messages: u32) -> Result<JobResult, String> {
    let mut pop = pop_connect(login).await?;
    let started = Instant::now();
    let (count, bytes) = retr_all(&mut pop, messages).await?;
    let secs = started.elapsed().as_secs_f64();
    pop.quit().await.map_err(|e| format!("QUIT: {e}"))?;
    Ok(JobResult {
        messages: count,
        bytes,
        secs,
    })
}

async fn pop_connect(login: &Login) -> Result<Pop3Session, String> {
    let pop = Pop3Session::connect(&login.account())
        .await
        .map_err(|e| format!("pop3 connect: {e}"))?;
    if !pop.pipelining() {
        return Err("the server does not offer PIPELINING".into());
    }
    Ok(pop)
}

/// Every message by pipelined RETR, discarded: (messages, bytes).
async fn retr_all(pop: &mut Pop3Session, messages: u32) -> Result<(u64, u64), String> {
    let mut stream = pop.retrieve((1..=messages).collect());
    let (mut count, mut bytes) = (0u64, 0u64);
    while let Some(got) = stream.next().await {
        let got = got.map_err(|e| format!("RETR: {e}"))?;
        bytes += got.bytes.len() as u64;
        count += 1;
    }
    Ok((count, bytes))
}

async fn imap_append(login: &Login, corpus: &Corpus, n: usize) -> Result<JobResult, String> {
    let raws = corpus.messages(n);
    let mut imap = imap_connect(login).await?;
    let started = Instant::now();
    append_all(&mut imap, &raws).await?;
    let secs = started.elapsed().as_secs_f64();
    imap.logout().await.map_err(|e| format!("LOGOUT: {e}"))?;
    Ok(JobResult {
        messages: raws.len() as u64,
        bytes: raws.iter().map(|m| m.len() as u64).sum(),
        secs,
    })
}

async fn imap_connect(login: &Login) -> Result<ImapSession, String> {
    let options = ImapOptions {
        append_mode: AppendMode::MultiAppend,
        ..ImapOptions::default()
    };
    let imap = ImapSession::connect_with(&login.account(), options)
        .await
        .map_err(|e| format!("imap connect: {e}"))?;
    let caps = imap.capabilities();
    if !(caps.has("MULTIAPPEND") && caps.has("LITERAL+")) {
        return Err("the server does not offer MULTIAPPEND and LITERAL+".into());
    }
    Ok(imap)
}

/// `raws` by MULTIAPPEND + LITERAL+, every command sent before the answers
/// are read.
async fn append_all(imap: &mut ImapSession, raws: &[Vec<u8>]) -> Result<(), String> {
    let msgs: Vec<AppendMessage<'_>> = raws
        .iter()
        .map(|bytes| AppendMessage {
            bytes,
            seen: false,
            internal_date: None,
        })
        .collect();
    match imap.append_batch("INBOX", &msgs).await.error {
        Some(e) => Err(format!("APPEND: {e}")),
        None => Ok(()),
    }
}

async fn both(pop: &Login, imap: &Login, corpus: &Corpus, n: usize) -> Result<JobResult, String> {
    let raws = corpus.messages(n);
    let (mut source, mut target) = (pop_connect(pop).await?, imap_connect(imap).await?);
    let started = Instant::now();
    let (fetched, appended) = tokio::join!(
        retr_all(&mut source, n as u32),
        append_all(&mut target, &raws)
    );
    let secs = started.elapsed().as_secs_f64();
    let (count, bytes) = fetched?;
    appended?;
    if count != n as u64 {
        return Err(format!("RETR gave {count} messages of {n}"));
    }
    source.quit().await.map_err(|e| format!("QUIT: {e}"))?;
    target.logout().await.map_err(|e| format!("LOGOUT: {e}"))?;
    Ok(JobResult {
        messages: count,
        bytes,
        secs,
    })
}

async fn naive(pop: &Login, imap: &Login, messages: u32) -> Result<JobResult, String> {
    let started = Instant::now();
    let pop_options = Pop3Options {
        pipelining: false,
        ..Pop3Options::default()
    };
    let mut source = Pop3Session::connect_with(&pop.account(), pop_options)
        .await
        .map_err(|e| format!("pop3 connect: {e}"))?;
    let imap_options = ImapOptions {
        append_mode: AppendMode::OneAtATime,
        ..ImapOptions::default()
    };
    let mut target = ImapSession::connect_with(&imap.account(), imap_options)
        .await
        .map_err(|e| format!("imap connect: {e}"))?;
    let mut bytes = 0u64;
    for msgno in 1..=messages {
        let message = source
            .retr(msgno)
            .await
            .map_err(|e| format!("RETR {msgno}: {e}"))?;
        let one = [AppendMessage {
            bytes: &message,
            seen: false,
            internal_date: None,
        }];
        if let Some(e) = target.append_batch("INBOX", &one).await.error {
            return Err(format!("APPEND of {msgno}: {e}"));
        }
        bytes += message.len() as u64;
    }
    source.quit().await.map_err(|e| format!("QUIT: {e}"))?;
    target.logout().await.map_err(|e| format!("LOGOUT: {e}"))?;
    Ok(JobResult {
        messages: u64::from(messages),
        bytes,
        secs: started.elapsed().as_secs_f64(),
    })
}

async fn uidl(login: &Login) -> Result<JobResult, String> {
    let started = Instant::now();
    let mut pop = Pop3Session::connect(&login.account())
        .await
        .map_err(|e| format!("pop3 connect: {e}"))?;
    let listing = pop
        .uidl()
        .await
        .map_err(|e| format!("UIDL: {e}"))?
        .ok_or("the server has no UIDL")?;
    pop.quit().await.map_err(|e| format!("QUIT: {e}"))?;
    Ok(JobResult {
        messages: listing.len() as u64,
        bytes: listing.iter().map(|(_, uid)| uid.len() as u64 + 8).sum(),
        secs: started.elapsed().as_secs_f64(),
    })
}
