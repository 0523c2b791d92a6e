//! The floor under a live member-list run: what it costs this machine to deliver one small
//! value to every member of a large network over loopback TCP, with no protocol at all.
//!
//! A protocol-2 authenticator writes each change as one small delta (~86 bytes for a join)
//! to every member, once a distribution interval: at 10,000 members and 100 ms that is
//! 100,000 writes a second, and on loopback every write also runs the receiver's TCP input.
//! This example measures that traffic alone, shaped as `pyile auth` and `loadgen` shape it:
//!
//! - a *sender* process (the authenticator's part) with one task per member connection,
//!   all woken by one `Notify` every interval, each writing the same shared bytes;
//! - `--shards` *follower* processes (loadgen's part), one task per connection, reading.
//!
//! Each process reports the CPU (user and system, from `/proc/self/stat`) it used over a
//! measured window, divided by the values written or read in it. Set against the CPU a join
//! costs in `scripts/bench-auth.sh`, the difference is what the protocol code adds; the
//! floor is what no protocol code can take away on this machine.
//!
//! ```sh
//! cargo run --release -p loadgen --example fanout_floor -- --members 10000 --shards 2
//! ```
//!
//! Loopback only: the sender listens on 127.0.0.1 and the followers connect there.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, RwLock};
use tokio::time::{Instant, sleep, sleep_until};

/// Measure the CPU per delivered value of a fan-out over loopback TCP, with no protocol.
#[derive(Parser, Debug)]
struct Args {
    /// Member connections in all.
    #[arg(long, default_value_t = 10_000)]
    members: usize,
    /// Follower processes the connections are split over (loadgen's `--shard`s).
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// How often a value goes to every member (the distribution interval).
    #[arg(long, default_value = "100ms", value_parser = parse_ms)]
    interval: Duration,
    /// Bytes in each value (a one-join delta is 86).
    #[arg(long, default_value_t = 86)]
    bytes: usize,
    /// Sending before the window opens.
    #[arg(long, default_value = "3000ms", value_parser = parse_ms)]
    warmup: Duration,
    /// The measured window.
    #[arg(long, default_value = "10000ms", value_parser = parse_ms)]
    window: Duration,
    /// Internal: run as a follower of this sender with this many connections.
    #[arg(long, hide = true, requires = "conns")]
    follow: Option<SocketAddr>,
    /// Internal: the follower's connections.
    #[arg(long, hide = true)]
    conns: Option<usize>,
}

fn parse_ms(s: &str) -> Result<Duration, String> {
    let ms = s.strip_suffix("ms").ok_or("give milliseconds, e.g. 100ms")?;
    ms.parse::<u64>().map(Duration::from_millis).map_err(|e| e.to_string())
}

/// CPU seconds this process has used so far: (user, system). `/proc` counts in USER_HZ,
/// which Linux fixes at 100 for user space.
fn cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // The command name may hold spaces; the fields after it are space-separated.
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (f[11].parse::<f64>().unwrap() / 100.0, f[12].parse::<f64>().unwrap() / 100.0)
}

/// CPU used over a window and the values moved in it.
struct Window {
    user: f64,
    system: f64,
    values: u64,
}

impl Window {
    fn line(&self, role: &str) -> String {
        format!("{role} {} {} {}", self.user, self.system, self.values)
    }

    fn parse(line: &str) -> Option<(String, Window)> {
        let mut it = line.split_whitespace();
        let role = it.next()?.to_string();
        let user = it.next()?.parse().ok()?;
        let system = it.next()?.parse().ok()?;
        let values = it.next()?.parse().ok()?;
        Some((role, Window { user, system, values }))
    }
}

/// Counts `counter` and this process's CPU from `start` for `window`.
async fn measure(counter: &AtomicU64, start: Instant, window: Duration) -> Window {
    sleep_until(start).await;
    let (u0, s0) = cpu();
    let v0 = counter.load(Ordering::Relaxed);
    sleep(window).await;
    let (u1, s1) = cpu();
    let v1 = counter.load(Ordering::Relaxed);
    Window { user: u1 - u0, system: s1 - s0, values: v1 - v0 }
}

async fn follower(target: SocketAddr, conns: usize, bytes: usize, warmup: Duration, window: Duration) {
    let read = Arc::new(AtomicU64::new(0));
    let first = Arc::new(Notify::new());
    for _ in 0..conns {
        let mut s = TcpStream::connect(target).await.expect("connect to the sender");
        s.set_nodelay(true).expect("TCP_NODELAY");
        let (read, first) = (read.clone(), first.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        first.notify_one();
                        read.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    // The sender starts once every follower is connected: the first byte means it has.
    first.notified().await;
    let w = measure(&read, Instant::now() + warmup, window).await;
    let w = Window { values: w.values / bytes as u64, ..w };
    println!("{}", w.line("follower"));
    std::io::stdout().flush().ok();
}

async fn sender(args: &Args) -> Vec<(String, Window)> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let exe = std::env::current_exe().expect("this program's path");
    let mut children = Vec::new();
    for i in 0..args.shards {
        let conns = args.members / args.shards + usize::from(i < args.members % args.shards);
        let child = Command::new(&exe)
            .args(["--follow", &addr.to_string(), "--conns", &conns.to_string()])
            .args(["--bytes", &args.bytes.to_string()])
            .args(["--warmup", &format!("{}ms", args.warmup.as_millis())])
            .args(["--window", &format!("{}ms", args.window.as_millis())])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a follower");
        children.push(child);
    }

    let value: Arc<RwLock<Arc<[u8]>>> = Arc::new(RwLock::new(vec![b'x'; args.bytes].into()));
    let tick = Arc::new(Notify::new());
    let written = Arc::new(AtomicU64::new(0));
    for _ in 0..args.members {
        let (mut s, _) = listener.accept().await.expect("accept a follower");
        s.set_nodelay(true).expect("TCP_NODELAY");
        let (value, tick, written) = (value.clone(), tick.clone(), written.clone());
        tokio::spawn(async move {
            loop {
                tick.notified().await;
                let bytes = value.read().await.clone();
                if s.write_all(&bytes).await.is_err() {
                    return;
                }
                written.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    eprintln!("{} members connected; sending every {:?}", args.members, args.interval);
    let ticker = {
        let (tick, interval) = (tick.clone(), args.interval);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(interval);
            loop {
                every.tick().await;
                tick.notify_waiters();
            }
        })
    };
    let mut results = vec![("sender".to_string(), measure(&written, Instant::now() + args.warmup, args.window).await)];
    // The followers' windows opened a little later: keep sending until they have closed.
    sleep(Duration::from_secs(1)).await;
    ticker.abort();
    for child in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().expect("a follower");
        results.extend(String::from_utf8_lossy(&out.stdout).lines().filter_map(Window::parse));
    }
    results
}

fn main() {
    let args = Args::parse();
    if let Ok((_, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        let _ = rlimit::increase_nofile_limit(hard);
    }
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    if let Some(target) = args.follow {
        rt.block_on(follower(target, args.conns.unwrap_or(0), args.bytes, args.warmup, args.window));
        return;
    }
    let results = rt.block_on(sender(&args));
    let secs = args.window.as_secs_f64();
    println!(
        "{} members, {} shards, {} bytes every {:?} ({} values/s asked), {:.0} s window",
        args.members,
        args.shards,
        args.bytes,
        args.interval,
        (args.members as f64 / args.interval.as_secs_f64()).round(),
        secs
    );
    println!("| side | values/s | CPU µs/value | user µs/value | system µs/value | cores used |");
    println!("|---|---|---|---|---|---|");
    let row = |side: &str, ws: Vec<&Window>| {
        let (u, s, v) = ws.iter().fold((0.0, 0.0, 0u64), |(u, s, v), w| (u + w.user, s + w.system, v + w.values));
        let per = |x: f64| if v == 0 { f64::NAN } else { x * 1e6 / v as f64 };
        println!(
            "| {side} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            v as f64 / secs,
            per(u + s),
            per(u),
            per(s),
            (u + s) / secs
        );
    };
    row("sender (authenticator's part)", results.iter().filter(|(r, _)| r == "sender").map(|(_, w)| w).collect());
    row("followers (loadgen's part)", results.iter().filter(|(r, _)| r == "follower").map(|(_, w)| w).collect());
}
