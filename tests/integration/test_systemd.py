#!/usr/bin/env python3
"""systemd's notification protocol, as a Type=notify unit with WatchdogSec=
sees it (services/README.md, "Running under systemd"), without systemd.

usage: test_systemd.py EVBUS RESERVATION BOOKING [BRIDGE]

Each program runs under a NOTIFY_SOCKET of its own (an AF_UNIX datagram
socket this test binds, as systemd does) with WATCHDOG_USEC=200000 and
WATCHDOG_PID its own pid (set by `sh -c 'WATCHDOG_PID=$$ exec "$@"'`, the
pid the exec keeps). For the reservation and booking services, `evbus serve`,
`evbus mirror` and evbus-bridge (against a JetStream nats-server of its own,
when BRIDGE is given and nats-server is installed), in that order:
  - the first message is READY=1, and once it is seen `evbus status` on the
    program's command socket answers (the sockets were bound, the store
    open, before READY=1);
  - STATUS= lines name the head ("head 1"), and the feeds of those that
    follow ("reservation/show live") once they have something to show;
  - WATCHDOG=1 comes again and again (at least every 0.2 s, tested loosely:
    5 in the run, and no gap over a second);
  - after SIGTERM: STOPPING=1, then exit 0; nothing is READY again.
And `evbus serve` with WATCHDOG_PID naming another process says READY=1 and
never WATCHDOG=1 (sd_watchdog_enabled: the interval is not ours).
The programs run side by side: the whole test takes a few seconds.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evbtest  # noqa: E402
from evbtest import check, wait_for  # noqa: E402

EVBUS, RES, BK = sys.argv[1:4]
BRIDGE = sys.argv[4] if len(sys.argv) > 4 else None
log = evbtest.logger("systemd")
WD_USEC = 200000
WRAP = ["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh"]


class Notified:
    """A program under its own NOTIFY_SOCKET: every datagram it sends, as
    (monotonic time, {variable: value}), in order."""

    def __init__(self, sc, name, argv, wd_pid=None):
        self.name = name
        self.path = os.path.join(sc.ipcdir, f"n-{name}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.msgs = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        env = {"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(WD_USEC)}
        if wd_pid is not None:
            env["WATCHDOG_PID"] = str(wd_pid)
            full = argv
        else:
            full = WRAP + argv
        self.logf = os.path.join(sc.dir, f"{name}.log")
        self.p = subprocess.Popen(full, stdout=open(self.logf, "w"), stderr=subprocess.STDOUT,
                                  env={**os.environ, **env})
        sc.procs.append(self)

    def _read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            kv = {}
            for line in data.decode(errors="replace").split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    kv[k] = v
            with self.lock:
                self.msgs.append((time.monotonic(), kv))

    def seen(self):
        with self.lock:
            return list(self.msgs)

    def values(self, key):
        return [kv[key] for _, kv in self.seen() if key in kv]

    def wait(self, what, fn, timeout=15):
        def poll():
            if self.p.poll() is not None:
                raise evbtest.Fail(f"{self.name} exited with {self.p.returncode} while "
                                   f"waiting for {what}:\n{self.output()}")
            return fn()
        return wait_for(f"{self.name}: {what}", poll, timeout)

    def wait_ready(self):
        self.wait("READY=1", lambda: self.values("READY"))
        first = self.seen()[0][1]
        check(first.get("READY") == "1", f"{self.name}: first message {first}, not READY=1")

    def wait_status(self, pattern, timeout=15):
        rx = re.compile(pattern)
        return self.wait(f"a STATUS= line matching {pattern!r} (seen {self.values('STATUS')})",
                         lambda: next((s for s in self.values("STATUS") if rx.search(s)), None),
                         timeout)

    def output(self):
        try:
            with open(self.logf) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        """SIGTERM; STOPPING=1, exit 0, and the watchdog fed all along."""
        n_ready = len(self.values("READY"))
        self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(20)
        except subprocess.TimeoutExpired:
            raise evbtest.Fail(f"{self.name}: still running 20 s after SIGTERM")
        check(rc == 0, f"{self.name}: exit {rc} after SIGTERM:\n{self.output()}")
        time.sleep(0.05)  # the reader thread takes the last datagram
        msgs = self.seen()
        stops = [i for i, (_, kv) in enumerate(msgs) if kv.get("STOPPING") == "1"]
        check(stops, f"{self.name}: no STOPPING=1 after SIGTERM; got {[m for _, m in msgs]}")
        check(len(self.values("READY")) == n_ready == 1,
              f"{self.name}: READY=1 sent {len(self.values('READY'))} times")
        dogs = [t for t, kv in msgs if kv.get("WATCHDOG") == "1"]
        check(len(dogs) >= 5, f"{self.name}: only {len(dogs)} WATCHDOG=1 in the run")
        gaps = [b - a for a, b in zip(dogs, dogs[1:])]
        check(max(gaps) < 1.0, f"{self.name}: the watchdog went {max(gaps):.2f} s unfed "
              f"(interval {WD_USEC / 1e6} s)")
        log(f"{self.name}: READY, {len(self.values('STATUS'))} STATUS lines, {len(dogs)} "
            f"WATCHDOG=1 (largest gap {max(gaps) * 1000:.0f} ms), STOPPING, exit 0; "
            f"statuses {self.values('STATUS')}")

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.sock.close()


def status_ok(ep):
    r = evbtest.run([EVBUS, "status", ep], timeout=20)
    check(r.returncode == 0, f"evbus status {ep} right after READY=1: exit {r.returncode}\n"
          f"{r.stdout}{r.stderr}")


def ready_then_status(n, cmd_ep, store=None):
    n.wait_ready()
    if store is not None:
        check(os.path.isdir(store), f"{n.name}: READY=1 before its store {store} exists")
    status_ok(cmd_ep)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    sc = evbtest.DaemonScratch("systemd-", "evb-sd-")
    ok = False
    nats = None
    try:
        ep = sc.ep
        st = sc.path
        # The two services, following each other.
        res = Notified(sc, "reservation", [
            RES, "--store", st("res"), "--pub", ep("res.pub"), "--catchup", ep("res.cu"),
            "--cmd", ep("res.cmd"), "--follow", ep("bk.pub") + "," + ep("bk.cu")])
        bk = Notified(sc, "booking", [
            BK, "--store", st("bk"), "--pub", ep("bk.pub"), "--catchup", ep("bk.cu"),
            "--cmd", ep("bk.cmd"), "--follow", ep("res.pub") + "," + ep("res.cu")])
        # A served log, a mirror of it, and the bridge exporting it.
        r = evbtest.run([EVBUS, "append", "--store", st("log"), "--create", "--service",
                         "demo"], input='{"stream": "show-1", "type": "Made"}\n')
        evbtest.expect(r, 0, "append --create")
        serve = Notified(sc, "serve", [
            EVBUS, "serve", "--store", st("log"), "--pub", ep("s.pub"), "--catchup",
            ep("s.cu"), "--cmd", ep("s.cmd")])
        mirror = Notified(sc, "mirror", [
            EVBUS, "mirror", "--follow", ep("s.pub") + "," + ep("s.cu"), "--store",
            st("mirror"), "--cmd", ep("m.cmd")])
        # The watchdog is another process's: READY=1, never WATCHDOG=1.
        other = Notified(sc, "serve-other-pid", [
            EVBUS, "serve", "--store", st("log2"), "--create", "--service", "other",
            "--pub", ep("o.pub"), "--catchup", ep("o.cu"), "--cmd", ep("o.cmd")],
            wd_pid=os.getpid())
        bridge = None
        if BRIDGE and shutil.which("nats-server"):
            port = free_port()
            os.makedirs(st("js"))
            nats = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port),
                                     "-sd", st("js")], stdout=open(st("nats.log"), "w"),
                                    stderr=subprocess.STDOUT)
            bridge = Notified(sc, "bridge", [
                BRIDGE, "--follow", ep("s.pub") + "," + ep("s.cu"), "--nats",
                f"nats://127.0.0.1:{port}", "--cmd", ep("b.cmd")])
        elif BRIDGE:
            log("nats-server not installed: bridge case left out (tools/setup.sh --test)")

        ready_then_status(res, ep("res.cmd"), st("res"))
        ready_then_status(bk, ep("bk.cmd"), st("bk"))
        ready_then_status(serve, ep("s.cmd"))
        ready_then_status(mirror, ep("m.cmd"), st("mirror"))
        ready_then_status(other, ep("o.cmd"))
        if bridge:
            ready_then_status(bridge, ep("b.cmd"))

        # What changes shows within a second or so.
        r = evbtest.run([EVBUS, "call", ep("res.cmd"), "create_show", "show=s1",
                         "capacity=10"])
        evbtest.expect(r, 0, "create_show")
        res.wait_status(r"^head 1; feeds: booking/booking live; views: ")
        bk.wait_status(r"^head 0; feeds: reservation/show live")
        serve.wait_status(r"^head 1; published 1$")
        mirror.wait_status(r"^head 1; feeds: demo/show live$")
        if bridge:
            bridge.wait_status(r"^nats connected; links: demo exporting 1/1$")
        r = evbtest.run([EVBUS, "append", "--to", ep("s.cmd")],
                        input='{"stream": "show-2", "type": "Made"}\n')
        evbtest.expect(r, 0, "append --to")
        serve.wait_status(r"^head 2; published 2$")
        mirror.wait_status(r"^head 2; feeds: demo/show live$")
        if bridge:
            bridge.wait_status(r"^nats connected; links: demo exporting 2/2$")
        # Enough turns of the watchdog to tell a rhythm.
        time.sleep(1.2)
        check(not other.values("WATCHDOG"),
              "serve-other-pid: WATCHDOG=1 though WATCHDOG_PID is another process")
        check(other.values("STATUS")[0].startswith("head 0"),
              f"serve-other-pid: status {other.values('STATUS')}")

        for n in [bridge, mirror, bk, res, serve] if bridge else [mirror, bk, res, serve]:
            n.stop()
        other.p.send_signal(signal.SIGTERM)
        check(other.p.wait(20) == 0, "serve-other-pid: exit after SIGTERM")
        check(other.values("STOPPING") == ["1"], "serve-other-pid: no STOPPING=1")
        ok = True
        log("OK")
        return 0
    finally:
        for p in sc.procs:
            p.close()
        sc.procs = []
        if nats is not None:
            nats.terminate()
            nats.wait(10)
        sc.cleanup(ok, log)


if __name__ == "__main__":
    evbtest.run_main("systemd", main)
