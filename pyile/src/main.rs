//! `pyile`: run a live authenticator, or join a network interactively.
//!
//! ```text
//! pyile auth --listen 127.0.0.1:4702 --password-file secret.txt --attempts 3
//! pyile auth --listen 0.0.0.0:4702 --advertise 192.0.2.10 --ban-for 1h
//! pyile auth --heartbeat-interval 1s --distribution-budget 16MiB/s   # or "unbounded"
//! pyile join --target 127.0.0.1:4702 --alias bob        # password from PYILE_PASSWORD
//! pyile hash-password --password-file secret.txt > verifier.txt
//! pyile auth --password-hash-file verifier.txt        # the password itself is not kept
//! pyile join --require-mutual-auth                    # never send the password in clear
//! ```
//!
//! Durations (`2s`, `500ms`, `1m30s`), the byte rate and the password source are read by
//! `pyile::units`, exactly like loadgen's flags and the simulator's scenario files.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use pyile::units::{ByteRate, PasswordError, parse_duration, resolve_password};
use pyile::{
    Authenticator, AuthenticatorConfig, Delivery, EventKind, EventStream, Joiner, JoinerConfig, MemberList, TokioNet,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tracing::{debug, info, warn};

/// A Pyile peer: the authenticator of a network, or an interactive joiner.
#[derive(Parser, Debug)]
#[command(name = "pyile", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level filter (e.g. info, debug, pyile=trace); also RUST_LOG.
    #[arg(long, global = true, default_value = "info", env = "RUST_LOG")]
    log: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an authenticator: admits joiners, bans guessers, heartbeats members
    /// and distributes the member list. Logs joins, removals and bans.
    Auth(AuthArgs),
    /// Join a network and chat: plain lines are broadcast; `/peers` lists the
    /// members (with their aliases), `/to ALIAS|IP:PORT text` sends directly, `/quit` leaves
    /// (telling the others you left). Joins and leaves show as "bob joined", "bob left
    /// (timeout)".
    Join(JoinArgs),
    /// Print the stored verifier of a password for `pyile auth --password-hash-file`: one
    /// line `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64), never the
    /// password. The password comes from --password-file, --password or PYILE_PASSWORD,
    /// else the first line of standard input.
    HashPassword(HashArgs),
}

#[derive(Args, Debug)]
struct HashArgs {
    #[command(flatten)]
    password: PasswordArgs,
    /// PBKDF2-HMAC-SHA-256 iterations (4096 to 1000000); each v1 joiner's cleartext
    /// password costs the authenticator one PBKDF2 of this many.
    #[arg(long, default_value_t = pyile::scram::DEFAULT_ITERATIONS)]
    iterations: u32,
}

/// Where the password comes from (first of: --password-file, --password,
/// PYILE_PASSWORD).
#[derive(Args, Debug)]
struct PasswordArgs {
    /// File holding the password (trailing newline ignored).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// The password itself (visible in the process list: prefer the file or
    /// the environment variable).
    #[arg(long, env = "PYILE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

impl PasswordArgs {
    fn resolve(&self) -> anyhow::Result<String> {
        resolve_password(self.password_file.as_deref(), self.password.as_deref()).map_err(|e| match e {
            PasswordError::Missing => anyhow::Error::new(e),
            _ => anyhow::anyhow!("--password-file: {e}"),
        })
    }
}

#[derive(Args, Debug)]
struct AuthArgs {
    /// Address of the auth socket; the distribution and peer sockets bind
    /// the same IP on free ports. To serve other machines, listen on their
    /// side's address, or on 0.0.0.0 with --advertise.
    #[arg(long, default_value = "127.0.0.1:4702", value_parser = resolve_addr)]
    listen: SocketAddr,
    /// The IP members reach this authenticator at (listed as its address);
    /// required with an unspecified --listen such as 0.0.0.0.
    #[arg(long, value_name = "IP")]
    advertise: Option<IpAddr>,
    #[command(flatten)]
    password: PasswordArgs,
    /// Check passwords against this stored verifier (made by `pyile hash-password`)
    /// instead of a password: the authenticator never holds the password.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["password_file", "password"])]
    password_hash_file: Option<PathBuf>,
    /// Wrong passwords from one IP before it is banned.
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Time between heartbeats to each member.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// Silence after which a member is removed [default: 3 intervals].
    #[arg(long, value_parser = parse_duration)]
    heartbeat_timeout: Option<Duration>,
    /// Bound on a whole handshake.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    handshake_timeout: Duration,
    /// Gap between back-to-back writes to reference (v1) joiners.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    v1_pacing: Duration,
    /// Bandwidth one full distribution round to reference (v1) members (the
    /// whole list to every one) may use, e.g. 64MiB/s, 500KB/s, or unbounded;
    /// under churn, lists to each are spaced to fit. Protocol-2 members get
    /// deltas and are not paced by it.
    #[arg(long, value_name = "RATE", default_value_t = ByteRate(pyile::DEFAULT_DISTRIBUTION_BUDGET))]
    distribution_budget: ByteRate,
    /// Least gap between two writes to one protocol-2 member: changes within it
    /// reach the member as one merged delta.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    distribution_interval: Duration,
    /// Writes a second one round of deltas (one to every protocol-2 member) may
    /// cost, or 0 for unbounded; under churn, writes to each are spaced to fit
    /// (10,000 members at 100000: a merged delta every 100 ms).
    #[arg(long, value_name = "N", default_value_t = pyile::authenticator::DEFAULT_DELTA_RATE)]
    delta_rate: u64,
    /// Recent deltas kept for protocol-2 members whose writer fell behind; one
    /// that missed more gets the whole list.
    #[arg(long, value_name = "N", default_value_t = pyile::authenticator::DEFAULT_DELTA_HISTORY)]
    delta_history: usize,
    /// Seconds a new connection has to send its password.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    password_timeout: Duration,
    /// Handshakes in progress at once; when all are taken, a new connection
    /// sheds the oldest.
    #[arg(long, default_value_t = 8192, value_name = "N")]
    max_handshakes: usize,
    /// Handshakes in progress from one source (an IPv4 address or an IPv6
    /// /64); more are closed at once. Raise it for many joiners behind one NAT.
    #[arg(long, default_value_t = pyile::authenticator::config::DEFAULT_MAX_HANDSHAKES_PER_SOURCE, value_name = "N")]
    max_handshakes_per_source: usize,
    /// How long a ban lasts [default: until the authenticator stops].
    #[arg(long, value_parser = parse_duration)]
    ban_for: Option<Duration>,
    /// Banned sources remembered at most (the oldest ban is forgotten first).
    #[arg(long, default_value_t = 65_536, value_name = "N")]
    max_bans: usize,
    /// Accept a peer address on another IP than the joiner's connection
    /// (joiners behind NAT that know their public address).
    #[arg(long)]
    foreign_peer_addresses: bool,
    /// Seed of the authenticator's RNG (heartbeat phases).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Alias for the authenticator's own chat messages.
    #[arg(long, default_value = "admin")]
    alias: String,
}

#[derive(Args, Debug)]
struct JoinArgs {
    /// The authenticator's auth address (HOST:PORT; a host name is resolved).
    #[arg(long, default_value = "127.0.0.1:4702", value_parser = resolve_addr)]
    target: SocketAddr,
    /// Your name: shown with your messages and, with a protocol-2 authenticator, your
    /// unique name in the network (the join is refused while another member holds it)
    /// [default: none; messages say "joiner"].
    #[arg(long)]
    alias: Option<String>,
    #[command(flatten)]
    password: PasswordArgs,
    /// Local IP for outgoing connections and the peer listener.
    #[arg(long)]
    local_ip: Option<IpAddr>,
    /// Port of the peer listener (0: any free port).
    #[arg(long, default_value_t = 0)]
    peer_port: u16,
    /// Bound on the whole handshake.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    handshake_timeout: Duration,
    /// Silence after which the authenticator is considered lost.
    #[arg(long, default_value = "7s", value_parser = parse_duration)]
    heartbeat_timeout: Duration,
    /// Refuse an authenticator that does not offer the SCRAM exchange (a v1
    /// authenticator, or an impostor posing as one): the password is never sent.
    #[arg(long)]
    require_mutual_auth: bool,
    /// Ask a protocol-2 authenticator for the member lists on the auth connection: one
    /// connection to it instead of two (ignored by other authenticators).
    #[arg(long)]
    one_connection: bool,
}

/// `IP:PORT`, or `HOST:PORT` resolved now (the first address, IPv4 preferred).
fn resolve_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> =
        s.to_socket_addrs().map_err(|e| format!("{s:?} is not IP:PORT or HOST:PORT ({e})"))?.collect();
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().ok_or_else(|| format!("{s:?} resolves to no address"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Auth(args) => run_auth(args).await,
            Command::Join(args) => run_join(args).await,
            Command::HashPassword(args) => hash_password(args),
        }
    });
    // Don't wait for the blocking thread reading stdin: a joiner that lost its
    // authenticator exits now, not at the next Enter.
    rt.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn hash_password(args: HashArgs) -> anyhow::Result<()> {
    use rand::SeedableRng;
    let password = match args.password.resolve() {
        Ok(p) => p,
        Err(e) if args.password.password_file.is_some() => return Err(e),
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            if line.is_empty() {
                bail!(
                    "no password: give --password-file FILE, set PYILE_PASSWORD, give --password, or type it on standard input"
                );
            }
            line
        }
    };
    let max = pyile::scram::DEFAULT_MAX_ITERATIONS;
    if !(pyile::scram::MIN_ITERATIONS..=max).contains(&args.iterations) {
        bail!("--iterations {}: must be {} to {max}", args.iterations, pyile::scram::MIN_ITERATIONS);
    }
    let mut rng = rand_chacha::ChaCha20Rng::try_from_rng(&mut rand::rngs::SysRng)
        .map_err(|e| anyhow::anyhow!("no randomness from the OS for the salt: {e}"))?;
    let verifier = pyile::scram::Verifier::new(&password, args.iterations, &mut rng)?;
    println!("{verifier}");
    Ok(())
}

async fn run_auth(args: AuthArgs) -> anyhow::Result<()> {
    let base = match &args.password_hash_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--password-hash-file: cannot read {}", path.display()))?;
            let verifier = pyile::scram::Verifier::parse(&text, pyile::scram::DEFAULT_MAX_ITERATIONS)
                .with_context(|| format!("--password-hash-file {}", path.display()))?;
            AuthenticatorConfig::with_verifier(verifier)
        }
        None => AuthenticatorConfig::new(args.password.resolve()?),
    };
    let mut cfg = base
        .listen(args.listen)
        .password_attempts(args.attempts)
        .heartbeat_interval(args.heartbeat_interval)
        .handshake_timeout(args.handshake_timeout)
        .v1_pacing(args.v1_pacing)
        .distribution_budget(args.distribution_budget.bytes_per_sec())
        .distribution_interval(args.distribution_interval)
        .delta_rate(args.delta_rate)
        .delta_history(args.delta_history)
        .password_timeout(args.password_timeout)
        .max_handshakes(args.max_handshakes)
        .max_handshakes_per_source(args.max_handshakes_per_source)
        .max_bans(args.max_bans)
        .foreign_peer_addresses(args.foreign_peer_addresses)
        .seed(args.seed)
        .alias(args.alias);
    if let Some(t) = args.heartbeat_timeout {
        cfg = cfg.heartbeat_timeout(t);
    }
    if let Some(d) = args.ban_for {
        cfg = cfg.ban_for(d);
    }
    if let Some(ip) = args.advertise {
        cfg = cfg.advertise(ip);
    }
    let mut auth = Authenticator::start(TokioNet, cfg)
        .await
        .with_context(|| format!("cannot start the authenticator on {}", args.listen))?;
    let mut events = auth.events().context("event stream already taken")?;
    // Printed on stdout so scripts can wait for it.
    println!("listening auth={} dist={} peer={}", auth.auth_addr(), auth.dist_addr(), auth.peer_addr());
    let logger = tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            log_auth_event(&ev.kind);
        }
    });
    shutdown_signal().await;
    info!("shutting down");
    auth.leave().await;
    let _ = logger.await;
    // What was distributed, on stdout like the listening line: a run's totals for scripts
    // (`scripts/bench-auth.sh` divides the CPU used by the values written).
    let d = auth.distribution_stats();
    println!(
        "distributed writes={} deltas={} merged={} delta_bytes={} snapshots_first={} snapshots_behind={} \
         snapshots_reported={} snapshot_bytes={} v1_lists={} v1_bytes={}",
        d.writes,
        d.deltas,
        d.merged,
        d.delta_bytes,
        d.snapshots_first,
        d.snapshots_behind,
        d.snapshots_reported,
        d.snapshot_bytes,
        d.v1_lists,
        d.v1_bytes
    );
    Ok(())
}

/// Logs what the library does not log itself: joins, removals, bans and refusals are
/// logged once, by the library (refusals rate-limited); this adds the rest.
fn log_auth_event(kind: &EventKind) {
    match kind {
        EventKind::MemberListChanged { list, bytes } => {
            debug!(version = list.version.unwrap_or(0), members = list.len(), bytes, "member list distributed")
        }
        EventKind::HeartbeatMissed { peer, silent_for } => warn!(member = %peer, ?silent_for, "heartbeat missed"),
        EventKind::MessageReceived { from, alias, data, .. } => info!(%from, %alias, "message: {data}"),
        EventKind::Lagged { dropped } => warn!(dropped, "event log fell behind"),
        _ => {}
    }
}

async fn run_join(args: JoinArgs) -> anyhow::Result<()> {
    let mut cfg = JoinerConfig::new(args.password.resolve()?)
        .peer_port(args.peer_port)
        .handshake_timeout(args.handshake_timeout)
        .heartbeat_timeout(args.heartbeat_timeout)
        .require_mutual_auth(args.require_mutual_auth)
        .one_connection(args.one_connection);
    if let Some(ip) = args.local_ip {
        cfg = cfg.local_ip(ip);
    }
    if let Some(alias) = args.alias {
        cfg = cfg.alias(alias);
    }
    let mut joiner =
        Joiner::join(TokioNet, args.target, cfg).await.with_context(|| format!("cannot join {}", args.target))?;
    println!(
        "joined {} as {} ({} members); type to broadcast, /peers, /to ALIAS|IP:PORT text, /quit",
        args.target,
        joiner.peer_addr(),
        joiner.members().len()
    );
    let events = joiner.events().context("event stream already taken")?;
    // Aliases of members heard from: v1 member lists carry addresses only.
    let aliases: Aliases = Default::default();
    let printer = tokio::spawn(print_joiner_events(
        events,
        joiner.members(),
        joiner.peer_addr(),
        aliases.clone(),
        joiner.is_protocol2(),
    ));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            _ = joiner.closed() => {
                let _ = printer.await;
                bail!("disconnected from the authenticator");
            }
            _ = shutdown_signal() => break,
            l = lines.next_line() => l.context("cannot read stdin")?,
        };
        let Some(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/quit" {
            break;
        } else if line == "/peers" {
            let list = joiner.members();
            let mut known = aliases.lock().unwrap_or_else(|p| p.into_inner()).clone();
            // The aliases the authenticator announced (protocol 2) win over the ones heard.
            for (m, a) in joiner.aliases() {
                known.insert(m, a.to_string());
            }
            for (i, m) in list.iter().enumerate() {
                let alias = known.get(m).map(|a| format!("  {a}")).unwrap_or_default();
                let who = if i == 0 {
                    " (authenticator)"
                } else if *m == joiner.peer_addr() {
                    " (you)"
                } else {
                    ""
                };
                println!("  {m}{alias}{who}");
            }
            if list.len() > 2 && known.is_empty() {
                println!(
                    "  (a member's alias shows once it has sent you a message: member lists carry addresses only)"
                );
            }
        } else if let Some(rest) = line.strip_prefix("/to ") {
            let Some((addr, text)) = rest.trim().split_once(' ') else {
                println!("usage: /to ALIAS|IP:PORT text");
                continue;
            };
            let to = addr.parse::<SocketAddr>().ok().or_else(|| joiner.find_alias(addr)).ok_or(());
            match to {
                Ok(to) => match joiner.send(to, text).await {
                    Ok(Delivery::Echoed) => println!("-> {to}: delivered"),
                    Ok(Delivery::Unconfirmed) => println!("-> {to}: sent, but no echo came back (not confirmed)"),
                    Err(e) => println!("send failed: {}", pyile::error::report(&e)),
                },
                Err(_) => println!("no member is called {addr:?}, and it is not an IP:PORT"),
            }
        } else if line.starts_with('/') {
            println!("unknown command; use /peers, /to ALIAS|IP:PORT text, /quit");
        } else {
            let r = joiner.broadcast(line).await;
            let members = r.sent + r.failed;
            let mut report = format!("-> broadcast to {members} members: {} delivered", r.delivered);
            if r.sent > r.delivered {
                report += &format!(", {} sent without an echo", r.sent - r.delivered);
            }
            if r.failed > 0 {
                report += &format!(", {} unreachable", r.failed);
            }
            println!("{report}");
        }
    }
    joiner.close().await;
    let _ = printer.await;
    Ok(())
}

/// How often, at most, a joiner prints who joined and left.
const MEMBERSHIP_LINE_EVERY: Duration = Duration::from_secs(1);

/// Aliases of the members this joiner has heard from, by peer address.
type Aliases = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<SocketAddr, String>>>;

/// Prints what the joiner hears: messages, and who joins and leaves: announced one by one by
/// a protocol-2 authenticator (`v2`: "bob joined", "bob left (timeout)"), else coalesced
/// from the lists (one line a second at most). Its own join (`me`), which the first deltas
/// announce too, is not shown: "joined" was printed already.
async fn print_joiner_events(mut events: EventStream, first: MemberList, me: SocketAddr, aliases: Aliases, v2: bool) {
    let mut shown = first;
    let mut latest: Option<MemberList> = None;
    let mut tick = tokio::time::interval(MEMBERSHIP_LINE_EVERY);
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = tick.tick() => {
                if let Some(list) = latest.take() {
                    if let Some(line) = membership_line(&shown, &list) {
                        println!("{line}");
                    }
                    shown = list;
                }
                continue;
            }
        };
        let Some(ev) = ev else { break };
        match ev.kind {
            EventKind::MessageReceived { from, alias, broadcast, data, .. } => {
                let how = if broadcast { "" } else { " (direct)" };
                println!("[{alias} {from}]{how} {data}");
                aliases.lock().unwrap_or_else(|p| p.into_inner()).insert(from, alias);
            }
            // Coalesced: under churn one line a second, not one per list.
            EventKind::MemberListChanged { list, .. } if !v2 => latest = Some(list),
            EventKind::PeerJoined { peer, alias, .. } if peer != me => {
                println!("* {}", announcement(peer, alias.as_deref(), None))
            }
            EventKind::PeerLeft { peer, alias, reason, .. } => {
                println!("* {}", announcement(peer, alias.as_deref(), Some(reason.as_str())))
            }
            EventKind::AnnouncementsSkipped { from, to } => {
                println!("* some joins and leaves were not announced (list v{from} -> v{to}); /peers shows who is here")
            }
            EventKind::AuthenticatorLost { reason } => println!("* authenticator lost: {reason:?}"),
            EventKind::MessageRefused { source } => warn!(%source, "refused a message from a non-member"),
            EventKind::Left => break,
            _ => {}
        }
    }
    if let Some(line) = latest.and_then(|list| membership_line(&shown, &list)) {
        println!("{line}");
    }
}

/// `bob joined`, `bob left (timeout)` (the address when the member has no alias).
fn announcement(peer: SocketAddr, alias: Option<&str>, left: Option<&str>) -> String {
    let who = alias.map_or_else(|| peer.to_string(), str::to_owned);
    match left {
        None => format!("{who} joined"),
        Some(reason) => format!("{who} left ({reason})"),
    }
}

/// `* 127.0.0.2:4000 joined (3 members)`, or counts when many changed at once; None if
/// the members are the same.
fn membership_line(before: &MemberList, after: &MemberList) -> Option<String> {
    let joined: Vec<String> = after.iter().filter(|m| !before.contains(m)).map(|m| m.to_string()).collect();
    let left: Vec<String> = before.iter().filter(|m| !after.contains(m)).map(|m| m.to_string()).collect();
    let mut parts = Vec::new();
    for (who, verb) in [(&joined, "joined"), (&left, "left")] {
        match who.len() {
            0 => {}
            1..=3 => parts.push(format!("{} {verb}", who.join(", "))),
            n => parts.push(format!("{n} {verb}")),
        }
    }
    (!parts.is_empty()).then(|| format!("* {} ({} members)", parts.join("; "), after.len()))
}
