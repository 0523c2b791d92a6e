#!/usr/bin/env python3
"""Python <-> Python smoke test of driver.py (no Rust needed).

    .venv/bin/python pyile/tests/interop/selftest.py [--runs N] [--joiners K] [--no-bind-source]

Starts a reference AuthPeer on 127.0.0.2:<port> and K reference JoinPeers on 127.0.0.3,
127.0.0.4, ...; checks that every peer sees every member, that a broadcast from the
first joiner and a direct message from the authenticator arrive, and that a leave
shrinks the lists.  Prints timings; exit code 0 when every run passed.
"""

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "driver.py")


class Proc:
    def __init__(self, name, argv):
        self.name = name
        self.t0 = time.monotonic()
        self.p = subprocess.Popen([sys.executable, DRIVER] + argv, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)
        self.q = queue.Queue()
        self.events = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            ev = json.loads(line)
            ev["_at"] = time.monotonic()
            self.events.append(ev)
            self.q.put(ev)
        self.q.put(None)

    def wait_for(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: timed out waiting for %s" % (self.name, what))
            try:
                ev = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if ev is None:
                raise AssertionError("%s: exited while waiting for %s; last events: %s"
                                     % (self.name, what, self.events[-5:]))
            if pred(ev):
                return ev

    def cmd(self, **c):
        self.p.stdin.write(json.dumps(c) + "\n")
        self.p.stdin.flush()

    def close(self):
        try:
            self.cmd(cmd="leave")
        except Exception:
            pass
        try:
            self.p.wait(timeout=8)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        return self.p.returncode


def peers_are(expected):
    exp = sorted(map(tuple, expected))
    return lambda ev: ev["event"] == "peers" and sorted(map(tuple, ev["peers"])) == exp


def one_run(args, run):
    extra = ["--max-seconds", "60"] + (["--no-bind-source"] if args.no_bind_source else [])
    procs = []
    timings = {}
    try:
        t = time.monotonic()
        auth = Proc("auth", ["auth", "--ip", "127.0.0.2", "--port", str(args.port),
                             "--password", "pw", "--attempts", "3", "--alias", "admin"]
                    + extra + (["--idle-sleep-ms", "1"] if args.idle_sleep else []))
        procs.append(auth)
        ready = auth.wait_for(lambda e: e["event"] == "ready", 10, "auth ready")
        timings["auth_ready"] = time.monotonic() - t
        members = [ready["peer_address"]]
        joiners = []
        batch = args.joiners if args.concurrent else 1
        for first in range(0, args.joiners, batch):
            t = time.monotonic()
            started = []
            for i in range(first, min(first + batch, args.joiners)):
                ip = "127.0.0.%d" % (3 + i)
                j = Proc("join%d" % i, ["join", "--ip", ip, "--target",
                                        "127.0.0.2:%d" % args.port, "--password", "pw",
                                        "--alias", "bob%d" % i] + extra)
                procs.append(j)
                started.append((i, j))
            for i, j in started:
                r = j.wait_for(lambda e: e["event"] == "ready", 15, "join ready")
                timings["join%d" % i] = time.monotonic() - t
                if not r["authenticated"]:
                    raise AssertionError("join%d not authenticated: %s" % (i, r))
                members.append(r["peer_address"])
                joiners.append(j)
        t = time.monotonic()
        for p in procs:
            p.wait_for(peers_are(members), 10, "full list %s" % members)
        timings["all_lists"] = time.monotonic() - t

        # Broadcast from the first joiner.
        t = time.monotonic()
        sender = joiners[0]
        sender.cmd(cmd="broadcast", data="hello from join0 run %d" % run)
        res = sender.wait_for(lambda e: e["event"] == "result", 15, "broadcast result")
        if not res["ok"]:
            raise AssertionError("broadcast failed: %s" % res)
        for p in procs:
            if p is sender:
                continue
            ev = p.wait_for(lambda e: e["event"] == "message", 10, "broadcast message")
            m = ev["message"]
            assert m["data"] == "hello from join0 run %d" % run, m
            assert m["to"] == "Broadcast", m
            assert m["from"] == members[1], m
            assert m["alias"] == "bob0", m
        timings["broadcast"] = time.monotonic() - t

        # Direct message from the authenticator to the last joiner.
        t = time.monotonic()
        target = joiners[-1]
        auth.cmd(cmd="send", to=members[-1], data="direct")
        res = auth.wait_for(lambda e: e["event"] == "result", 10, "send result")
        if not res["ok"]:
            raise AssertionError("send failed: %s" % res)
        ev = target.wait_for(lambda e: e["event"] == "message", 10, "direct message")
        assert ev["message"]["to"] == members[-1] and ev["message"]["from"] == members[0], ev
        timings["direct"] = time.monotonic() - t

        # The last joiner leaves: everybody else sees the list shrink.
        t = time.monotonic()
        rc = target.close()
        assert rc == 0, rc
        procs.remove(target)
        for p in procs:
            p.wait_for(peers_are(members[:-1]), 15, "list without the leaver")
        timings["leave_seen"] = time.monotonic() - t
        return timings
    finally:
        for p in reversed(procs):
            p.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--joiners", type=int, default=2)
    ap.add_argument("--port", type=int, default=4702)
    ap.add_argument("--no-bind-source", action="store_true")
    ap.add_argument("--idle-sleep", action="store_true",
                    help="pass --idle-sleep-ms 1 to the authenticator")
    ap.add_argument("--concurrent", action="store_true",
                    help="start all joiners at once instead of one after the other")
    args = ap.parse_args()
    passed = failed = 0
    for run in range(args.runs):
        try:
            timings = one_run(args, run)
            passed += 1
            print("run %d ok: %s" % (run, " ".join("%s=%.2fs" % kv for kv in timings.items())),
                  flush=True)
        except Exception as e:
            failed += 1
            print("run %d FAILED: %s" % (run, e), flush=True)
    print("selftest: %d passed, %d failed" % (passed, failed))
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
