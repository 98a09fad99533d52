//! A loopback TCP fault proxy: per connection it passes bytes through, or cuts, resets, stalls or slices them at chosen byte offsets.
//!
//! `127.0.0.1:<port()>` forwards to `127.0.0.1:<upstream>`. Each accepted
//! connection asks the test's plan function (given the connection's index,
//! from 0) for a [`Plan`]: a list of [`Fault`]s, each in one direction at
//! one point of that direction's byte stream. The proxy is byte-level, so
//! TLS passes through untouched; patterns ([`At::After`]) only make sense
//! on plain connections.
//!
//! ```ignore
//! let proxy = Proxy::start(dovecot.imap_port(), |conn| match conn {
//!     0 => Plan::cut(Dir::Down, 100), // mid-handshake, then
//!     _ => Plan::pass(),              // every retry goes through
//! });
//! // ... point the client at proxy.port() ...
//! assert_eq!(proxy.fired().len(), 1);
//! ```
//!
//! It runs on its own thread with its own tokio runtime, because the tests
//! drive the `mailferry` binary synchronously; dropping it stops everything.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A direction of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// Where in one direction's byte stream a fault fires.
#[derive(Clone, Debug)]
pub enum At {
    /// Once exactly this many bytes were forwarded (0: before the first).
    Byte(u64),
    /// `extra` bytes past the end of the `nth` (from 0) occurrence of
    /// `needle`: for cuts at protocol points of a plain connection.
    After {
        needle: Vec<u8>,
        nth: usize,
        extra: u64,
    },
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Closes both sides (FIN). The server side stays open `server_grace`
    /// longer, its replies swallowed: a command that reached the server
    /// completes there, and the client never hears of it.
    Cut { server_grace: Duration },
    /// Closes both sides with RST (SO_LINGER 0).
    Reset,
    /// Forwards nothing more in this direction for a while.
    Stall(Duration),
    /// From here on, forwards one byte per write, `pause` apart (TCP_NODELAY
    /// is on, so each byte is its own segment).
    Slice { pause: Duration },
}

impl Kind {
    /// A plain cut: both sides closed at once.
    pub const CUT: Kind = Kind::Cut {
        server_grace: Duration::ZERO,
    };

    /// Does it end the connection?
    pub fn ends(&self) -> bool {
        matches!(self, Kind::Cut { .. } | Kind::Reset)
    }
}

/// One fault of a plan.
#[derive(Clone, Debug)]
pub struct Fault {
    pub dir: Dir,
    pub at: At,
    pub kind: Kind,
}

/// What the proxy does to one connection: nothing, or some faults.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub faults: Vec<Fault>,
}

impl Plan {
    /// Passes everything through.
    pub fn pass() -> Plan {
        Plan::default()
    }

    /// Cuts both sides once `at` bytes went in direction `dir`.
    pub fn cut(dir: Dir, at: u64) -> Plan {
        Plan::pass().with(dir, At::Byte(at), Kind::CUT)
    }

    /// Resets both sides once `at` bytes went in direction `dir`.
    pub fn reset(dir: Dir, at: u64) -> Plan {
        Plan::pass().with(dir, At::Byte(at), Kind::Reset)
    }

    /// Adds a fault.
    pub fn with(mut self, dir: Dir, at: At, kind: Kind) -> Plan {
        self.faults.push(Fault { dir, at, kind });
        self
    }

    /// The faults of one direction.
    fn of(&self, dir: Dir) -> Vec<Fault> {
        self.faults
            .iter()
            .filter(|f| f.dir == dir)
            .cloned()
            .collect()
    }
}

/// A fault that fired: where and what.
#[derive(Clone, Debug)]
pub struct Fired {
    pub conn: usize,
    pub dir: Dir,
    /// Bytes forwarded in `dir` before it fired.
    pub offset: u64,
    pub kind: Kind,
}

/// The plan function: connection index to plan.
type PlanFn = Box<dyn FnMut(usize) -> Plan + Send>;

/// What the proxy counts, shared with its thread.
#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    open: AtomicUsize,
    fired: Mutex<Vec<Fired>>,
    /// Bytes forwarded (up, down) by each finished connection.
    traffic: Mutex<Vec<(u64, u64)>>,
}

/// A running fault proxy. Dropping it stops it and closes every connection.
pub struct Proxy {
    port: u16,
    plans: Arc<Mutex<PlanFn>>,
    stats: Arc<Stats>,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards to
    /// 127.0.0.1:`upstream`, asking `plans` what to do with each connection.
    pub fn start(upstream: u16, plans: impl FnMut(usize) -> Plan + Send + 'static) -> Proxy {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let plans: Arc<Mutex<PlanFn>> = Arc::new(Mutex::new(Box::new(plans)));
        let stats = Arc::new(Stats::default());
        let stop = CancellationToken::new();
        let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, upstream));
        let shared = Shared {
            upstream,
            plans: plans.clone(),
            stats: stats.clone(),
        };
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn(move || run(listener, shared, stopped))
            .expect("start the proxy thread");
        Proxy {
            port,
            plans,
            stats,
            stop,
            thread: Some(thread),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the plan function (connection indexes keep counting).
    pub fn set_plans(&self, plans: impl FnMut(usize) -> Plan + Send + 'static) {
        *self.plans.lock().expect("plans lock") = Box::new(plans);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Every fault that fired so far, in order.
    pub fn fired(&self) -> Vec<Fired> {
        self.stats.fired.lock().expect("fired lock").clone()
    }

    /// Bytes forwarded (up, down) by each finished connection, in the
    /// order they finished: to aim random offsets.
    pub fn traffic(&self) -> Vec<(u64, u64)> {
        self.stats.traffic.lock().expect("traffic lock").clone()
    }

    /// Connections ended by a cut or reset so far.
    pub fn cuts(&self) -> usize {
        self.fired().iter().filter(|f| f.kind.ends()).count()
    }

    /// Waits until no connection is open (the server has seen every close,
    /// graces included); false after `timeout`.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.stats.open.load(Ordering::SeqCst) > 0 {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What every connection task needs.
#[derive(Clone)]
struct Shared {
    upstream: SocketAddr,
    plans: Arc<Mutex<PlanFn>>,
    stats: Arc<Stats>,
}

/// The proxy thread: accepts until stopped; dropping the runtime then
/// drops every connection task, closing its sockets.
fn run(listener: std::net::TcpListener, shared: Shared, stop: CancellationToken) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("proxy runtime");
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = stop.cancelled() => return,
            };
            let Ok((client, _)) = accepted else {
                // Out of file descriptors, say: don't spin on it.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let conn = shared.stats.connections.fetch_add(1, Ordering::SeqCst);
            let plan = (shared.plans.lock().expect("plans lock"))(conn);
            shared.stats.open.fetch_add(1, Ordering::SeqCst);
            let shared = shared.clone();
            tokio::spawn(async move {
                let stats = shared.stats.clone();
                serve(client, conn, plan, shared).await;
                stats.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
}

/// The two directions of one connection, and how it ended.
struct Link {
    conn: usize,
    kill: CancellationToken,
    ending: Mutex<Option<Kind>>,
    stats: Arc<Stats>,
}

impl Link {
    fn record(&self, dir: Dir, offset: u64, kind: &Kind) {
        let fired = Fired {
            conn: self.conn,
            dir,
            offset,
            kind: kind.clone(),
        };
        self.stats.fired.lock().expect("fired lock").push(fired);
    }

    /// Ends both directions; the first ending wins.
    fn end(&self, kind: Option<Kind>) {
        let mut ending = self.ending.lock().expect("ending lock");
        if ending.is_none() {
            *ending = kind;
        }
        self.kill.cancel();
    }
}

/// Proxies one connection by its plan, then closes it as the plan says.
async fn serve(client: TcpStream, conn: usize, plan: Plan, shared: Shared) {
    // A refused upstream looks to the client like a cut at byte 0.
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    // Each forwarded write becomes its own segment: slices stay slices.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let link = Arc::new(Link {
        conn,
        kill: CancellationToken::new(),
        ending: Mutex::new(None),
        stats: shared.stats,
    });
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = Pipe::new(Dir::Up, plan.of(Dir::Up), link.clone());
    let down = Pipe::new(Dir::Down, plan.of(Dir::Down), link.clone());
    let ((client_read, server_write, up), (server_read, client_write, down)) = tokio::join!(
        up.pump(client_read, server_write),
        down.pump(server_read, client_write)
    );
    link.stats
        .traffic
        .lock()
        .expect("traffic lock")
        .push((up, down));
    let (Ok(client), Ok(server)) = (
        client_read.reunite(client_write),
        server_read.reunite(server_write),
    ) else {
        return;
    };
    let ending = link.ending.lock().expect("ending lock").clone();
    close(client, server, ending).await;
}

/// Closes both sides: RST for a reset; for a cut with grace, the client
/// first and the server after the grace (its replies read and dropped, so
/// its close is a FIN, not a RST for unread data).
async fn close(client: TcpStream, mut server: TcpStream, ending: Option<Kind>) {
    match ending {
        Some(Kind::Reset) => {
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
        Some(Kind::Cut { server_grace }) if !server_grace.is_zero() => {
            drop(client);
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(server_grace, async {
                while let Ok(n) = server.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        _ => {}
    }
}

/// A fault waiting for its point in the stream.
enum Pending {
    /// Fires once `pos` reaches this offset.
    At(u64, Kind),
    /// Still looking for the `left`-th (from 0) further occurrence.
    Search {
        needle: Vec<u8>,
        left: usize,
        extra: u64,
        kind: Kind,
        /// The last `needle.len() - 1` bytes seen, for matches across reads.
        tail: Vec<u8>,
    },
}

/// What a direction does after forwarding up to its next fault.
enum Flow {
    Go,
    Stop,
}

/// One direction of a connection with its faults.
struct Pipe {
    dir: Dir,
    pending: Vec<Pending>,
    /// Bytes forwarded so far.
    pos: u64,
    /// Slicing: the pause between 1-byte writes.
    slice: Option<Duration>,
    link: Arc<Link>,
}

impl Pipe {
    fn new(dir: Dir, faults: Vec<Fault>, link: Arc<Link>) -> Pipe {
        let pending = faults
            .into_iter()
            .map(|f| match f.at {
                At::Byte(n) => Pending::At(n, f.kind),
                At::After { needle, nth, extra } => Pending::Search {
                    needle,
                    left: nth,
                    extra,
                    kind: f.kind,
                    tail: Vec::new(),
                },
            })
            .collect();
        Pipe {
            dir,
            pending,
            pos: 0,
            slice: None,
            link,
        }
    }

    /// Forwards `from` to `to` until EOF, an error, a fault that ends the
    /// connection, or the other direction's end. Gives the halves back so
    /// the connection can choose how to close, with the bytes forwarded.
    async fn pump(
        mut self,
        mut from: OwnedReadHalf,
        mut to: OwnedWriteHalf,
    ) -> (OwnedReadHalf, OwnedWriteHalf, u64) {
        let kill = self.link.kill.clone();
        tokio::select! {
            () = self.forward_all(&mut from, &mut to) => {}
            () = kill.cancelled() => {}
        }
        (from, to, self.pos)
    }

    async fn forward_all(&mut self, from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if let Flow::Stop = self.fire_due().await {
                return;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) => {
                    // A clean close goes on as a half-close.
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
                Err(_) => return self.link.end(None),
            };
            self.resolve(&buf[..n]);
            if let Flow::Stop = self.forward_chunk(&buf[..n], to).await {
                return;
            }
        }
    }

    /// Forwards one read, stopping at each fault on the way.
    async fn forward_chunk(&mut self, mut chunk: &[u8], to: &mut OwnedWriteHalf) -> Flow {
        while !chunk.is_empty() {
            let take = match self.next_due() {
                Some(at) if at < self.pos + chunk.len() as u64 => (at - self.pos) as usize,
                _ => chunk.len(),
            };
            if self.write(&chunk[..take], to).await.is_err() {
                self.link.end(None);
                return Flow::Stop;
            }
            self.pos += take as u64;
            chunk = &chunk[take..];
            if let Flow::Stop = self.fire_due().await {
                return Flow::Stop;
            }
        }
        Flow::Go
    }

    async fn write(&self, bytes: &[u8], to: &mut OwnedWriteHalf) -> std::io::Result<()> {
        let Some(pause) = self.slice else {
            return to.write_all(bytes).await;
        };
        for byte in bytes {
            to.write_all(std::slice::from_ref(byte)).await?;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        Ok(())
    }

    /// The offset of the earliest fault whose point is known.
    fn next_due(&self) -> Option<u64> {
        self.pending
            .iter()
            .filter_map(|p| match p {
                Pending::At(at, _) => Some(*at),
                Pending::Search { .. } => None,
            })
            .min()
    }

    /// Turns searches whose needle ends in `chunk` (about to be forwarded
    /// from `pos` on) into offsets.
    fn resolve(&mut self, chunk: &[u8]) {
        let pos = self.pos;
        for pending in &mut self.pending {
            let Pending::Search {
                needle,
                left,
                extra,
                kind,
                tail,
            } = pending
            else {
                continue;
            };
            let mut window = std::mem::take(tail);
            let carried = window.len() as u64;
            window.extend_from_slice(chunk);
            let mut found = None;
            for end in needle.len()..=window.len() {
                if window[end - needle.len()..end] == needle[..] {
                    if *left == 0 {
                        found = Some(pos - carried + end as u64 + *extra);
                        break;
                    }
                    *left -= 1;
                }
            }
            match found {
                Some(at) => *pending = Pending::At(at, kind.clone()),
                None => {
                    let keep = needle.len().saturating_sub(1).min(window.len());
                    *tail = window[window.len() - keep..].to_vec();
                }
            }
        }
    }

    /// Fires every fault due at `pos`, in plan order.
    async fn fire_due(&mut self) -> Flow {
        while let Some(i) = self
            .pending
            .iter()
            .position(|p| matches!(p, Pending::At(at, _) if *at <= self.pos))
        {
            let Pending::At(_, kind) = self.pending.remove(i) else {
                unreachable!("position() matched an At");
            };
            self.link.record(self.dir, self.pos, &kind);
            match kind {
                Kind::Stall(pause) => tokio::time::sleep(pause).await,
                Kind::Slice { pause } => self.slice = Some(pause),
                ending => {
                    self.link.end(Some(ending));
                    return Flow::Stop;
                }
            }
        }
        Flow::Go
    }
}
