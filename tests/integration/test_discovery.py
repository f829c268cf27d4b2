#!/usr/bin/env python3
"""Discovery on a virtual LAN: services found by name through UDP beacons.

usage: test_discovery.py EVBUS RESERVATION BOOKING

The LAN: four network namespaces made for this run (a switch namespace with a
bridge, and hosts h1, h2, h3, each with eth0 = a veth port of the bridge,
10.77.0.N/24 with a broadcast address, and lo up). Addresses exist only
inside the namespaces; everything is deleted at the end.

Checks, in order:
  peers      booking (h1, explicit addresses) and reservation (h2, bound to
             tcp://*) announce; `evbus peers` on h3 lists both, with the
             advertised endpoints (the interface's address replaces *), the
             interface and the source address of their beacons;
             `evbus call @reservation` and `evbus sniff --service` resolve names.
  move       clients book through the booking service while the reservation
             service (which booking follows with --follow-service reservation,
             and which follows booking the same way) is stopped on h2 and
             started again on h3 with the same store (it moved: new address).
             Booking switches to the new endpoints by itself. Afterwards the
             invariants hold (tools/scripts/booking_check.py), every booking is final,
             booking's feed of the reservation log is live at the new address
             with lag 0, and no reservation event caused two booking events
             (nothing applied twice).
  oversized  a service whose beacon would exceed 255 bytes refuses to start
             (exit 2) with a message naming the size and the endpoint.

Without the rights to create namespaces it skips (exit 77) saying why; with
CI=true and running as root, a skip is a failure.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "scripts"))
import booking_check  # noqa: E402

SANITIZED = os.environ.get("EVB_SANITIZED") == "1"
SCALE = max(1, int(os.environ.get("EVB_TEST_SCALE", "1")))
PREFIX = "evbd%d" % os.getpid()
NET = "10.77.0."
PORT = 5790  # beacons: not the default, so a real LAN's beacons stay out


GARBAGE = r"""
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
to = (sys.argv[1], int(sys.argv[2]))
while True:
    for d in (b"EVB\x01" + bytes(5), b"EVB\x07hello", b"ZRE\x01" + bytes(20),
              b"EVB\x01" + os.urandom(40), b"EVB", b"\xff" * 255):
        s.sendto(d, to)
    time.sleep(0.1)
"""


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def sh(*cmd, check=True):
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), p.returncode,
                                                p.stderr.strip()))
    return p


class Lan:
    """A bridge in its own namespace and hosts plugged into it."""

    def __init__(self, hosts):
        self.sw = PREFIX + "-sw"
        self.hosts = {}
        self.made = []
        sh("ip", "netns", "add", self.sw)
        self.made.append(self.sw)
        self.ns(self.sw, "ip", "link", "add", "br0", "type", "bridge")
        self.ns(self.sw, "ip", "link", "set", "br0", "up")
        for i, h in enumerate(hosts, start=1):
            name = "%s-%s" % (PREFIX, h)
            sh("ip", "netns", "add", name)
            self.made.append(name)
            port = "p%d" % i
            self.ns(self.sw, "ip", "link", "add", port, "type", "veth", "peer", "name",
                    "eth0", "netns", name)
            self.ns(self.sw, "ip", "link", "set", port, "master", "br0", "up")
            self.ns(name, "ip", "addr", "add", "%s%d/24" % (NET, i), "brd", "+", "dev",
                    "eth0")
            self.ns(name, "ip", "link", "set", "eth0", "up")
            self.ns(name, "ip", "link", "set", "lo", "up")
            self.hosts[h] = (name, NET + str(i))

    @staticmethod
    def ns(name, *cmd):
        return sh("ip", "netns", "exec", name, *cmd)

    def prefix(self, host):
        return ["ip", "netns", "exec", self.hosts[host][0]]

    def addr(self, host):
        return self.hosts[host][1]

    def close(self):
        for n in reversed(self.made):
            sh("ip", "netns", "del", n, check=False)


def make_lan():
    """The LAN, or exit 77 (a failure under CI as root) when it cannot be made."""
    why = None
    if os.geteuid() != 0:
        why = "not root: network namespaces need CAP_SYS_ADMIN"
    elif shutil.which("ip") is None:
        why = "no `ip` command (iproute2)"
    lan = None
    if why is None:
        try:
            lan = Lan(["h1", "h2", "h3"])
        except (RuntimeError, OSError) as e:
            why = "cannot make the namespaces: %s" % e
    if why is None:
        return lan
    if lan is not None:
        lan.close()
    if os.environ.get("CI") == "true" and os.geteuid() == 0:
        fail("discovery test cannot run under CI as root: " + why)
    print("SKIP: discovery test: " + why, file=sys.stderr)
    sys.exit(77)


class World:
    def __init__(self, lan, evbus, res_bin, bk_bin):
        base = os.environ.get("EVB_TEST_TMP") or tempfile.gettempdir()
        self.dir = tempfile.mkdtemp(prefix="disc-", dir=base)
        self.lan, self.evbus, self.res_bin, self.bk_bin = lan, evbus, res_bin, bk_bin
        self.procs = {}
        # `evbus call` as seen from h1 (booking_check runs it as one program).
        self.evbus_h1 = os.path.join(self.dir, "evbus-h1")
        with open(self.evbus_h1, "w") as f:
            f.write("#!/bin/sh\nexec %s %s \"$@\"\n" % (" ".join(lan.prefix("h1")), evbus))
        os.chmod(self.evbus_h1, 0o755)
        self.caller = booking_check.Caller(self.evbus_h1, timeout_ms=5000)
        self.bk_cmd = "tcp://%s:6103" % lan.addr("h1")

    def beacon_args(self):
        return ["--beacon-iface", "eth0", "--beacon-port", str(PORT), "--announce"]

    def start_res(self, host):
        args = [self.res_bin, "--store", self.dir + "/res", "--pub", "tcp://*:6001",
                "--catchup", "tcp://*:6002", "--cmd", "tcp://*:6003",
                "--follow-service", "booking", *self.beacon_args()]
        self.start("reservation", host, args, "tcp://%s:6003" % self.lan.addr(host))
        self.res_cmd = "tcp://%s:6003" % self.lan.addr(host)

    def start_bk(self):
        a = self.lan.addr("h1")
        args = [self.bk_bin, "--store", self.dir + "/bk", "--pub", "tcp://%s:6101" % a,
                "--catchup", "tcp://%s:6102" % a, "--cmd", self.bk_cmd,
                "--follow-service", "reservation", "--hold-timeout", "30s",
                *self.beacon_args()]
        self.start("booking", "h1", args, self.bk_cmd)

    def start(self, name, host, args, cmd_ep):
        log = open("%s/%s.log" % (self.dir, name), "a")
        log.write("---- start on %s: %s\n" % (host, " ".join(args)))
        log.flush()
        p = subprocess.Popen(self.lan.prefix(host) + args, stdout=log, stderr=log)
        self.procs[name] = p
        deadline = time.monotonic() + 30
        while True:
            rc, _ = self.caller.call(cmd_ep, "status")
            if rc == 0:
                return
            if p.poll() is not None:
                fail("%s exited with %d at start (log %s/%s.log)"
                     % (name, p.returncode, self.dir, name))
            if time.monotonic() > deadline:
                fail("%s does not answer status at %s" % (name, cmd_ep))
            time.sleep(0.1)

    def stop(self, name):
        p = self.procs.pop(name)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            fail("%s did not stop on SIGTERM" % name)
        if p.returncode != 0:
            fail("%s stopped with exit code %d" % (name, p.returncode))

    def run(self, host, *args, timeout=60):
        return subprocess.run(self.lan.prefix(host) + [self.evbus, *args],
                              capture_output=True, text=True, timeout=timeout)

    def close(self, keep):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        if keep:
            print("logs kept in " + self.dir, file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def peers(w, host):
    p = w.run(host, "peers", "--iface", "eth0", "--port", str(PORT), "--json",
              "--timeout", "3s")
    if p.returncode != 0:
        fail("evbus peers on %s: exit %d: %s" % (host, p.returncode, p.stderr))
    return json.loads(p.stdout)


def case_peers(w):
    lan = w.lan
    w.start_bk()
    w.start_res("h2")
    out = peers(w, "h3")
    by = {s["service"]: s for s in out["services"]}
    if set(by) != {"booking", "reservation"}:
        fail("peers on h3 heard %s, not booking and reservation" % sorted(by))
    r, b = by["reservation"], by["booking"]
    want = {"pub": "tcp://%s:6001", "catchup": "tcp://%s:6002", "cmd": "tcp://%s:6003"}
    for k, v in want.items():
        if r[k] != v % lan.addr("h2"):
            fail("reservation advertises %s %s, want %s (bound to *: the interface's "
                 "address)" % (k, r[k], v % lan.addr("h2")))
    if r["from"] != lan.addr("h2") or b["from"] != lan.addr("h1"):
        fail("beacon sources %s / %s, want %s / %s" % (r["from"], b["from"],
                                                       lan.addr("h2"), lan.addr("h1")))
    if r["iface"] != "eth0" or out["address"] != lan.addr("h3"):
        fail("peers listened on %s (%s), want eth0 (%s)" % (r["iface"], out["address"],
                                                           lan.addr("h3")))
    if b["cmd"] != w.bk_cmd or len(r["log_id"]) != 32:
        fail("booking advertises cmd %s, log id %s" % (b["cmd"], r["log_id"]))
    if out["beacons"]["bad"] != 0:
        fail("bad beacons on a clean LAN: %s" % out["beacons"])
    # Garbage on the beacon port (truncated, other version, foreign, random):
    # counted and ignored by the listeners, the services keep going.
    garbage = subprocess.Popen(lan.prefix("h3") + [sys.executable, "-c", GARBAGE,
                                                   NET + "255", str(PORT)])
    try:
        out = peers(w, "h2")
    finally:
        garbage.kill()
        garbage.wait()
    bc = out["beacons"]
    if bc["bad"] == 0 or bc["version"] == 0 or bc["foreign"] == 0:
        fail("garbage beacons not counted: %s" % bc)
    if {s["service"] for s in out["services"]} != {"booking", "reservation"}:
        fail("peers on h2 amid garbage heard %s" % out["services"])
    for ep in (w.bk_cmd, "tcp://%s:6003" % lan.addr("h2")):
        rc, _ = w.caller.call(ep, "status")
        if rc != 0:
            fail("%s does not answer after the garbage beacons" % ep)
    # The text form names the same.
    p = w.run("h3", "peers", "--iface", "eth0", "--port", str(PORT), "--timeout", "2s")
    if p.returncode != 0 or "reservation" not in p.stdout or lan.addr("h2") not in p.stdout:
        fail("evbus peers (text): exit %d\n%s%s" % (p.returncode, p.stdout, p.stderr))
    # A wrong interface is named, with the ones that can beacon.
    # Only evbus's own message: CZMQ's "No broadcast interface found" line
    # (on stdout) is not printed.
    p = w.run("h3", "peers", "--iface", "nosuch0", "--port", str(PORT), "--timeout", "1s")
    if (p.returncode != 4 or "nosuch0" not in p.stderr or "eth0" not in p.stderr
            or p.stdout != "" or len(p.stderr.splitlines()) != 1):
        fail("peers --iface nosuch0: exit %d: stdout %r stderr %r"
             % (p.returncode, p.stdout, p.stderr))
    # No interface: the usage error names peers' own flag.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVBUS_BEACON")}
    p = subprocess.run(w.lan.prefix("h3") + [w.evbus, "peers", "--timeout", "1s"],
                       capture_output=True, text=True, timeout=60, env=env)
    if p.returncode != 2 or "--iface NAME" not in p.stderr or "--beacon-iface" in p.stderr:
        fail("peers without --iface: exit %d: %r" % (p.returncode, p.stderr))
    p = w.run("h3", "call", "@reservation", "status", "--beacon-port", "70000",
              "--beacon-iface", "eth0")
    if p.returncode != 2 or "--beacon-port: expected 1..65535" not in p.stderr:
        fail("call --beacon-port 70000: exit %d: %r" % (p.returncode, p.stderr))
    # Names instead of endpoints.
    p = w.run("h3", "call", "@reservation", "create_show", "show=s1", "capacity=40",
              "--beacon-iface", "eth0", "--beacon-port", str(PORT), "--json")
    if p.returncode != 0:
        fail("evbus call @reservation: exit %d: %s" % (p.returncode, p.stderr))
    p = w.run("h3", "call", "@nosuch", "status", "--beacon-iface", "eth0",
              "--beacon-port", str(PORT))
    if p.returncode != 7 or "nosuch" not in p.stderr:
        fail("evbus call @nosuch: exit %d: %s" % (p.returncode, p.stderr))
    p = w.run("h3", "sniff", "--service", "reservation", "--beacon-iface", "eth0",
              "--beacon-port", str(PORT), "--from-start", "--count", "1", "--json",
              "--timeout", "20s")
    if p.returncode != 0 or "ShowCreated" not in p.stdout:
        fail("evbus sniff --service reservation: exit %d: %s%s"
             % (p.returncode, p.stdout, p.stderr))
    print("peers: booking and reservation found by name from h3; call @NAME and "
          "sniff --service work")


def causation_dups(w):
    """Booking events caused by the same reservation event (applied twice)."""
    p = subprocess.run([w.evbus, "log", "cat", "--json", w.dir + "/bk"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        fail("evbus log cat bk: %s" % p.stderr)
    seen, dups, n = {}, [], 0
    for line in p.stdout.splitlines():
        ev = json.loads(line)
        if ev.get("type") not in ("BookingConfirmed", "BookingRejected"):
            continue
        n += 1
        c = ev.get("causation_id")
        if c in seen:
            dups.append((seen[c], ev.get("stream")))
        seen[c] = ev.get("stream")
    return n, dups


def case_move(w):
    lan = w.lan
    shows = ["m1", "m2"]
    for s in shows:
        rc, body = w.caller.call(w.res_cmd, "create_show", "show=" + s, "capacity=50")
        if rc != 0:
            fail("create_show %s: %d %s" % (s, rc, body))
    total = (40 if SANITIZED else 120) * SCALE
    stop = threading.Event()
    results = []
    lock = threading.Lock()

    def client(k):
        for i in range(k, total, 4):
            rc, body = w.caller.call(w.bk_cmd, "book", "show=" + shows[i % 2], "seats=1",
                                     "customer=c%d" % (i % 7), "booking=b%d" % i)
            with lock:
                results.append((i, rc, body))
            time.sleep(0.02)
            if stop.is_set():
                return

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    while len(results) < total // 3:
        time.sleep(0.05)
    w.stop("reservation")  # leaves h2 ...
    time.sleep(1.5)        # the fault schedule: 1.5 s with no reservation service
    w.start_res("h3")      # ... and comes back on h3 with the same log
    for t in threads:
        t.join()
    bad = [r for r in results if r[1] != 0]
    if bad:
        fail("%d book calls failed, first: %s" % (len(bad), bad[0]))
    problems, summary = booking_check.check(w.evbus_h1, w.res_cmd, w.bk_cmd, shows, 120)
    if problems:
        fail("%d invariant problems after the move (first: %s); logs in %s"
             % (len(problems), problems[0], w.dir))
    if summary["bookings"] != total:
        fail("%d bookings in the read model, %d sent" % (summary["bookings"], total))
    rc, st = w.caller.call(w.bk_cmd, "status")
    feeds = st.get("feeds", [])
    new_pub = "tcp://%s:6001" % lan.addr("h3")
    if not feeds or any(not f["publisher"].startswith(new_pub) for f in feeds):
        fail("booking's feeds %s do not follow the reservation service at %s"
             % ([f["publisher"] for f in feeds], new_pub))
    if any(f["state"] != "live" or f["lag"] != 0 for f in feeds):
        fail("booking's feeds not live at lag 0: %s" % feeds)
    rc, rst = w.caller.call(w.res_cmd, "status")
    rfeeds = rst.get("feeds", [])
    if not rfeeds or any(f["state"] != "live" or f["lag"] != 0 for f in rfeeds):
        fail("reservation's feeds of booking: %s" % rfeeds)
    res_log = rst.get("log_id")
    if any(f["log_id"] != res_log for f in feeds):
        fail("booking follows log %s, reservation's is %s" % (feeds, res_log))
    w.stop("booking")
    w.stop("reservation")
    n, dups = causation_dups(w)
    if dups:
        fail("%d reservation events applied twice by booking (first: %s)"
             % (len(dups), dups[0]))
    if n < summary["by_status"].get("confirmed", 0):
        fail("%d answers in the booking log, %d bookings confirmed" % (
            n, summary["by_status"].get("confirmed", 0)))
    print("move: %d bookings across a move h2 -> h3, %s; %d answers, none twice"
          % (total, summary["by_status"], n))


def case_oversized(w):
    long_ep = "tcp://%s.example:6003" % ("x" * 200)
    args = [w.res_bin, "--store", w.dir + "/big", "--cmd", long_ep,
            "--beacon-iface", "eth0", "--beacon-port", str(PORT), "--announce"]
    p = subprocess.run(w.lan.prefix("h1") + args, capture_output=True, text=True,
                       timeout=60)
    if p.returncode != 2 or "255" not in p.stderr or "cmd endpoint" not in p.stderr:
        fail("an oversized beacon: exit %d, stderr: %s" % (p.returncode, p.stderr))
    said = p.stderr.strip().splitlines()[0]
    # --announce without an interface is refused too (no interface is guessed).
    p = subprocess.run([w.res_bin, "--store", w.dir + "/big2", "--cmd", "ipc://x",
                        "--announce"], capture_output=True, text=True, timeout=60)
    if p.returncode != 2 or "--beacon-iface" not in p.stderr:
        fail("--announce without --beacon-iface: exit %d: %s" % (p.returncode, p.stderr))
    print("oversized: refused at start: " + said[:160] + "...")


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    evbus, res_bin, bk_bin = sys.argv[1:]
    lan = make_lan()
    w = None
    ok = False
    try:
        w = World(lan, evbus, res_bin, bk_bin)
        case_peers(w)
        case_move(w)
        case_oversized(w)
        ok = True
    finally:
        if w is not None:
            w.close(keep=not ok)
        lan.close()


if __name__ == "__main__":
    main()
