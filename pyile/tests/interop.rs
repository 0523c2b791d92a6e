//! Interop with the reference implementation, `pyile-protocol==0.1.1`, in
//! both directions, on real loopback sockets.
//!
//! Our own tests (loopback, turmoil, hostile, scale) only prove that our
//! authenticator and our joiner agree with each other; wire compatibility
//! with the reference is the whole point of the crate (see
//! `shared/pyile-v1-wire.md`), and only running the reference proves it.
//! Each Python peer is one unmodified reference `AuthPeer` or `JoinPeer` run
//! by `tests/interop/driver.py`, which prints JSON lines on stdout and takes
//! commands on stdin (see `tests/interop/README.md`). The tests check:
//!
//! 1. a reference joiner joins our authenticator, follows heartbeats faster
//!    than it answers them without being removed, sees our Rust joiner join,
//!    exchanges broadcasts and direct messages with it, and leaves (removed,
//!    list shrinks);
//! 2. our joiner joins a reference authenticator alongside a reference
//!    joiner, gets the full list, exchanges messages both ways with both
//!    reference peers, survives several reference heartbeats, and leaves;
//! 3. wrong passwords and bans in both directions: our joiner gets
//!    `Error::Authentication` and then `Error::Banned` from the reference,
//!    and a reference joiner is refused, counted and banned by ours;
//! 4. several reference joiners joining our authenticator at once all end
//!    with the full list: the interop hazard of the wire notes (back-to-back
//!    writes coalesce and break the reference's parser), i.e. our v1 pacing.
//!
//! Every Python peer gets its own loopback IP in 127.0.4.0/24 (no other
//! test uses that block): the reference binds random fixed-range ports on
//! its IP. Every wait is bounded and every Python process is killed by a
//! drop guard (and exits by itself after `--max-seconds` anyway).
//!
//! Needs `$PYILE_PYTHON`, an interpreter that imports `pyile_protocol`
//! 0.1.1 (`.ci/run` sets it up). Without it the tests print `skipping: ...`
//! and pass, except when `$CI` is set: then they fail, because CI must not
//! skip them silently.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{eventually, ip};
use pyile::{
    Authenticator, AuthenticatorConfig, Delivery, Error, Event, EventKind, EventStream, Joiner, JoinerConfig,
    RemovalReason, TokioNet,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout, timeout_at};

const PW: &str = "interop-secret";
/// Start to `ready` of a driver (≈ 0.1 s measured; generous for a loaded machine).
const READY: Duration = Duration::from_secs(15);
/// A chat message or a member list reaching its receiver.
const DELIVERY: Duration = Duration::from_secs(5);
/// A removal becoming visible (the reference authenticator notices in ≈ 2 s).
const REMOVAL: Duration = Duration::from_secs(8);
/// A driver exiting after `leave` (its leave has a 5 s guard of its own).
const EXIT: Duration = Duration::from_secs(10);
/// Every driver exits by itself after this long, whatever happens to us.
const DRIVER_MAX_SECONDS: &str = "90";
/// Auth port of the reference authenticators (each on its own IP). Not the
/// default 4702: a live `pyile auth` on `0.0.0.0:4702` would collide.
const REF_AUTH_PORT: u16 = 4712;
/// The driver's exit code for a join that was not authenticated.
const EXIT_NOT_AUTHENTICATED: i32 = 10;

// ---------------------------------------------------------------------------
// Finding the reference.
// ---------------------------------------------------------------------------

/// The interpreter with the reference installed, and the driver script.
#[derive(Clone, Debug)]
struct Reference {
    python: PathBuf,
    driver: PathBuf,
}

const IMPORT_CHECK: &str = "import importlib.metadata as m\n\
import pyile_protocol.lib.peers.AuthPeer, pyile_protocol.lib.peers.JoinPeer\n\
v = m.version('pyile-protocol')\n\
assert v == '0.1.1', 'pyile-protocol is %s, not 0.1.1' % v\n";

/// The reference, or `None` (after printing why) when it is not available
/// outside CI. Panics in CI (`$CI` set) when it is not available.
fn reference() -> Option<Reference> {
    static CHECKED: OnceLock<Result<Reference, String>> = OnceLock::new();
    match CHECKED.get_or_init(find_reference) {
        Ok(r) => Some(r.clone()),
        Err(why) if std::env::var_os("CI").is_some() => panic!(
            "interop tests cannot run, and CI must not skip them: {why}. \
             Run `bash .ci/run`, which installs pyile-protocol==0.1.1 in .venv and exports PYILE_PYTHON."
        ),
        Err(why) => {
            eprintln!(
                "skipping: {why} (set PYILE_PYTHON to a python with pyile-protocol==0.1.1, e.g. .venv/bin/python)"
            );
            None
        }
    }
}

/// Starts an interop test: the reference, or return (skip).
macro_rules! require_reference {
    () => {
        match reference() {
            Some(r) => r,
            None => return,
        }
    };
}

fn find_reference() -> Result<Reference, String> {
    let python = std::env::var_os("PYILE_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| "PYILE_PYTHON is not set".to_string())?;
    let driver = std::env::var_os("PYILE_INTEROP_DRIVER")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/driver.py")));
    if !driver.is_file() {
        return Err(format!("the interop driver {} does not exist", driver.display()));
    }
    let mut child = std::process::Command::new(&python)
        .args(["-c", IMPORT_CHECK])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run PYILE_PYTHON={}: {e}", python.display()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(Reference { python, driver }),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut s, &mut err);
                }
                let last = err.lines().last().unwrap_or("").to_string();
                return Err(format!(
                    "PYILE_PYTHON={} cannot import pyile_protocol 0.1.1 ({status}: {last})",
                    python.display()
                ));
            }
            Ok(None) if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("PYILE_PYTHON={} hung importing pyile_protocol", python.display()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for PYILE_PYTHON={}: {e}", python.display())),
        }
    }
}

// ---------------------------------------------------------------------------
// One reference peer, run by driver.py.
// ---------------------------------------------------------------------------

/// A running `driver.py`: its JSON-line events and its stdin. Killed on drop.
struct PyPeer {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Every event read so far, for assertions over the past and diagnostics.
    history: Vec<Value>,
    /// The member list of the last `ready` or `peers` event.
    peers: Option<Vec<SocketAddr>>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for PyPeer {
    fn drop(&mut self) {
        // kill_on_drop also kills it; this makes the guard explicit.
        let _ = self.child.start_kill();
    }
}

impl PyPeer {
    /// A reference `AuthPeer` on `ip:port`.
    fn auth(r: &Reference, name: &str, ip: &str, port: u16, attempts: u32) -> PyPeer {
        let args = [
            "auth",
            "--ip",
            ip,
            "--port",
            &port.to_string(),
            "--password",
            PW,
            "--attempts",
            &attempts.to_string(),
            "--alias",
            name,
            // Off-wire: stop the reference's distribution busy loop from
            // eating a core of this 2-core machine (see the driver README).
            "--idle-sleep-ms",
            "1",
        ]
        .map(String::from);
        PyPeer::spawn(r, name, &args)
    }

    /// A reference `JoinPeer` on `ip` joining the authenticator at `target`.
    fn join(r: &Reference, name: &str, ip: &str, target: SocketAddr, password: &str) -> PyPeer {
        let args = ["join", "--ip", ip, "--target", &target.to_string(), "--password", password, "--alias", name]
            .map(String::from);
        PyPeer::spawn(r, name, &args)
    }

    fn spawn(r: &Reference, name: &str, args: &[String]) -> PyPeer {
        let mut child = Command::new(&r.python)
            .arg("-u")
            .arg(&r.driver)
            .args(args)
            .args(["--max-seconds", DRIVER_MAX_SECONDS])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot spawn {} {}: {e}", r.python.display(), r.driver.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");

        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let v = serde_json::from_str(&line).unwrap_or_else(|_| json!({"event": "unparsable", "line": line}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap();
                if s.len() < 64 * 1024 {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        PyPeer { name: name.to_string(), child, stdin, lines, history: Vec::new(), peers: None, stderr }
    }

    fn observe(&mut self, v: &Value) {
        if matches!(event(v), "ready" | "peers")
            && let Some(p) = v.get("peers").and_then(addrs)
        {
            self.peers = Some(p);
        }
        self.history.push(v.clone());
    }

    /// The next event before `deadline`; Err says why there is none.
    async fn next_event(&mut self, deadline: Instant) -> Result<Value, &'static str> {
        match timeout_at(deadline, self.lines.recv()).await {
            Ok(Some(v)) => {
                self.observe(&v);
                Ok(v)
            }
            Ok(None) => Err("its stdout closed (the driver exited)"),
            Err(_) => Err("timed out"),
        }
    }

    /// Reads whatever events are already there, without waiting.
    fn drain(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            self.observe(&v);
        }
    }

    /// The last events and stderr, for failure messages.
    fn diagnostics(&mut self) -> String {
        self.drain();
        let start = self.history.len().saturating_sub(25);
        let events: Vec<String> = self.history[start..].iter().map(Value::to_string).collect();
        let stderr = self.stderr.lock().unwrap().clone();
        format!(
            "\n--- {} last events:\n{}\n--- {} stderr:\n{}",
            self.name,
            events.join("\n"),
            self.name,
            stderr.trim_end()
        )
    }

    /// Panics with `msg`, this peer's name, its last events and its stderr.
    fn fail(&mut self, msg: impl std::fmt::Display) -> ! {
        let diagnostics = self.diagnostics();
        panic!("{}: {msg}{diagnostics}", self.name)
    }

    /// Waits (at most `limit`) for an event matching `pred`; panics otherwise.
    async fn expect(&mut self, limit: Duration, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            match self.next_event(deadline).await {
                Ok(v) if pred(&v) => return v,
                Ok(_) => {}
                Err(why) => self.fail(format!("no {what} within {limit:?}: {why}")),
            }
        }
    }

    /// The `ready` line (panics on `fatal`, on exit or after `READY`).
    async fn ready(&mut self) -> Value {
        let v = self.expect(READY, "ready line", |v| matches!(event(v), "ready" | "fatal")).await;
        if event(&v) == "fatal" {
            self.fail(format!("the driver could not start: {v}"));
        }
        v
    }

    /// Waits until its member list is exactly `expected` (in order).
    async fn wait_peers(&mut self, expected: &[SocketAddr], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            self.drain();
            if self.peers.as_deref() == Some(expected) {
                return;
            }
            if let Err(why) = self.next_event(deadline).await {
                let held = self.peers.clone();
                self.fail(format!("member list not {expected:?} within {limit:?} ({why}); it holds {held:?}"));
            }
        }
    }

    /// Writes one command line on its stdin.
    async fn command(&mut self, cmd: Value) {
        let mut line = cmd.to_string();
        line.push('\n');
        let r = timeout(Duration::from_secs(2), async {
            self.stdin.write_all(line.as_bytes()).await?;
            self.stdin.flush().await
        })
        .await;
        if !matches!(r, Ok(Ok(()))) {
            self.fail(format!("cannot write command {cmd}: {r:?}"));
        }
    }

    /// Runs a broadcast or send command and returns its `result` line,
    /// asserting that the driver reports it as done.
    async fn run_ok(&mut self, cmd: Value) -> Value {
        let name = cmd["cmd"].as_str().unwrap_or_default().to_string();
        self.command(cmd.clone()).await;
        let res = self
            .expect(DELIVERY, &format!("result of {cmd}"), |v| event(v) == "result" && v["cmd"] == name.as_str())
            .await;
        if res["ok"] != true {
            self.fail(format!("command {cmd} failed: {res}"));
        }
        res
    }

    /// Waits for the process to exit; its exit code.
    async fn wait_exit(&mut self, limit: Duration) -> i32 {
        match timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => {
                // Read what it printed before exiting (the reader may lag).
                let _ = timeout(Duration::from_millis(500), async {
                    while let Ok(v) = self.next_event(Instant::now() + Duration::from_millis(500)).await {
                        if event(&v) == "exit" {
                            break;
                        }
                    }
                })
                .await;
                match status.code() {
                    Some(code) => code,
                    None => self.fail(format!("killed by a signal ({status})")),
                }
            }
            Ok(Err(e)) => self.fail(format!("wait failed: {e}")),
            Err(_) => self.fail(format!("did not exit within {limit:?}")),
        }
    }

    /// Tells it to leave and asserts a clean exit.
    async fn leave(&mut self) {
        self.command(json!({"cmd": "leave"})).await;
        let code = self.wait_exit(EXIT).await;
        if code != 0 {
            self.fail(format!("exit code {code} after leave"));
        }
    }

    /// Whether any event read so far matches `pred`.
    fn saw(&mut self, mut pred: impl FnMut(&Value) -> bool) -> bool {
        self.drain();
        self.history.iter().any(&mut pred)
    }
}

fn event(v: &Value) -> &str {
    v["event"].as_str().unwrap_or_default()
}

/// `["127.0.0.1", 4702]` as an address.
fn addr(v: &Value) -> Option<SocketAddr> {
    let a = v.as_array()?;
    let ip: IpAddr = a.first()?.as_str()?.parse().ok()?;
    let port = u16::try_from(a.get(1)?.as_u64()?).ok()?;
    (a.len() == 2).then_some(SocketAddr::new(ip, port))
}

fn addrs(v: &Value) -> Option<Vec<SocketAddr>> {
    v.as_array()?.iter().map(addr).collect()
}

/// The address as the reference writes it.
fn addr_json(a: SocketAddr) -> Value {
    json!([a.ip().to_string(), a.port()])
}

/// The address field `key` of a driver line (panics with the line if absent).
fn addr_field(v: &Value, key: &str) -> SocketAddr {
    addr(&v[key]).unwrap_or_else(|| panic!("no address {key:?} in {v}"))
}

/// A driver `message` event with this text.
fn message_with(data: &str) -> impl FnMut(&Value) -> bool + '_ {
    move |v| event(v) == "message" && v["message"]["data"] == data
}

// ---------------------------------------------------------------------------
// Our side's events, recorded.
// ---------------------------------------------------------------------------

/// An event stream of one of our nodes that keeps what it has read, so that
/// a test can also assert that something did *not* happen meanwhile.
struct Recorded {
    name: &'static str,
    stream: EventStream,
    seen: Vec<Event>,
}

impl Recorded {
    fn new(name: &'static str, stream: EventStream) -> Self {
        Recorded { name, stream, seen: Vec::new() }
    }

    fn drain(&mut self) {
        while let Some(ev) = self.stream.try_recv() {
            self.seen.push(ev);
        }
    }

    /// Waits (at most `limit`) for an event matching `pred`; panics otherwise.
    async fn expect(&mut self, limit: Duration, what: &str, mut pred: impl FnMut(&EventKind) -> bool) -> EventKind {
        let deadline = Instant::now() + limit;
        loop {
            match timeout_at(deadline, self.stream.recv()).await {
                Ok(Some(ev)) => {
                    let kind = ev.kind.clone();
                    self.seen.push(ev);
                    if pred(&kind) {
                        return kind;
                    }
                }
                Ok(None) => panic!("{}: event stream ended before {what}{}", self.name, self.diagnostics()),
                Err(_) => panic!("{}: no {what} within {limit:?}{}", self.name, self.diagnostics()),
            }
        }
    }

    /// Records events for `d`.
    async fn record_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(Some(ev)) = timeout_at(deadline, self.stream.recv()).await {
            self.seen.push(ev);
        }
    }

    /// Whether any event recorded so far matches `pred`.
    fn saw(&mut self, mut pred: impl FnMut(&EventKind) -> bool) -> bool {
        self.drain();
        self.seen.iter().any(|e| pred(&e.kind))
    }

    fn count(&mut self, mut pred: impl FnMut(&EventKind) -> bool) -> usize {
        self.drain();
        self.seen.iter().filter(|e| pred(&e.kind)).count()
    }

    fn diagnostics(&self) -> String {
        let start = self.seen.len().saturating_sub(25);
        let lines: Vec<String> = self.seen[start..].iter().map(|e| format!("{:?}", e.kind)).collect();
        format!("\n--- {} last events:\n{}", self.name, lines.join("\n"))
    }
}

fn is_message(kind: &EventKind, text: &str) -> bool {
    matches!(kind, EventKind::MessageReceived { data, .. } if data == text)
}

// ---------------------------------------------------------------------------
// 1. A reference joiner in our network.
// ---------------------------------------------------------------------------

/// A reference `JoinPeer` joins our authenticator, stays a member through
/// heartbeats faster than it answers them, talks with our joiner both ways,
/// and leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_joiner_in_a_rust_network() {
    let r = require_reference!();
    // 1 s beats with a 4 s timeout: the reference answers at most one beat
    // per ~2 s (it sleeps 2 s after each answer, its buffered beats pile up),
    // so this proves a member is judged by its answers, not per beat (checked:
    // with a 1.5 s timeout the reference joiner is removed and this test
    // fails). Default v1 pacing, as reference joiners need.
    let interval = Duration::from_secs(1);
    let hb_timeout = Duration::from_secs(4);
    let mut auth = Authenticator::start(
        TokioNet,
        AuthenticatorConfig::new(PW)
            .listen("127.0.4.10:0".parse().unwrap())
            .heartbeat_interval(interval)
            .heartbeat_timeout(hb_timeout)
            .alias("rust-auth"),
    )
    .await
    .unwrap();
    let mut auth_ev = Recorded::new("rust authenticator", auth.events().unwrap());
    let a = auth.peer_addr();

    // The reference joiner's handshake with us.
    let mut py = PyPeer::join(&r, "py-joiner", "127.0.4.11", auth.auth_addr(), PW);
    let ready = py.ready().await;
    let joined_at = Instant::now();
    assert!(ready["error"].is_null(), "reference joiner's handshake raised: {ready}{}", py.diagnostics());
    assert_eq!(ready["authenticated"], true, "reference joiner not authenticated: {ready}{}", py.diagnostics());
    assert_eq!(ready["banned"], false, "{ready}");
    let p = addr_field(&ready, "peer_address");
    assert_eq!(p.ip(), ip("127.0.4.11"));
    assert_eq!(py.peers.as_deref(), Some(&[a, p][..]), "reference joiner's first list (authenticator first)");
    let joined = auth_ev
        .expect(DELIVERY, "MemberJoined of the reference joiner", |k| matches!(k, EventKind::MemberJoined { .. }))
        .await;
    assert!(
        matches!(joined, EventKind::MemberJoined { member, source } if member == p && source == p.ip()),
        "{joined:?}"
    );
    assert!(eventually(DELIVERY, || auth.members().to_vec() == vec![a, p]).await, "{:?}", auth.members());

    // Our joiner joins too; everyone converges on [auth, py, rust].
    let mut rj = Joiner::join(
        TokioNet,
        auth.auth_addr(),
        JoinerConfig::new(PW).alias("rust-joiner").local_ip(ip("127.0.4.12")).heartbeat_interval(interval),
    )
    .await
    .unwrap();
    let mut rj_ev = Recorded::new("rust joiner", rj.events().unwrap());
    let j = rj.peer_addr();
    let all = vec![a, p, j];
    // `join` returns once our joiner's distribution connection is up; the
    // authenticator commits the member a moment later.
    assert!(eventually(DELIVERY, || auth.members().to_vec() == all).await, "authenticator holds {:?}", auth.members());
    assert!(eventually(DELIVERY, || rj.members().to_vec() == all).await, "rust joiner holds {:?}", rj.members());
    py.wait_peers(&all, DELIVERY).await;

    // Our joiner broadcasts: the reference joiner reports it and echoes.
    let report = rj.broadcast("hello from rust").await;
    assert_eq!((report.sent, report.delivered, report.failed), (2, 2, 0), "broadcast to [auth, py]: {report:?}");
    let m = py.expect(DELIVERY, "the rust broadcast", message_with("hello from rust")).await;
    assert_eq!(m["message"]["alias"], "rust-joiner", "{m}");
    assert_eq!(m["message"]["to"], "Broadcast", "{m}");
    assert_eq!(addr(&m["message"]["from"]), Some(j), "{m}");

    // The reference joiner broadcasts: our joiner and our authenticator get it.
    py.run_ok(json!({"cmd": "broadcast", "data": "hello from python"})).await;
    let got = rj_ev.expect(DELIVERY, "the python broadcast", |k| is_message(k, "hello from python")).await;
    match got {
        EventKind::MessageReceived { from, source, alias, broadcast, .. } => {
            assert_eq!((from, source.ip(), alias.as_str(), broadcast), (p, p.ip(), "py-joiner", true));
        }
        other => unreachable!("{other:?}"),
    }
    auth_ev.expect(DELIVERY, "the python broadcast at the authenticator", |k| is_message(k, "hello from python")).await;

    // Direct messages both ways.
    py.run_ok(json!({"cmd": "send", "to": addr_json(j), "data": "direct from python"})).await;
    let got = rj_ev.expect(DELIVERY, "the python direct message", |k| is_message(k, "direct from python")).await;
    assert!(matches!(got, EventKind::MessageReceived { from, broadcast: false, .. } if from == p), "{got:?}");
    assert_eq!(rj.send(p, "direct from rust").await.unwrap(), Delivery::Echoed, "the reference echoes");
    let m = py.expect(DELIVERY, "the rust direct message", message_with("direct from rust")).await;
    assert_eq!(addr(&m["message"]["to"]), Some(p), "{m}");

    // Heartbeats: observe until well past the heartbeat timeout since it
    // joined. The reference must still be a member and still be running.
    let observe_until = joined_at + hb_timeout + interval * 2;
    auth_ev.record_for(observe_until.saturating_duration_since(Instant::now()).max(interval * 2)).await;
    assert!(
        !auth_ev.saw(|k| matches!(k, EventKind::MemberRemoved { .. })),
        "a member was removed while the reference joiner kept answering heartbeats{}",
        auth_ev.diagnostics()
    );
    assert_eq!(auth.members().to_vec(), all, "members after {:?}", joined_at.elapsed());
    assert!(
        !py.saw(|v| matches!(event(v), "exit") || (event(v) == "log" && v["state"] == "ERROR")),
        "the reference joiner had heartbeat trouble{}",
        py.diagnostics()
    );
    assert_eq!(py.peers.as_deref(), Some(&all[..]));

    // The reference joiner leaves: removed as Closed, our joiner's list shrinks.
    py.leave().await;
    let removed = auth_ev
        .expect(REMOVAL, "MemberRemoved of the reference joiner", |k| matches!(k, EventKind::MemberRemoved { .. }))
        .await;
    assert!(
        matches!(removed, EventKind::MemberRemoved { member, reason: RemovalReason::Closed } if member == p),
        "{removed:?}"
    );
    assert!(eventually(DELIVERY, || rj.members().to_vec() == vec![a, j]).await, "rust joiner holds {:?}", rj.members());
    assert!(!rj_ev.saw(|k| matches!(k, EventKind::AuthenticatorLost { .. })), "{}", rj_ev.diagnostics());
    rj.leave().await;
    auth.leave().await;
}

// ---------------------------------------------------------------------------
// 2. Our joiner in a reference network.
// ---------------------------------------------------------------------------

/// Our joiner joins a reference `AuthPeer` next to a reference `JoinPeer`,
/// talks with both, survives several reference heartbeats, and leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_joiner_in_a_reference_network() {
    let r = require_reference!();
    let mut pa = PyPeer::auth(&r, "py-auth", "127.0.4.20", REF_AUTH_PORT, 3);
    let ready = pa.ready().await;
    let auth_addr = addr_field(&ready, "auth_address");
    let a = addr_field(&ready, "peer_address");
    assert_eq!(auth_addr, SocketAddr::new(ip("127.0.4.20"), REF_AUTH_PORT));
    assert_eq!(pa.peers.as_deref(), Some(&[a][..]));

    // A reference joiner first, then ours (one at a time: the reference
    // authenticator coalesces nothing, and its lists must not collide).
    let mut pj = PyPeer::join(&r, "py-joiner", "127.0.4.21", auth_addr, PW);
    let ready = pj.ready().await;
    assert_eq!(ready["authenticated"], true, "{ready}{}", pj.diagnostics());
    let p = addr_field(&ready, "peer_address");
    pa.wait_peers(&[a, p], DELIVERY).await;
    pj.wait_peers(&[a, p], DELIVERY).await;

    // The default joiner settings: 7 s heartbeat timeout (the reference
    // beats every ~2 s), and it announces protocol 2 inside `shadow`, which
    // the reference must ignore. It would take its lists on one connection,
    // but never asks an authenticator that did not announce protocol 2.
    let cfg = JoinerConfig::new(PW).alias("rust-joiner").local_ip(ip("127.0.4.22")).one_connection(true);
    let mut rj = Joiner::join(TokioNet, auth_addr, cfg)
        .await
        .unwrap_or_else(|e| panic!("rust joiner could not join the reference: {e}{}", pa.diagnostics()));
    assert!(!rj.is_one_connection() && rj.distribution_local_addr().is_some(), "two connections to the reference");
    let mut rj_ev = Recorded::new("rust joiner", rj.events().unwrap());
    let j = rj.peer_addr();
    let all = vec![a, p, j];
    assert_eq!(rj.members().to_vec(), all, "rust joiner's first list");
    assert_eq!(rj.members().version, None, "the reference sends unversioned lists");
    pa.wait_peers(&all, DELIVERY).await;
    pj.wait_peers(&all, DELIVERY).await;
    // The distribution connection works: the reference's list arrived there too.
    rj_ev
        .expect(
            DELIVERY,
            "a list on the distribution connection",
            |k| matches!(k, EventKind::MemberListChanged { list, .. } if list.to_vec() == all),
        )
        .await;

    // Our broadcast reaches both reference peers, which echo.
    let report = rj.broadcast("hello from rust").await;
    assert_eq!(
        (report.sent, report.delivered, report.failed),
        (2, 2, 0),
        "broadcast to [py-auth, py-joiner]: {report:?}"
    );
    for peer in [&mut pj, &mut pa] {
        let m = peer.expect(DELIVERY, "the rust broadcast", message_with("hello from rust")).await;
        assert_eq!(addr(&m["message"]["from"]), Some(j), "{m}");
        assert_eq!(m["message"]["to"], "Broadcast", "{m}");
        assert_eq!(m["message"]["alias"], "rust-joiner", "{m}");
    }
    // The reference joiner broadcasts; the reference authenticator sends directly.
    pj.run_ok(json!({"cmd": "broadcast", "data": "hello from python"})).await;
    let got = rj_ev.expect(DELIVERY, "the python broadcast", |k| is_message(k, "hello from python")).await;
    assert!(
        matches!(got, EventKind::MessageReceived { from, source, broadcast: true, ref alias, .. }
            if from == p && source.ip() == p.ip() && alias == "py-joiner"),
        "{got:?}"
    );
    pa.run_ok(json!({"cmd": "send", "to": addr_json(j), "data": "direct from the reference authenticator"})).await;
    let got = rj_ev
        .expect(DELIVERY, "the direct message", |k| is_message(k, "direct from the reference authenticator"))
        .await;
    assert!(matches!(got, EventKind::MessageReceived { from, broadcast: false, .. } if from == a), "{got:?}");
    // And our direct message to the reference joiner, echoed.
    assert_eq!(rj.send(p, "direct from rust").await.unwrap(), Delivery::Echoed);
    let m = pj.expect(DELIVERY, "the rust direct message", message_with("direct from rust")).await;
    assert_eq!(addr(&m["message"]["to"]), Some(p), "{m}");

    // Several reference heartbeats (one per ~2 s), each answered.
    let before = rj_ev.count(|k| matches!(k, EventKind::HeartbeatReceived { .. }));
    for n in 0..3 {
        let k = rj_ev
            .expect(Duration::from_secs(5), &format!("reference heartbeat {n}"), |k| {
                matches!(k, EventKind::HeartbeatReceived { .. } | EventKind::AuthenticatorLost { .. })
            })
            .await;
        assert!(
            matches!(k, EventKind::HeartbeatReceived { from } if from == auth_addr),
            "{k:?}{}",
            rj_ev.diagnostics()
        );
    }
    assert!(rj_ev.count(|k| matches!(k, EventKind::HeartbeatReceived { .. })) >= before + 3);
    assert!(rj.is_connected(), "rust joiner left by itself{}", rj_ev.diagnostics());
    assert!(!rj_ev.saw(|k| matches!(k, EventKind::AuthenticatorLost { .. })), "{}", rj_ev.diagnostics());
    pa.drain();
    if pa.peers.as_deref() != Some(&all[..]) {
        pa.fail("the reference authenticator dropped us");
    }
    assert_eq!(rj.members().to_vec(), all);

    // We leave: the reference authenticator removes us and redistributes.
    rj.leave().await;
    assert_eq!(rj.task_count(), 0);
    pa.wait_peers(&[a, p], REMOVAL).await;
    pj.wait_peers(&[a, p], REMOVAL).await;
    assert!(
        !pa.saw(|v| event(v) == "log" && v["state"] == "THREAD-EXCEPTION"),
        "a reference thread died{}",
        pa.diagnostics()
    );
    pj.leave().await;
    pa.wait_peers(&[a], REMOVAL).await;
    pa.leave().await;
}

// ---------------------------------------------------------------------------
// 3. Wrong passwords and bans, both ways.
// ---------------------------------------------------------------------------

/// Our joiner with a wrong password against the reference authenticator:
/// `Error::Authentication`, three times, then `Error::Banned` (the reference
/// bans on the 3rd failure with `password_attempts = 3`), per IP only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_joiner_wrong_password_against_reference() {
    let r = require_reference!();
    let mut pa = PyPeer::auth(&r, "py-auth", "127.0.4.30", REF_AUTH_PORT, 3);
    let ready = pa.ready().await;
    let auth_addr = addr_field(&ready, "auth_address");
    let a = addr_field(&ready, "peer_address");
    let cfg = |pw: &str, local: &str| {
        JoinerConfig::new(pw).alias("mallory").local_ip(ip(local)).handshake_timeout(Duration::from_secs(5))
    };

    for n in 1..=3 {
        match Joiner::join(TokioNet, auth_addr, cfg("wrong", "127.0.4.31")).await {
            Err(Error::Authentication) => {}
            Err(e) => panic!("wrong password #{n}: expected Error::Authentication, got {e:?}{}", pa.diagnostics()),
            Ok(_) => panic!("wrong password #{n} was accepted{}", pa.diagnostics()),
        }
    }
    match Joiner::join(TokioNet, auth_addr, cfg(PW, "127.0.4.31")).await {
        Err(Error::Banned) => {}
        Err(e) => panic!("after 3 failures: expected Error::Banned, got {e:?}{}", pa.diagnostics()),
        Ok(_) => panic!("a banned IP was admitted{}", pa.diagnostics()),
    }
    pa.drain();
    assert_eq!(pa.peers.as_deref(), Some(&[a][..]), "no failed joiner may become a member");

    // Another IP with the right password is admitted.
    let ok = Joiner::join(TokioNet, auth_addr, cfg(PW, "127.0.4.32")).await.unwrap();
    pa.wait_peers(&[a, ok.peer_addr()], DELIVERY).await;
    ok.leave().await;
    pa.wait_peers(&[a], REMOVAL).await;
    pa.leave().await;
}

/// A reference joiner with a wrong password against our authenticator is
/// refused (`ready` not authenticated, exit code 10) and counted; at
/// `password_attempts` its IP is banned and the reference sees
/// `{"banned": true}`; another IP still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_joiner_wrong_password_against_rust() {
    let r = require_reference!();
    let mut auth = Authenticator::start(
        TokioNet,
        AuthenticatorConfig::new(PW).listen("127.0.4.40:0".parse().unwrap()).password_attempts(2),
    )
    .await
    .unwrap();
    let mut auth_ev = Recorded::new("rust authenticator", auth.events().unwrap());
    let bad_ip = ip("127.0.4.41");

    for n in 1..=2u32 {
        let mut py = PyPeer::join(&r, &format!("py-wrong-{n}"), "127.0.4.41", auth.auth_addr(), "wrong");
        let ready = py.ready().await;
        assert_eq!(ready["authenticated"], false, "wrong password #{n} accepted: {ready}");
        assert_eq!(ready["banned"], false, "wrong password #{n}: {ready}");
        assert_eq!(py.wait_exit(EXIT).await, EXIT_NOT_AUTHENTICATED, "{}", py.diagnostics());
        let k = auth_ev.expect(DELIVERY, "AuthFailed", |k| matches!(k, EventKind::AuthFailed { .. })).await;
        assert!(matches!(k, EventKind::AuthFailed { ip, attempts } if ip == bad_ip && attempts == n), "{k:?}");
    }
    auth_ev.expect(DELIVERY, "Banned", |k| matches!(k, EventKind::Banned { ip } if *ip == bad_ip)).await;
    assert_eq!(auth.banned(), vec![bad_ip]);

    // Banned: even the right password gets {"banned": true}.
    let mut py = PyPeer::join(&r, "py-banned", "127.0.4.41", auth.auth_addr(), PW);
    let ready = py.ready().await;
    assert_eq!((&ready["authenticated"], &ready["banned"]), (&json!(false), &json!(true)), "{ready}");
    assert_eq!(py.wait_exit(EXIT).await, EXIT_NOT_AUTHENTICATED, "{}", py.diagnostics());
    auth_ev.expect(DELIVERY, "BanRefused", |k| matches!(k, EventKind::BanRefused { ip } if *ip == bad_ip)).await;
    assert!(
        !auth_ev.saw(|k| matches!(k, EventKind::MemberJoined { .. })),
        "a refused joiner became a member{}",
        auth_ev.diagnostics()
    );
    assert_eq!(auth.members().len(), 1);

    // Another IP is unaffected.
    let mut good = PyPeer::join(&r, "py-good", "127.0.4.42", auth.auth_addr(), PW);
    let ready = good.ready().await;
    assert_eq!(ready["authenticated"], true, "{ready}{}", good.diagnostics());
    let p = addr_field(&ready, "peer_address");
    assert!(eventually(DELIVERY, || auth.members().to_vec() == vec![auth.peer_addr(), p]).await);
    good.leave().await;
    assert!(eventually(REMOVAL, || auth.members().len() == 1).await, "{:?}", auth.members());
    auth.leave().await;
}

// ---------------------------------------------------------------------------
// 4. Many reference joiners at once.
// ---------------------------------------------------------------------------

/// Ten reference joiners join our authenticator at the same moment. Each
/// one receives the member list once per join after its own, so their
/// distribution connections get lists back to back; the reference reader
/// silently loses two lists that arrive in one `recv`, and its handshake
/// fails outright when `distro` and `dist_addr` coalesce. Every one of them
/// ending with the full list is what proves our v1 pacing. (Checked: with
/// `v1_pacing(Duration::ZERO)` this test fails in most runs, a reference
/// handshake raising `JSONDecodeError: Extra data`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_reference_joiners_at_once() {
    let r = require_reference!();
    const N: usize = 10;
    let auth = Authenticator::start(TokioNet, AuthenticatorConfig::new(PW).listen("127.0.4.50:0".parse().unwrap()))
        .await
        .unwrap();
    let a = auth.peer_addr();

    let mut joiners: Vec<PyPeer> = (0..N)
        .map(|i| PyPeer::join(&r, &format!("py-{i}"), &format!("127.0.4.{}", 51 + i), auth.auth_addr(), PW))
        .collect();
    let mut peer_addrs = Vec::new();
    for py in &mut joiners {
        let ready = py.ready().await;
        assert!(ready["error"].is_null(), "handshake raised (coalesced writes?): {ready}{}", py.diagnostics());
        assert_eq!(ready["authenticated"], true, "{ready}{}", py.diagnostics());
        let p = addr_field(&ready, "peer_address");
        let first = py.peers.clone().unwrap_or_default();
        assert_eq!(first.first(), Some(&a), "{}: first list {first:?}", py.name);
        assert!(first.contains(&p), "{}: first list {first:?} lacks itself", py.name);
        peer_addrs.push(p);
    }
    assert!(
        eventually(Duration::from_secs(10), || auth.members().len() == N + 1).await,
        "authenticator holds {:?}",
        auth.members()
    );
    let all = auth.members().to_vec();
    let mut expected: Vec<SocketAddr> = std::iter::once(a).chain(peer_addrs.iter().copied()).collect();
    expected.sort();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    for py in &mut joiners {
        py.wait_peers(&all, Duration::from_secs(10)).await;
    }

    // All leave at once; the authenticator ends alone.
    for py in &mut joiners {
        py.command(json!({"cmd": "leave"})).await;
    }
    for py in &mut joiners {
        let code = py.wait_exit(EXIT).await;
        assert_eq!(code, 0, "{}", py.diagnostics());
    }
    assert!(
        eventually(REMOVAL, || auth.members().to_vec() == vec![a]).await,
        "authenticator holds {:?} after every joiner left",
        auth.members()
    );
    auth.leave().await;
}

/// A Rust authenticator that holds only a stored SCRAM verifier (`pyile auth
/// --password-hash-file`) still admits reference joiners, whose v1 `shadow` carries the
/// password in clear: it recomputes the verifier's keys with the stored salt. A wrong one
/// is refused and counted; the reference sees plain v1 bytes throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_joiner_against_a_stored_verifier() {
    let r = require_reference!();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
    let verifier = pyile::scram::Verifier::new(PW, 4096, &mut rng).unwrap();
    let cfg = AuthenticatorConfig::with_verifier(verifier).listen("127.0.4.60:0".parse().unwrap()).password_attempts(3);
    let mut auth = Authenticator::start(TokioNet, cfg).await.unwrap();
    let mut auth_ev = Recorded::new("rust authenticator", auth.events().unwrap());

    let mut bad = PyPeer::join(&r, "py-wrong", "127.0.4.61", auth.auth_addr(), "wrong");
    let ready = bad.ready().await;
    assert_eq!((&ready["authenticated"], &ready["banned"]), (&json!(false), &json!(false)), "{ready}");
    assert_eq!(bad.wait_exit(EXIT).await, EXIT_NOT_AUTHENTICATED, "{}", bad.diagnostics());
    let k = auth_ev.expect(DELIVERY, "AuthFailed", |k| matches!(k, EventKind::AuthFailed { .. })).await;
    assert!(matches!(k, EventKind::AuthFailed { attempts: 1, .. }), "{k:?}");

    let mut good = PyPeer::join(&r, "py-good", "127.0.4.62", auth.auth_addr(), PW);
    let ready = good.ready().await;
    assert_eq!(ready["authenticated"], true, "{ready}{}", good.diagnostics());
    let p = addr_field(&ready, "peer_address");
    assert!(eventually(DELIVERY, || auth.members().to_vec() == vec![auth.peer_addr(), p]).await);
    good.leave().await;
    assert!(eventually(REMOVAL, || auth.members().len() == 1).await, "{:?}", auth.members());
    auth.leave().await;
}
