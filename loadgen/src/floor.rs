//! `loadgen floor`: what this machine charges for the traffic alone. Before blaming the
//! authenticator (or loadgen) for a slow large network, see what delivering one small value
//! to every member costs over loopback TCP with no protocol at all.
//!
//! A protocol-2 authenticator writes each change as one small delta (~86 bytes for a join)
//! to every member, once a distribution interval: at 10,000 members and 100 ms that is
//! 100,000 writes a second, and on loopback every write also runs the receiver's TCP input.
//! The floor reproduces that traffic, shaped as `pyile auth` and `loadgen` shape it:
//!
//! - a *sender* (this process, the authenticator's part): one task per member connection,
//!   all woken by one `Notify` every interval, each writing the same shared bytes;
//! - `shards` *follower* processes (loadgen's part, this binary again with hidden flags):
//!   one task per connection, reading.
//!
//! Each process measures the CPU (user and system, from `/proc/self/stat`) it used over a
//! window and divides it by the values written or read in it. Set against the CPU per
//! list write of a real run (`scripts/bench-auth.sh`), the difference is what the protocol
//! code adds; the floor is what no protocol code can take away on this machine.
//!
//! Loopback only: the sender listens on 127.0.0.1 and the followers connect there.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::Error;

/// What to measure.
#[derive(Clone, Debug)]
pub struct FloorConfig {
    /// Member connections in all.
    pub members: usize,
    /// Follower processes the connections are split over.
    pub shards: usize,
    /// How often a value goes to every member.
    pub interval: Duration,
    /// Bytes in each value.
    pub bytes: usize,
    /// Sending before the window opens.
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
}

impl FloorConfig {
    /// Err unless every count and duration is above 0.
    pub fn check(&self) -> Result<(), Error> {
        if self.members == 0 || self.shards == 0 || self.bytes == 0 || self.interval.is_zero() || self.window.is_zero()
        {
            return Err(Error::Config(
                "floor: --members, --shards, --bytes, --interval and --window must be above 0".into(),
            ));
        }
        Ok(())
    }
}

/// CPU used over a window and the values moved in it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Window {
    /// User CPU seconds.
    pub user: f64,
    /// System CPU seconds.
    pub system: f64,
    /// Values written (sender) or read (followers).
    pub values: u64,
}

impl Window {
    fn add(&mut self, other: &Window) {
        self.user += other.user;
        self.system += other.system;
        self.values += other.values;
    }

    /// The line a follower prints for the sender.
    fn line(&self) -> String {
        format!("window {} {} {}", self.user, self.system, self.values)
    }

    fn parse(line: &str) -> Option<Window> {
        let mut it = line.strip_prefix("window ")?.split_whitespace();
        Some(Window {
            user: it.next()?.parse().ok()?,
            system: it.next()?.parse().ok()?,
            values: it.next()?.parse().ok()?,
        })
    }

    /// Microseconds of CPU per value: (total, user, system); NaN without values.
    pub fn per_value_us(&self) -> (f64, f64, f64) {
        let per = |x: f64| if self.values == 0 { f64::NAN } else { x * 1e6 / self.values as f64 };
        (per(self.user + self.system), per(self.user), per(self.system))
    }
}

/// The two sides' windows.
#[derive(Clone, Copy, Debug)]
pub struct Floor {
    /// The sender's (the authenticator's part).
    pub sender: Window,
    /// The followers', added up (loadgen's part).
    pub followers: Window,
}

impl Floor {
    /// A Markdown table of both sides over a window of `window`.
    pub fn table(&self, cfg: &FloorConfig) -> String {
        let secs = cfg.window.as_secs_f64();
        let mut out = format!(
            "{} members, {} follower process(es), {} bytes every {:?} ({:.0} values/s asked), {:.0} s window\n\n",
            cfg.members,
            cfg.shards,
            cfg.bytes,
            cfg.interval,
            cfg.members as f64 / cfg.interval.as_secs_f64(),
            secs
        );
        out += "| side | values/s | CPU us/value | user us/value | system us/value | cores used |\n";
        out += "|---|---|---|---|---|---|\n";
        for (side, w) in
            [("sender (the authenticator's part)", &self.sender), ("followers (loadgen's part)", &self.followers)]
        {
            let (all, user, system) = w.per_value_us();
            out += &format!(
                "| {side} | {:.0} | {all:.2} | {user:.2} | {system:.2} | {:.2} |\n",
                w.values as f64 / secs,
                (w.user + w.system) / secs
            );
        }
        out
    }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::Run(format!("floor: {what}: {e}"))
}

/// CPU seconds this process has used so far: (user, system). `/proc` counts in USER_HZ,
/// which Linux fixes at 100 for user space.
fn cpu() -> Result<(f64, f64), Error> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(io("read /proc/self/stat"))?;
    let bad = || Error::Run("floor: /proc/self/stat has no utime and stime".into());
    // The command name may hold spaces; the fields after it are space-separated: utime and
    // stime are the line's 14th and 15th, the 12th and 13th after the name.
    let rest = stat.rfind(')').and_then(|i| stat.get(i + 2..)).ok_or_else(bad)?;
    let f: Vec<&str> = rest.split(' ').collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).map(|t| t / 100.0).ok_or_else(bad);
    Ok((tick(11)?, tick(12)?))
}

/// Counts `counter` and this process's CPU from `start` for `window`.
async fn measure(counter: &AtomicU64, start: Instant, window: Duration) -> Result<Window, Error> {
    sleep_until(start).await;
    let (u0, s0) = cpu()?;
    let v0 = counter.load(Ordering::Relaxed);
    sleep(window).await;
    let (u1, s1) = cpu()?;
    let v1 = counter.load(Ordering::Relaxed);
    Ok(Window { user: u1 - u0, system: s1 - s0, values: v1 - v0 })
}

/// A follower process: `conns` connections to `target`, read until the sender closes them;
/// prints its window (values = bytes read / `bytes`) on stdout.
pub async fn follow(target: SocketAddr, conns: usize, cfg: &FloorConfig) -> Result<(), Error> {
    if !target.ip().is_loopback() {
        return Err(Error::Config(format!("floor: {target} is not a loopback address")));
    }
    let read = Arc::new(AtomicU64::new(0));
    let first = Arc::new(Notify::new());
    for _ in 0..conns {
        let mut s = TcpStream::connect(target).await.map_err(io("connect to the sender"))?;
        s.set_nodelay(true).map_err(io("set TCP_NODELAY"))?;
        let (read, first) = (read.clone(), first.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut buf).await {
                first.notify_one();
                read.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
    }
    // The sender starts once every follower is connected: the first byte means it has.
    timeout(Duration::from_secs(60), first.notified())
        .await
        .map_err(|_| Error::Run("floor: the sender sent nothing for 60 s".into()))?;
    let w = measure(&read, Instant::now() + cfg.warmup, cfg.window).await?;
    println!("{}", Window { values: w.values / cfg.bytes.max(1) as u64, ..w }.line());
    Ok(())
}

/// Runs the sender here and `cfg.shards` followers as child processes of `exe` (this
/// binary), and returns both sides' windows.
pub async fn run(exe: &std::path::Path, cfg: &FloorConfig) -> Result<Floor, Error> {
    cfg.check()?;
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io("listen on 127.0.0.1"))?;
    let addr = listener.local_addr().map_err(io("local address"))?;
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut children = Vec::new();
    for i in 0..cfg.shards {
        let conns = cfg.members / cfg.shards + usize::from(i < cfg.members % cfg.shards);
        let child = tokio::process::Command::new(exe)
            .args(["floor", "--follow", &addr.to_string(), "--conns", &conns.to_string()])
            .args(["--bytes", &cfg.bytes.to_string(), "--warmup", &ms(cfg.warmup), "--window", &ms(cfg.window)])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io("start a follower process"))?;
        children.push(child);
    }

    let value: Arc<[u8]> = vec![b'x'; cfg.bytes].into();
    let tick = Arc::new(Notify::new());
    let written = Arc::new(AtomicU64::new(0));
    for _ in 0..cfg.members {
        let (mut s, _) = timeout(Duration::from_secs(60), listener.accept())
            .await
            .map_err(|_| Error::Run("floor: the followers did not all connect within 60 s".into()))?
            .map_err(io("accept a follower's connection"))?;
        s.set_nodelay(true).map_err(io("set TCP_NODELAY"))?;
        let (value, tick, written) = (value.clone(), tick.clone(), written.clone());
        tokio::spawn(async move {
            loop {
                tick.notified().await;
                if s.write_all(&value).await.is_err() {
                    return;
                }
                written.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let ticker = {
        let (tick, interval) = (tick.clone(), cfg.interval);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(interval);
            loop {
                every.tick().await;
                tick.notify_waiters();
            }
        })
    };
    let sender = measure(&written, Instant::now() + cfg.warmup, cfg.window).await;
    // The followers' windows opened a little later: keep sending until they have closed.
    let mut followers = Window::default();
    let mut failed = None;
    let outputs = async {
        let mut outs = Vec::new();
        for child in children {
            outs.push(child.wait_with_output().await);
        }
        outs
    };
    let outs = timeout(cfg.warmup + cfg.window + Duration::from_secs(30), outputs)
        .await
        .map_err(|_| Error::Run("floor: a follower did not finish".into()))?;
    ticker.abort();
    for out in outs {
        match out {
            Ok(o) if o.status.success() => match String::from_utf8_lossy(&o.stdout).lines().find_map(Window::parse) {
                Some(w) => followers.add(&w),
                None => failed = Some("a follower reported no window".to_string()),
            },
            Ok(o) => failed = Some(format!("a follower failed ({})", o.status)),
            Err(e) => failed = Some(format!("a follower: {e}")),
        }
    }
    if let Some(f) = failed {
        return Err(Error::Run(format!("floor: {f}")));
    }
    Ok(Floor { sender: sender?, followers })
}
