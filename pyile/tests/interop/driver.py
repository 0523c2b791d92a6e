#!/usr/bin/env python3
"""Run ONE reference pyile-protocol 0.1.1 peer, controlled with JSON lines.

    driver.py auth --ip 127.0.0.X --port 4702 --password PW [--attempts 3] [--alias A]
    driver.py join --ip 127.0.0.X [--port 0] --target IP:PORT --password PW [--alias A]

Common options: --max-seconds S (default 120), --no-bind-source, --no-stdin,
--idle-sleep-ms MS (auth only).  See README.md beside this file for the line formats.

stdout: one JSON object per line, each with "event" and "t" (seconds since start):
  {"event":"ready", ...}                        exactly once, first (unless "fatal")
  {"event":"peers","peers":[[ip,port],...]}     member list changed (or {"cmd":"peers"})
  {"event":"message","message":{...}}           a message received from another member
  {"event":"sent","message":{...}}              a message the Messenger recorded as sent by us
  {"event":"log","state":"INFO|WARNING|ERROR|THREAD-EXCEPTION","message":str}
  {"event":"result","cmd":...,"ok":bool,...}    after each stdin command completed
  {"event":"error","message":str}               a bad stdin line
  {"event":"fatal","error":str}                 could not start (exit code 3)
  {"event":"exit","reason":str,"code":int}      last line before the process exits
stdin: {"cmd":"broadcast","data":"text"} | {"cmd":"send","to":[ip,port],"data":"text"}
       | {"cmd":"peers"} | {"cmd":"leave"};  EOF = leave.
"""

import argparse
import errno
import gc
import json
import os
import queue
import socket as _socket_mod
import sys
import threading
import time
import types

T0 = time.monotonic()

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NOT_AUTHENTICATED = 10
EXIT_FATAL = 3
EXIT_MAX_SECONDS = 124

# --------------------------------------------------------------------------------------
# Output: a single writer thread, so that reference threads never block on our stdout.
# --------------------------------------------------------------------------------------

_out_q = queue.Queue()
_out_done = threading.Event()


def _json_default(o):
    if isinstance(o, (set, frozenset)):
        return list(o)
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    return str(o)


def emit(event, **fields):
    obj = {"event": event, "t": round(time.monotonic() - T0, 4)}
    obj.update(fields)
    try:
        line = json.dumps(obj, default=_json_default, separators=(",", ":"))
    except Exception as e:  # never let a strange payload kill a reference thread
        line = json.dumps({"event": "error", "t": obj["t"],
                           "message": "could not serialize %s event: %r" % (event, e)})
    _out_q.put(line)


def _writer():
    while True:
        line = _out_q.get()
        if line is None:
            _out_done.set()
            return
        try:
            print(line, flush=True)
        except (BrokenPipeError, OSError, ValueError):
            # Whoever read us is gone: do not linger.
            os._exit(EXIT_OK)


def flush_and_exit(code, reason):
    emit("exit", reason=reason, code=code)
    _out_q.put(None)
    _out_done.wait(timeout=2.0)
    try:
        sys.stdout.flush()
    except Exception:
        pass
    os._exit(code)


# --------------------------------------------------------------------------------------
# Messenger hook: the reference Messenger, plus an event for every entry, in order.
# --------------------------------------------------------------------------------------

_cmd_capture = threading.local()


def make_messenger_class(Messenger):
    class DriverMessenger(Messenger):
        def add_message(self, message):
            try:
                super().add_message(message)
            except Exception as e:
                emit("log", state="ERROR",
                     message="Messenger.add_message failed on %r: %s: %s"
                     % (message, type(e).__name__, e))
                raise
            # add_message has turned lists into tuples; json writes tuples as lists.
            msg = dict(message) if isinstance(message, dict) else message
            if isinstance(msg, dict) and msg.get("self"):
                emit("sent", message=msg)
            else:
                emit("message", message=msg)

        def _log(self, state, message):
            text = str(message)
            emit("log", state=state, message=text)
            cap = getattr(_cmd_capture, "entries", None)
            if cap is not None:
                cap.append("%s: %s" % (state, text))

        def add_info(self, message):
            super().add_info(message)
            self._log("INFO", message)

        def add_warning(self, message):
            super().add_warning(message)
            self._log("WARNING", message)

        def add_error(self, message):
            super().add_error(message)
            self._log("ERROR", message)

    return DriverMessenger


def _thread_excepthook(args):
    emit("log", state="THREAD-EXCEPTION",
         message="thread %s died: %s: %s" % (
             getattr(args.thread, "name", "?"), args.exc_type.__name__, args.exc_value))
    sys.__stderr__.write("driver: thread %s died: %r\n" % (
        getattr(args.thread, "name", "?"), args.exc_value))


# --------------------------------------------------------------------------------------
# Source binding: the reference sends messages from an unbound socket, so on loopback
# the kernel picks 127.0.0.1 as source whatever 127.0.0.X the peer lives on, and the
# receiver (which only handles connections from a member's IP) drops them.  A peer on
# its own host would send from its own IP; we emulate that by binding every not yet
# bound socket of Peer.py to our IP before connect().  Nothing else changes.
# --------------------------------------------------------------------------------------

def install_source_binding(peer_module, ip):
    class SourceBoundSocket(_socket_mod.socket):
        def connect(self, address):
            try:
                if self.getsockname()[1] == 0:
                    self.bind((ip, 0))
            except OSError:
                pass
            return super().connect(address)

    shim = types.ModuleType("socket_shim")
    shim.__dict__.update(_socket_mod.__dict__)
    shim.socket = SourceBoundSocket
    peer_module.socket = shim


# --------------------------------------------------------------------------------------
# Optional: the reference AuthPeer.auth_distribute busy-loops (one full core).  With
# --idle-sleep-ms it is replaced by the same loop plus a short sleep when idle.
# --------------------------------------------------------------------------------------

def install_idle_sleep(AuthPeer, ms):
    delay = ms / 1000.0

    def auth_distribute(self):
        while not self.disconnected:
            if self.changes_made and len(self.dist_sockets) > 0:
                for addr in self.dist_sockets:
                    distro_json = json.dumps({"distro": self.peers}).encode()
                    addr[0].send(distro_json)
                self.changes_made = False
            else:
                time.sleep(delay)

    AuthPeer.auth_distribute = auth_distribute


# --------------------------------------------------------------------------------------

def parse_addr(text):
    host, _, port = text.rpartition(":")
    if not host:
        raise argparse.ArgumentTypeError("expected IP:PORT, got %r" % text)
    return (host, int(port))


def construct_with_retry(factory, tries=20):
    """The reference binds random fixed-range ports (49000-51000): retry on EADDRINUSE."""
    last = None
    for i in range(tries):
        try:
            return factory()
        except OSError as e:
            if e.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                raise
            last = e
            emit("log", state="DRIVER", message="bind failed (%s), retry %d" % (e, i + 1))
            gc.collect()  # close the sockets of the half-built peer
            time.sleep(0.05 + 0.05 * i)
    raise last


def is_listening(sock):
    try:
        return bool(sock.getsockopt(_socket_mod.SOL_SOCKET, _socket_mod.SO_ACCEPTCONN))
    except OSError:
        return False


def addr_list(seq):
    out = []
    for a in list(seq):
        try:
            out.append([a[0], a[1]])
        except Exception:
            out.append(a)
    return out


def main():
    ap = argparse.ArgumentParser(description="JSON-lines driver for one pyile-protocol 0.1.1 peer")
    ap.add_argument("mode", choices=["auth", "join"])
    ap.add_argument("--ip", required=True, help="this peer's IP (give each peer its own 127.0.0.X)")
    ap.add_argument("--port", type=int, default=None,
                    help="auth: auth port (default 4702); join: local port of the auth "
                         "connection (default 0 = ephemeral)")
    ap.add_argument("--target", type=parse_addr, help="join: the authenticator's IP:PORT")
    ap.add_argument("--password", required=True)
    ap.add_argument("--attempts", type=int, default=3, help="auth: password_attempts")
    ap.add_argument("--alias", default=None)
    ap.add_argument("--max-seconds", type=float, default=120.0,
                    help="exit (code 124) after this long whatever happens")
    ap.add_argument("--poll-ms", type=float, default=100.0)
    ap.add_argument("--no-bind-source", action="store_true",
                    help="send messages from an unbound socket, as the reference does "
                         "(on loopback they then come from 127.0.0.1)")
    ap.add_argument("--idle-sleep-ms", type=float, default=0.0,
                    help="auth: sleep this long in the distribution loop when idle "
                         "(0 = the reference's busy loop)")
    ap.add_argument("--no-stdin", action="store_true",
                    help="do not read commands; run until --max-seconds or a signal")
    args = ap.parse_args()
    if args.mode == "join" and args.target is None:
        ap.error("join needs --target IP:PORT")
    if args.port is None:
        args.port = 4702 if args.mode == "auth" else 0
    if args.alias is None:
        args.alias = "py-" + args.mode

    threading.Thread(target=_writer, name="driver-writer", daemon=True).start()
    threading.excepthook = _thread_excepthook

    # Safety bound, independent of everything else.
    def _watchdog():
        time.sleep(args.max_seconds)
        emit("log", state="DRIVER", message="max-seconds reached")
        flush_and_exit(EXIT_MAX_SECONDS, "max-seconds")
    threading.Thread(target=_watchdog, name="driver-watchdog", daemon=True).start()

    try:
        from pyile_protocol.lib.messenger.Messenger import Messenger
        import pyile_protocol.lib.peers.Peer as peer_module
        from pyile_protocol.lib.peers.AuthPeer import AuthPeer
        from pyile_protocol.lib.peers.JoinPeer import JoinPeer
    except Exception as e:
        emit("fatal", error="cannot import pyile_protocol: %s: %s" % (type(e).__name__, e))
        flush_and_exit(EXIT_FATAL, "fatal")

    if not args.no_bind_source:
        install_source_binding(peer_module, args.ip)
    if args.mode == "auth" and args.idle_sleep_ms > 0:
        install_idle_sleep(AuthPeer, args.idle_sleep_ms)

    DriverMessenger = make_messenger_class(Messenger)
    messenger = DriverMessenger()

    try:
        if args.mode == "auth":
            peer = construct_with_retry(lambda: AuthPeer(
                address=(args.ip, args.port), password_attempts=args.attempts,
                password=args.password, messenger=messenger, alias=args.alias))
        else:
            peer = construct_with_retry(lambda: JoinPeer(
                address=(args.ip, args.port), messenger=messenger, alias=args.alias))
    except Exception as e:
        emit("fatal", error="cannot construct %s peer: %s: %s" % (args.mode, type(e).__name__, e))
        flush_and_exit(EXIT_FATAL, "fatal")

    leaving = threading.Lock()

    def do_leave_and_exit(code, reason, already_left=False):
        if not leaving.acquire(blocking=False):
            # Someone else is already leaving; it will exit the process.
            time.sleep(10)
            os._exit(code)
        if already_left:
            flush_and_exit(code, reason)
        # leave() joins threads with 1 s timeouts; never let it hang us.
        t = threading.Timer(5.0, lambda: flush_and_exit(code, reason + " (leave timed out)"))
        t.daemon = True
        t.start()
        try:
            peer.leave()
        except Exception as e:
            emit("log", state="DRIVER", message="leave() raised %s: %s" % (type(e).__name__, e))
        flush_and_exit(code, reason)

    if args.mode == "auth":
        auth_thread = threading.Thread(target=peer.authenticate_peers, name="authenticate_peers",
                                       daemon=True)
        connect_thread = threading.Thread(target=peer.connect, name="connect", daemon=True)
        auth_thread.start()
        connect_thread.start()
        deadline = time.monotonic() + 10
        while not (is_listening(peer.auth_socket) and is_listening(peer.dist_socket)
                   and is_listening(peer.peer_socket)):
            if time.monotonic() > deadline:
                emit("fatal", error="sockets not listening after 10 s")
                flush_and_exit(EXIT_FATAL, "fatal")
            time.sleep(0.01)
        emit("ready", mode="auth", alias=args.alias,
             auth_address=[peer.address[0], peer.address[1]],
             peer_address=[peer.peer_address[0], peer.peer_address[1]],
             dist_address=[peer.dist_address[0], peer.dist_address[1]],
             peers=addr_list(peer.peers))
    else:
        # Listen on the peer socket before joining, so that a message sent as soon as
        # the others see us is queued, not refused (the connect thread accepts it).
        try:
            peer.peer_socket.listen()
        except OSError:
            pass
        error = None
        result = None
        try:
            result = peer.get_authenticated(args.target, args.password)
        except Exception as e:
            error = "%s: %s" % (type(e).__name__, e)
        banned = any(str(m.get("message")) == "Banned Status: True" for m in list(messenger.info))
        authenticated = bool(result) and error is None
        emit("ready", mode="join", alias=args.alias, authenticated=authenticated,
             banned=banned, error=error, target=[args.target[0], args.target[1]],
             peer_address=[peer.peer_address[0], peer.peer_address[1]],
             peers=addr_list(peer.peers))
        if not authenticated:
            do_leave_and_exit(EXIT_NOT_AUTHENTICATED, "not-authenticated")
        connect_thread = threading.Thread(target=peer.connect, name="connect", daemon=True)
        peer.threads.append(connect_thread)
        connect_thread.start()

    # Poll the member list and the disconnected flag.
    state = {"peers": None}
    state_lock = threading.Lock()

    def emit_peers(force=False):
        for _ in range(3):
            try:
                current = addr_list(peer.peers)
                break
            except RuntimeError:
                continue
        else:
            return
        with state_lock:
            if force or current != state["peers"]:
                state["peers"] = current
                emit("peers", peers=current)

    def poller():
        interval = args.poll_ms / 1000.0
        while True:
            emit_peers()
            if peer.disconnected and not leaving.locked():
                emit("log", state="DRIVER", message="peer disconnected on its own")
                do_leave_and_exit(EXIT_OK, "disconnected", already_left=True)
            time.sleep(interval)

    emit_peers(force=True)
    threading.Thread(target=poller, name="driver-poller", daemon=True).start()

    # Commands.
    def run_cmd(cmd):
        name = cmd.get("cmd")
        if name == "peers":
            emit_peers(force=True)
            emit("result", cmd="peers", ok=True)
            return
        if name == "leave":
            emit("result", cmd="leave", ok=True)
            do_leave_and_exit(EXIT_OK, "leave")
        if name not in ("broadcast", "send"):
            emit("error", message="unknown cmd %r" % (name,))
            return
        data = cmd.get("data", "")
        _cmd_capture.entries = []
        ok, error, ret = True, None, None
        try:
            if name == "broadcast":
                peer.broadcast(data)
            else:
                to = cmd.get("to")
                to = (str(to[0]), int(to[1]))
                ret = peer.send(to, data, to)
                if ret is None:
                    ok = False
        except Exception as e:
            ok, error = False, "%s: %s" % (type(e).__name__, e)
        logs = _cmd_capture.entries
        _cmd_capture.entries = None
        if any("is not responding" in m or "Cannot send" in m for m in logs):
            ok = False
        fields = {"cmd": name, "ok": ok, "error": error, "logs": logs}
        if name == "send":
            fields["to"] = cmd.get("to")
        emit("result", **fields)

    if args.no_stdin:
        while True:
            time.sleep(3600)

    while True:
        try:
            line = sys.stdin.buffer.readline().decode("utf-8", "replace")
        except Exception:
            line = ""
        if not line:
            do_leave_and_exit(EXIT_OK, "eof")
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError("not an object")
        except Exception as e:
            emit("error", message="bad command line %r: %s" % (line[:200], e))
            continue
        run_cmd(cmd)


if __name__ == "__main__":
    try:
        main()
    except SystemExit as e:
        # argparse errors (code 2) and the like.
        code = e.code if isinstance(e.code, int) else EXIT_ERROR
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)
    except BaseException as e:
        emit("fatal", error="driver crashed: %s: %s" % (type(e).__name__, e))
        flush_and_exit(EXIT_ERROR, "crash")
