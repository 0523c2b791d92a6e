//! The `pyile` binary as the README uses it: `pyile auth` on a free loopback port with the
//! password in a file, two interactive `pyile join`s (password from `PYILE_PASSWORD`) that
//! list the members, broadcast, send directly and quit; and one clear error line with a
//! non-zero exit when the password is wrong.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pyile");

/// A child process whose stdout lines arrive on a channel; killed on drop.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start pyile");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Proc { child, stdin, lines, seen: Vec::new() }
    }

    /// The first stdout line (from now on) that satisfies `pred`, waiting at most 10 s.
    fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {what} within 10 s; saw {:?}", self.seen),
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("write to pyile join");
    }

    /// Waits (at most 10 s) for the process to exit by itself.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "pyile did not exit; saw {:?}", self.seen);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pyile auth` on a free loopback port, its password in a file of a fresh
/// directory `name` (removed by the caller); returns it and its auth address.
fn start_auth(name: &str, password: &str) -> (Proc, String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let mut auth = Proc::spawn(Command::new(BIN).args(["auth", "--listen", "127.0.0.1:0", "--password-file"]).arg(&pw));
    let line = auth.wait_line("listening", |l| l.starts_with("listening "));
    let addr = line.split_whitespace().find_map(|w| w.strip_prefix("auth=")).expect("auth= in the listening line");
    (auth, addr.to_owned(), dir)
}

/// Everything the (exited) process wrote on stderr.
fn stderr_of(p: &mut Proc) -> String {
    let mut text = String::new();
    std::io::Read::read_to_string(p.child.stderr.as_mut().unwrap(), &mut text).unwrap();
    text
}

fn join(target: &str, alias: &str, password: &str, ip: &str) -> Proc {
    Proc::spawn(
        Command::new(BIN)
            .args(["join", "--target", target, "--alias", alias, "--local-ip", ip])
            .env("PYILE_PASSWORD", password),
    )
}

#[test]
fn auth_and_two_interactive_joiners_chat_as_the_readme_says() {
    let (_auth, target, dir) = start_auth("pyile-cli", "correct horse");

    let mut bob = join(&target, "bob", "correct horse", "127.0.9.1");
    let joined = bob.wait_line("joined", |l| l.starts_with("joined "));
    let bob_addr = joined.split_whitespace().nth(3).expect("bob's address").to_owned();
    let mut eve = join(&target, "eve", "correct horse", "127.0.9.2");
    let joined = eve.wait_line("joined", |l| l.starts_with("joined "));
    // "joined <target> as <ip:port> (...)"
    let eve_addr = joined.split_whitespace().nth(3).expect("eve's address").to_owned();
    // Announced by the authenticator, by alias.
    bob.wait_line("eve joined", |l| l == "* eve joined");

    bob.type_line("/peers");
    bob.wait_line("eve and her alias in /peers", |l| l.trim() == format!("{eve_addr}  eve"));

    bob.type_line("hello everyone");
    eve.wait_line("bob's broadcast", |l| l.starts_with("[bob ") && l.ends_with("] hello everyone"));
    bob.wait_line("the broadcast report", |l| l == "-> broadcast to 2 members: 2 delivered");
    // Once bob has spoken, eve's /peers names him.
    eve.type_line("/peers");
    eve.wait_line("bob's alias in /peers", |l| l.trim() == format!("{bob_addr}  bob"));

    bob.type_line(&format!("/to {eve_addr} just you"));
    eve.wait_line("bob's direct message", |l| l.starts_with("[bob ") && l.ends_with("(direct) just you"));

    // An alias works as well as an address.
    bob.type_line("/to eve by name");
    eve.wait_line("bob's message by alias", |l| l.starts_with("[bob ") && l.ends_with("(direct) by name"));

    bob.type_line("/to nowhere text");
    bob.wait_line("a usage hint", |l| l.starts_with("no member is called \"nowhere\""));

    eve.type_line("/quit");
    assert!(eve.wait_exit().success(), "eve's /quit exits 0");
    // /quit is a graceful leave: the others hear "left", not "closed".
    bob.wait_line("eve left", |l| l == "* eve left (left)");
    bob.type_line("/quit");
    assert!(bob.wait_exit().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wrong_password_is_one_error_line_and_a_failing_exit() {
    let (_auth, target, dir) = start_auth("pyile-cli-wrong", "right");

    let mut mallory = join(&target, "mallory", "wrong", "127.0.9.3");
    let status = mallory.wait_exit();
    assert!(!status.success(), "a refused join exits non-zero");
    let stderr = stderr_of(&mut mallory);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line, got {stderr:?}");
    assert!(errors[0].contains("cannot join"), "{stderr:?}");

    // No password at all: a clear line too, before any connection.
    let mut nobody = Proc::spawn(Command::new(BIN).args(["join", "--target", &target]).env_remove("PYILE_PASSWORD"));
    assert!(!nobody.wait_exit().success());
    let stderr = stderr_of(&mut nobody);
    assert!(stderr.contains("error: no password"), "{stderr:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn auth_flags_take_the_scenario_units() {
    // The distribution budget is a byte rate like the scenarios', durations may be compound.
    for budget in ["16MiB/s", "unbounded"] {
        let mut auth = Proc::spawn(Command::new(BIN).env("PYILE_PASSWORD", "pw").args([
            "auth",
            "--listen",
            "127.0.0.1:0",
            "--distribution-budget",
            budget,
            "--heartbeat-interval",
            "1s500ms",
        ]));
        auth.wait_line("listening", |l| l.starts_with("listening "));
    }
    // A bare number is refused as a usage error that says how to write it.
    for (flag, value, want) in [
        ("--distribution-budget", "64", "missing unit"),
        ("--distribution-budget", "0MiB/s", "write \"unbounded\""),
        ("--heartbeat-interval", "2", "missing unit"),
        ("--v1-pacing", "0.5us", "finer than one microsecond"),
    ] {
        let mut auth = Proc::spawn(Command::new(BIN).env("PYILE_PASSWORD", "pw").args(["auth", flag, value]));
        let status = auth.wait_exit();
        assert_eq!(status.code(), Some(2), "{flag} {value}");
        let stderr = stderr_of(&mut auth);
        assert!(stderr.contains(want) && stderr.contains("write e.g."), "{flag} {value}: {stderr:?}");
    }
}

#[test]
fn an_unspecified_listen_address_without_advertise_is_one_error_line() {
    let mut auth = Proc::spawn(Command::new(BIN).env("PYILE_PASSWORD", "pw").args(["auth", "--listen", "0.0.0.0:0"]));
    assert!(!auth.wait_exit().success(), "started on 0.0.0.0 without --advertise");
    let stderr = stderr_of(&mut auth);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr:?}");
    assert!(errors[0].contains("--advertise"), "{stderr:?}");
    // With it, the authenticator lists the advertised address as its own.
    let mut auth = Proc::spawn(Command::new(BIN).env("PYILE_PASSWORD", "pw").args([
        "auth",
        "--listen",
        "0.0.0.0:0",
        "--advertise",
        "127.0.0.1",
    ]));
    let line = auth.wait_line("listening", |l| l.starts_with("listening "));
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
}

#[test]
fn a_joiner_that_loses_its_authenticator_exits_at_once_with_one_error_line() {
    let (mut auth, target, dir) = start_auth("pyile-cli-lost", "pw");
    let mut bob = join(&target, "bob", "pw", "127.0.9.4");
    bob.wait_line("joined", |l| l.starts_with("joined "));
    // Its stdin stays open and silent: nobody presses Enter.
    let _ = auth.child.kill();
    let _ = auth.child.wait();
    let status = bob.wait_exit();
    assert!(!status.success(), "a joiner that lost its authenticator exits non-zero");
    let stderr = stderr_of(&mut bob);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors, ["error: disconnected from the authenticator"], "{stderr:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_joiner_prints_who_joined_and_left() {
    let (_auth, target, dir) = start_auth("pyile-cli-who", "pw");
    let mut bob = join(&target, "bob", "pw", "127.0.9.5");
    bob.wait_line("joined", |l| l.starts_with("joined "));
    let mut eve = join(&target, "eve", "pw", "127.0.9.6");
    eve.wait_line("joined", |l| l.starts_with("joined "));
    let line = bob.wait_line("eve joined", |l| l.starts_with("* "));
    assert_eq!(line, "* eve joined");
    eve.type_line("/quit");
    assert!(eve.wait_exit().success());
    let line = bob.wait_line("eve left", |l| l.starts_with("* "));
    assert_eq!(line, "* eve left (left)");
    // A crash (the process killed) is announced as such.
    let mut zoe = join(&target, "zoe", "pw", "127.0.9.6");
    zoe.wait_line("joined", |l| l.starts_with("joined "));
    assert_eq!(bob.wait_line("zoe joined", |l| l.starts_with("* ")), "* zoe joined");
    let _ = zoe.child.kill();
    assert_eq!(bob.wait_line("zoe left", |l| l.starts_with("* ")), "* zoe left (closed)");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_taken_alias_is_one_error_line_and_a_failing_exit() {
    let (_auth, target, dir) = start_auth("pyile-cli-alias", "pw");
    let mut bob = join(&target, "bob", "pw", "127.0.9.9");
    bob.wait_line("joined", |l| l.starts_with("joined "));
    let mut other = join(&target, "bob", "pw", "127.0.9.10");
    assert!(!other.wait_exit().success(), "a refused alias exits non-zero");
    let stderr = stderr_of(&mut other);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line, got {stderr:?}");
    assert!(errors[0].contains("alias \"bob\" is taken"), "{stderr:?}");
    // Once bob leaves, the name is free.
    bob.type_line("/quit");
    assert!(bob.wait_exit().success());
    let mut again = join(&target, "bob", "pw", "127.0.9.10");
    again.wait_line("joined", |l| l.starts_with("joined "));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_authenticator_event_is_logged_once_and_host_names_resolve() {
    let (mut auth, target, dir) = start_auth("pyile-cli-once", "pw");
    let port = target.rsplit(':').next().unwrap();
    // A wrong password, then a join by host name.
    let mut mallory = join(&target, "mallory", "wrong", "127.0.9.7");
    assert!(!mallory.wait_exit().success());
    let mut bob = Proc::spawn(
        Command::new(BIN)
            .args(["join", "--target", &format!("localhost:{port}"), "--alias", "bob", "--local-ip", "127.0.0.1"])
            .env("PYILE_PASSWORD", "pw"),
    );
    bob.wait_line("joined by host name", |l| l.starts_with("joined "));
    bob.type_line("/quit");
    assert!(bob.wait_exit().success());
    let _ = auth.child.kill();
    let _ = auth.child.wait();
    let log = stderr_of(&mut auth);
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("wrong password"), 1, "{log}");
    assert_eq!(count("member joined"), 1, "{log}");
    assert_eq!(count("member removed"), 1, "{log}");
    assert!(!log.contains("Some("), "raw Option in the log: {log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dead_target_is_one_error_line_naming_the_os_error_once() {
    // A port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut bob = join(&format!("127.0.0.1:{port}"), "bob", "pw", "127.0.9.8");
    assert!(!bob.wait_exit().success());
    let stderr = stderr_of(&mut bob);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr:?}");
    assert_eq!(errors[0].matches("refused").count(), 1, "the OS error repeated: {stderr:?}");
}

/// Stopped (SIGTERM, as scripts stop it), `pyile auth` prints what it distributed: a line
/// `scripts/bench-auth.sh` divides the CPU by.
#[test]
fn a_stopped_authenticator_prints_what_it_distributed() {
    let (mut auth, target, dir) = start_auth("pyile-cli-dist", "pw");
    let mut bob = join(&target, "bob", "pw", "127.0.9.5");
    bob.wait_line("joined", |l| l.starts_with("joined "));
    let mut eve = join(&target, "eve", "pw", "127.0.9.6");
    eve.wait_line("joined", |l| l.starts_with("joined "));
    // Bob hears of eve through a delta.
    bob.wait_line("eve joined", |l| l == "* eve joined");
    let killed = Command::new("kill").args(["-TERM", &auth.child.id().to_string()]).status().expect("run kill");
    assert!(killed.success());
    let line = auth.wait_line("distributed", |l| l.starts_with("distributed "));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name}= in {line:?}"))
            .parse()
            .unwrap()
    };
    assert!(field("deltas") >= 1 && field("writes") >= 1, "{line}");
    assert!(auth.wait_exit().success(), "a stopped authenticator exits 0");
    let _ = std::fs::remove_dir_all(&dir);
}
