#!/usr/bin/env python3
"""evbus on a virtual LAN: three hosts made of network namespaces.

usage: lan.py CASE EVBUS RESERVATION BOOKING     (root: CAP_NET_ADMIN, CAP_SYS_ADMIN)

The LAN (names carry this process's pid, so parallel runs never collide):
  evb-PID-br   a namespace holding the bridge br0 and one veth end per host
  evb-PID-h1   10.77.0.1/24 on eth0: evbus-reservation (pub :5601, catch-up
               :5602, commands :5603), following booking over tcp
  evb-PID-h2   10.77.0.2/24 on eth0: evbus-booking (:5611, :5612, :5613),
               following reservation over tcp
  evb-PID-h3   10.77.0.3/24 on eth0: the clients (`evbus call`), the box
               office, and two `evbus sniff` (events, and --stats) on both
               publishers
Every address lives inside a namespace; the root namespace gets nothing.
A fault on host N acts on the bridge's end of its veth (veth-hN), so the
host keeps its own address and can still be asked for its status locally.

Cases:
  partition     host 2 cut off (veth-h2 down) for 8 s, longer than the
                subscriber's dead_after (5 s) and the ZMTP heartbeat timeout
                (3 s); clients on host 3 book before and after, the box office
                keeps selling on host 1 during the cut and a client on host 2
                books locally. Requires: host 3 cannot reach booking during
                the cut; every feed across the cut (reservation's, booking's,
                the sniffer's) is seen dead and alive again; new TCP
                connections across host 2's link; then the common checks.
  host_lost     host 2 stops sending FIN and RST (nftables), booking is
                killed and started again: the other hosts' SUB connections to
                its old PUB socket stay half-open. Requires: they existed
                after the restart; reservation's feed of booking is seen
                silent for over 3.5 s and alive again, the sniffers' silent
                for over 3 s, and each through a new connection (the
                subscribers dial again after a silence of evbus heartbeats;
                SUB sockets have no ZMTP heartbeats, libzmq #3937); then the
                common checks.
  flap          veth-h2 goes down and up 10 times (random 0.2-2 s each way)
                while clients book; the common checks.
  loss          an nftables rule in host 2's namespace drops 20% of the
                packets that cross its eth0 (`numgen random mod 100 < 20`, in
                and out; this kernel has no netem) while clients book and the
                sagas finish; the rule's counters must show 10-30% dropped;
                then the common checks.
  sniff_marker  tcpdump on br0 while bookings carry customer=MARKER-<random>:
                the marker is in the capture (plain mode carries payloads in
                clear).
  discovery     the services follow each other by name (--follow-service,
                beacons on eth0), the sniffer follows them by name
                (--service), clients call @booking and @reservation;
                `evbus peers` on host 3 lists both with the endpoints they
                bound and their log ids; then an 8 s cut of host 2 as in
                partition: the feeds found by name come back. Skipped (also
                in CI) when the build has no discovery.
  curve_marker  sniff_marker with every service and client under CURVE
                (--cert/--allow, --follow PUB,CU,CERT, calls with --cert
                --server-key): the sniffer on host 3 prints the marker, but
                a capture of at least MIN_CAPTURE_BYTES / _PACKETS on br0,
                holding CURVE greetings and MESSAGE commands and no plain
                greeting, does not contain it.
  curve_refused an intruder on host 3 (a cert in no allow-list): its sniff
                --from-start prints nothing and says why, its calls exit 8,
                a plain call exits 8; both services log the refusal with
                host 3's address; no secret key in any log or output.
Common checks: booking_check.py's invariants (seats add up, every booking
final and agreeing with its hold, read models = aggregates); every accepted
command is in the log (nothing lost); no event is the cause of two events in
the other log and every BookingRequested got exactly one answer (nothing
applied twice); after a clean stop, `evbus log cat` of both logs equals what
the sniffer on host 3 saw, every event exactly once.

Exit: 0 passed, 1 failed, 77 skipped (not root, no namespaces, a missing
tool). With CI=true as root a skip is a failure. Every namespace, link and
process is removed on exit, Ctrl-C and SIGTERM included; a watchdog process
removes them if this one is killed. EVB_SANITIZED=1 lengthens deadlines;
EVB_TEST_SCALE multiplies the load; EVB_TEST_SEED repeats a run;
EVB_LAN_KEEP=1 keeps the scratch directory (stores, logs, captures).
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "scripts"))
import booking_check  # noqa: E402

SCALE = max(1, int(os.environ.get("EVB_TEST_SCALE", "1")))
SANITIZED = os.environ.get("EVB_SANITIZED") == "1"
SLOW = 3 if SANITIZED else 1  # deadlines are multiplied by this
NET = "10.77.0"
DEAD_MS = 5000  # the subscriber's dead_after_ms default (bus/evbus_bus.h)
PORTS = {"reservation": (5601, 5602, 5603), "booking": (5611, 5612, 5613)}
BUS_PORTS = {5601, 5602, 5611, 5612}
BEACON_PORT = 5771  # not the default 5670: beacons of a real LAN stay out
BEACON_ARGS = ["--beacon-iface", "eth0", "--beacon-port", str(BEACON_PORT)]
SKIP = 77


class Skip(Exception):
    pass


class NotBuilt(Skip):
    """The feature a case needs is not in this build: a skip even in CI."""


class Fail(Exception):
    pass


def say(msg):
    print("lan: " + msg, flush=True)


def run(argv, check=True, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise Fail("%s: exit %d: %s" % (" ".join(argv), p.returncode, p.stderr.strip()))
    return p


def wait_for(what, cond, timeout_s, step=0.05):
    """Poll cond() until it returns something true; Fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Fail("%s: not within %.0f s" % (what, timeout_s))
        time.sleep(step)


# ---------------------------------------------------------------- the LAN --

def ns_list():
    p = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def remove_namespaces(prefix):
    """Kill what runs in our namespaces (all of it started by this harness)
    and delete them; deleting a namespace deletes its links and bridge."""
    for ns in ns_list():
        if not ns.startswith(prefix):
            continue
        pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        run(["ip", "netns", "del", ns], check=False)


def remove_stale():
    """Namespaces of an earlier run whose process is gone (killed -9)."""
    for ns in ns_list():
        m = re.match(r"^evb-(\d+)-(br|h\d+)$", ns)
        if m and not os.path.exists("/proc/" + m.group(1)):
            say("removing %s, left by a run that is gone" % ns)
            remove_namespaces(ns)


class Lan:
    def __init__(self, nhosts=3):
        self.tag = "evb-%d" % os.getpid()
        self.br = self.tag + "-br"
        self.hosts = {i: "%s-h%d" % (self.tag, i) for i in range(1, nhosts + 1)}
        self.watchdog = None

    def addr(self, i):
        return "%s.%d" % (NET, i)

    def exec_prefix(self, i):
        return ["ip", "netns", "exec", self.hosts[i]]

    def build(self):
        # The watchdog removes everything if we are killed before cleaning up.
        self.watchdog = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--watchdog", self.tag + "-"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        first = run(["ip", "netns", "add", self.br], check=False)
        if first.returncode != 0:
            raise Skip("cannot create a network namespace (ip netns add: %s)"
                       % first.stderr.strip())
        b = ["ip", "-n", self.br]
        run(b + ["link", "set", "lo", "up"])
        run(b + ["link", "add", "br0", "type", "bridge"])
        run(b + ["link", "set", "br0", "up"])
        for i, ns in self.hosts.items():
            run(["ip", "netns", "add", ns])
            run(b + ["link", "add", "veth-h%d" % i, "type", "veth", "peer", "name", "eth0",
                     "netns", ns])
            run(b + ["link", "set", "veth-h%d" % i, "master", "br0"])
            run(b + ["link", "set", "veth-h%d" % i, "up"])
            h = ["ip", "-n", ns]
            run(h + ["link", "set", "lo", "up"])
            run(h + ["addr", "add", self.addr(i) + "/24", "dev", "eth0"])
            run(h + ["link", "set", "eth0", "up"])
        for i in self.hosts:
            self.wait_port(i)
        say("LAN up: bridge br0 in %s; %s" % (self.br, ", ".join(
            "%s %s" % (ns, self.addr(i)) for i, ns in self.hosts.items())))

    def port_forwarding(self, i):
        p = run(["bridge", "-n", self.br, "link", "show", "dev", "veth-h%d" % i], check=False)
        q = run(["ip", "-n", self.hosts[i], "link", "show", "eth0"], check=False)
        return "state forwarding" in p.stdout and "LOWER_UP" in q.stdout

    def wait_port(self, i):
        wait_for("host %d's link up" % i, lambda: self.port_forwarding(i), 10)

    def link_down(self, i):
        run(["ip", "-n", self.br, "link", "set", "veth-h%d" % i, "down"])

    def link_up(self, i):
        run(["ip", "-n", self.br, "link", "set", "veth-h%d" % i, "up"])
        self.wait_port(i)

    def add_loss(self, i, pct):
        rules = """table inet evbloss {
  chain in {
    type filter hook input priority 0; policy accept;
    iifname "eth0" numgen random mod 100 < %d counter drop
    iifname "eth0" counter
  }
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "eth0" numgen random mod 100 < %d counter drop
    oifname "eth0" counter
  }
}
""" % (pct, pct)
        run(self.exec_prefix(i) + ["nft", "-f", "-"], input=rules)

    def loss_counters(self, i):
        """(dropped, passed) packets of the loss rule, in + out."""
        out = run(self.exec_prefix(i) + ["nft", "list", "table", "inet", "evbloss"]).stdout
        dropped = passed = 0
        for line in out.splitlines():
            m = re.search(r"counter packets (\d+)", line)
            if m:
                if "drop" in line:
                    dropped += int(m.group(1))
                else:
                    passed += int(m.group(1))
        return dropped, passed

    def drop_fin_rst(self, i):
        """Host i's closing words never leave it: the other hosts keep their
        connections to it open (half-open) whatever it does to its sockets."""
        rules = """table inet evbmute {
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "eth0" tcp flags & (fin | rst) != 0 counter drop
  }
}
"""
        run(self.exec_prefix(i) + ["nft", "-f", "-"], input=rules)

    def allow_fin_rst(self, i):
        run(self.exec_prefix(i) + ["nft", "delete", "table", "inet", "evbmute"], check=False)

    def remove_loss(self, i):
        run(self.exec_prefix(i) + ["nft", "delete", "table", "inet", "evbloss"], check=False)

    def destroy(self):
        remove_namespaces(self.tag + "-")
        if self.watchdog is not None:
            try:
                self.watchdog.stdin.close()
                self.watchdog.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self.watchdog = None


def watchdog(prefix):
    """Child of a run: wait for the run's end (stdin closes), then remove
    what it may have left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        sys.stdin.buffer.read()
    except OSError:
        pass
    remove_namespaces(prefix)


# ------------------------------------------------------------ the services --

class Cluster:
    """reservation on host 1, booking on host 2, the observers on host 3."""

    def __init__(self, lan, evbus, res_bin, bk_bin, hold_timeout_ms=60000, discovery=False,
                 curve=False):
        base = os.environ.get("EVB_TEST_TMP") or tempfile.gettempdir()
        self.dir = tempfile.mkdtemp(prefix="lan-", dir=base)
        self.lan, self.evbus, self.res_bin, self.bk_bin = lan, evbus, res_bin, bk_bin
        self.hold_timeout_ms = hold_timeout_ms
        self.discovery = discovery
        a1, a2 = lan.addr(1), lan.addr(2)
        rp, rc, rx = PORTS["reservation"]
        bp, bc, bx = PORTS["booking"]
        self.res_follow = "tcp://%s:%d,tcp://%s:%d" % (a1, rp, a1, rc)
        self.bk_follow = "tcp://%s:%d,tcp://%s:%d" % (a2, bp, a2, bc)
        self.res_cmd = "tcp://%s:%d" % (a1, rx)
        self.bk_cmd = "tcp://%s:%d" % (a2, bx)
        self.host_of = {"reservation": 1, "booking": 2}
        self.procs = {}
        # CURVE: certificates, allow-lists and the extra arguments of each
        # side (empty in plain mode).
        self.keys = self.dir + "/keys"
        self.pubkey = {}
        self.svc_args = {"reservation": [], "booking": []}
        self.call_extra = {}
        self.client_cert = []
        if curve:
            self.make_curve()
        # `evbus` run inside host N: booking_check.Caller takes it as its program.
        self.wrap = {}
        for i, ns in lan.hosts.items():
            w = os.path.join(self.dir, "evbus-h%d" % i)
            with open(w, "w") as f:
                f.write('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (ns, evbus))
            os.chmod(w, 0o755)
            self.wrap[i] = w
        self.callers = {i: booking_check.Caller(w, timeout_ms=3000 * SLOW,
                                                extra=self.call_extra)
                        for i, w in self.wrap.items()}

    def cert_new(self, name):
        """`evbus cert new NAME` in the keys directory; returns the public key."""
        os.makedirs(self.keys, exist_ok=True)
        p = run([self.evbus, "cert", "new", name, "--dir", self.keys, "--json"])
        self.pubkey[name] = json.loads(p.stdout)["public_key"]
        return self.pubkey[name]

    def secret_key(self, name):
        """The secret key text of NAME's certificate (to look for it in logs)."""
        with open("%s/%s_secret" % (self.keys, name)) as f:
            return re.search(r'secret-key = "(.{40})"', f.read()).group(1)

    def make_curve(self):
        """Certificates for both services and the operator (every client on
        host 3); each service allows the other and the operator. Followers
        name the followed service's public cert, the operator's calls give
        the server key as text."""
        for name in ("reservation", "booking", "operator"):
            self.cert_new(name)
        for name, other in (("reservation", "booking"), ("booking", "reservation")):
            allow = "%s/allow-%s" % (self.dir, name)
            os.mkdir(allow)
            for peer in (other, "operator"):
                shutil.copy("%s/%s" % (self.keys, peer), allow)
            self.svc_args[name] = ["--cert", "%s/%s_secret" % (self.keys, name),
                                   "--allow", allow]
        self.res_follow += "," + self.keys + "/reservation"
        self.bk_follow += "," + self.keys + "/booking"
        self.client_cert = ["--cert", self.keys + "/operator_secret"]
        for name in ("reservation", "booking"):
            self.call_extra[self.cmd_ep(name)] = self.client_cert + [
                "--server-key", self.pubkey[name]]

    def extra_for(self, name):
        """The CURVE arguments of a call to service `name` (none when plain)."""
        return list(self.call_extra.get(self.cmd_ep(name), []))

    def cmd_ep(self, name):
        return self.res_cmd if name == "reservation" else self.bk_cmd

    def by_name(self, name):
        """`evbus call` arguments naming a service, found by its beacon."""
        return ["@" + name, "--beacon-iface", "eth0", "--beacon-port", str(BEACON_PORT)]

    def spawn(self, name, host, argv, stdout_path, stderr_path=None):
        out = open(stdout_path, "ab")
        err = open(stderr_path, "ab") if stderr_path else out
        p = subprocess.Popen(self.lan.exec_prefix(host) + argv, stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL)
        self.procs[name] = p
        return p

    def start_service(self, name):
        a = self.lan.addr(self.host_of[name])
        pub, cu, cmd = PORTS[name]
        other = "booking" if name == "reservation" else "reservation"
        if self.discovery:
            follow = ["--follow-service", other, "--announce"] + BEACON_ARGS
        else:
            follow = ["--follow", self.bk_follow if other == "booking" else self.res_follow]
        if name == "reservation":
            argv = [self.res_bin, "--store", self.dir + "/res", *follow]
        else:
            argv = [self.bk_bin, "--store", self.dir + "/bk", *follow,
                    "--hold-timeout", f"{self.hold_timeout_ms}ms"]
        argv += self.svc_args[name]
        argv += ["--pub", "tcp://%s:%d" % (a, pub), "--catchup", "tcp://%s:%d" % (a, cu),
                 "--cmd", "tcp://%s:%d" % (a, cmd)]
        p = self.spawn(name, self.host_of[name], argv, "%s/%s.log" % (self.dir, name))

        def up():
            if p.poll() is not None:
                raise Fail("%s exited with %d at start (log %s/%s.log)"
                           % (name, p.returncode, self.dir, name))
            return self.status(name)[0] == 0
        wait_for("%s answering status" % name, up, 30 * SLOW)

    def start_sniffers(self):
        """Two taps on host 3: every event (JSON lines) and --stats."""
        follow = ["--follow", self.res_follow, "--follow", self.bk_follow]
        if self.discovery:
            follow = ["--service", "reservation", "--service", "booking"] + BEACON_ARGS
        follow += self.client_cert
        self.spawn("sniff", 3, [self.evbus, "sniff", *follow, "--from-start", "--json"],
                   self.dir + "/sniff.jsonl", self.dir + "/sniff.err")
        self.spawn("sniff-stats", 3, [self.evbus, "sniff", *follow, "--stats", "--json"],
                   self.dir + "/stats.jsonl", self.dir + "/stats.err")

    def status(self, name):
        """The service's status, asked from its own host (works during a cut)."""
        return self.callers[self.host_of[name]].call(self.cmd_ep(name), "status")

    def call(self, host, name, command, *args):
        return self.callers[host].call(self.cmd_ep(name), command, *args)

    def stop(self, name, sig=signal.SIGTERM):
        p = self.procs.pop(name, None)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=30 * SLOW)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def close(self, keep):
        for n in list(self.procs):
            self.stop(n, signal.SIGKILL)
        if keep:
            say("scratch directory kept: " + self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------ watching the feeds --

class FeedTrack:
    """Heartbeat ages of one feed over time: how often it went dead (no
    heartbeat for longer than dead_after) and came back."""

    def __init__(self):
        self.dead = False
        self.revivals = 0
        self.max_age = 0
        self.outages = []  # longest heartbeat age of each dead period, ms
        self.cur = 0
        self.last = None  # the latest heartbeat age, ms
        self.gaps = self.duplicates = 0

    def sample(self, age, live):
        if age is None or age < 0:
            return
        self.last = age
        self.max_age = max(self.max_age, age)
        if age > DEAD_MS:
            self.dead = True
            self.cur = max(self.cur, age)
        elif self.dead and age < 2500 and live:
            self.dead = False
            self.revivals += 1
            self.outages.append(self.cur)
            self.cur = 0


def tcp_table(pid):
    """ESTABLISHED connections of pid's network namespace that go to a bus
    port of another host: {(local, lport, remote, rport)}."""
    out = set()
    try:
        with open("/proc/%d/net/tcp" % pid) as f:
            lines = f.readlines()[1:]
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "01":
            continue
        (la, lp), (ra, rp) = [x.split(":") for x in parts[1:3]]
        lip = socket.inet_ntoa(struct.pack("<I", int(la, 16)))
        rip = socket.inet_ntoa(struct.pack("<I", int(ra, 16)))
        if int(rp, 16) in BUS_PORTS and lip != rip:
            out.add((lip, int(lp, 16), rip, int(rp, 16)))
    return out


class Monitor(threading.Thread):
    """Polls both services' status from their own hosts and the TCP tables
    of the three hosts, until stopped."""

    def __init__(self, cl):
        super().__init__(daemon=True)
        self.cl = cl
        self.halt = threading.Event()
        self.feeds = {}
        self.conns = {}  # (local, lport, remote, rport) -> first seen (monotonic)
        self.baseline = None
        self.lock = threading.Lock()

    def run(self):
        while not self.halt.is_set():
            for name in ("reservation", "booking"):
                rc, st = self.cl.status(name)
                if rc != 0:
                    continue
                for f in st.get("feeds", []):
                    key = "%s <- %s" % (name, f["category"])
                    with self.lock:
                        t = self.feeds.setdefault(key, FeedTrack())
                        t.sample(f.get("heartbeat_age_ms"), f.get("state") == "live")
                        t.gaps, t.duplicates = f.get("gaps", 0), f.get("duplicates", 0)
            self.sample_tcp()
            self.halt.wait(0.2)

    def sample_tcp(self):
        now = time.monotonic()
        for p in list(self.cl.procs.values()):
            if p.poll() is None:
                for c in tcp_table(p.pid):
                    with self.lock:
                        self.conns.setdefault(c, now)

    def mark_baseline(self, want=12):
        """The connections of the steady state: both services' subscribers
        (2 sockets each) and the two sniffers' (4 each) across hosts."""
        def steady():
            self.sample_tcp()
            with self.lock:
                return len(self.conns) >= want
        wait_for("%d bus connections across the LAN" % want, steady, 30 * SLOW, step=0.1)
        with self.lock:
            self.baseline = set(self.conns)

    def new_conns(self, via=None):
        """Connections made since the baseline (reconnects), optionally only
        those with an end on address `via`."""
        with self.lock:
            new = [c for c in self.conns if c not in (self.baseline or set())]
        return [c for c in new if via is None or via in (c[0], c[2])]

    def stop(self):
        self.halt.set()
        self.join(timeout=30)

    def track(self, key):
        with self.lock:
            return self.feeds.get(key, FeedTrack())

    def all_alive(self):
        with self.lock:
            return self.feeds and all(not t.dead for t in self.feeds.values())


def sniffer_tracks(path):
    """FeedTracks of the --stats sniffer, from its one-object-a-second lines."""
    tracks = {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return tracks
    for line in lines:
        try:
            o = json.loads(line)
        except ValueError:
            continue
        for f in o.get("feeds", []):
            key = "sniff <- %s" % f.get("category")
            t = tracks.setdefault(key, FeedTrack())
            t.sample(f.get("heartbeat_age_ms"), f.get("state") == "live")
            t.gaps, t.duplicates = f.get("gaps", 0), f.get("duplicates", 0)
    return tracks


def sniff_revived(cl, category):
    """Has the --stats sniffer's feed of category been dead and come back?"""
    t = sniffer_tracks(cl.dir + "/stats.jsonl").get("sniff <- " + category)
    return t is not None and t.revivals >= 1


# ---------------------------------------------------------------- the load --

class Load:
    """Clients on host 3 booking through booking (host 2), the box office on
    host 3 selling at reservation (host 1), and optionally a client on host 2
    itself. A call that times out (exit 7) is sent again with the same
    command id until its deadline, so a command is never made twice."""

    def __init__(self, cl, shows, seed, clients=4, customer=None, call_timeout_ms=2000,
                 by_name=False):
        self.cl, self.shows, self.seed = cl, shows, seed
        self.clients, self.customer = clients, customer
        self.by_name = by_name
        self.timeout_ms = call_timeout_ms * SLOW
        self.give_up_s = 180 * SLOW
        self.stop_ev = threading.Event()
        self.booking_open = threading.Event()
        self.booking_open.set()
        self.local_open = threading.Event()
        self.lock = threading.Lock()
        self.accepted = {}  # booking id -> (show, seats)
        self.box = {}  # box office booking -> hold exit code (0 sold, 5 sold out)
        self.cancelled = []
        self.retried = 0
        self.errors = []
        self.threads = []

    def call(self, host, name, command, args, cid):
        deadline = time.monotonic() + self.give_up_s
        ep = self.cl.by_name(name) if self.by_name else [self.cl.cmd_ep(name)]
        argv = [self.cl.wrap[host], "call", *ep, command, *args,
                "--json", "--timeout", f"{self.timeout_ms}ms", "--id", cid,
                *self.cl.extra_for(name)]
        while True:
            try:
                p = subprocess.run(argv, capture_output=True, text=True)
            except OSError as e:  # the run is being torn down
                return 4, {"error": str(e)}
            try:
                body = json.loads(p.stdout) if p.stdout.strip() else {}
            except ValueError:
                body = {"raw": p.stdout}
            if p.returncode != 7 or time.monotonic() > deadline:
                return p.returncode, body
            with self.lock:
                self.retried += 1
            time.sleep(0.05)

    def book(self, host, rng, bid):
        show = rng.choice(self.shows)
        seats = rng.randint(1, 4)
        customer = self.customer or "cust%d" % rng.randint(0, 9)
        rc, body = self.call(host, "booking", "book",
                             ["show=" + show, "seats=%d" % seats, "customer=" + customer,
                              "booking=" + bid], bid)
        with self.lock:
            if rc == 0:
                self.accepted[bid] = (show, seats)
            else:
                self.errors.append("book %s: exit %d %s" % (bid, rc, body))
        if rc == 0 and rng.random() < 0.15:
            rc, body = self.call(host, "booking", "cancel", ["booking=" + bid], "x" + bid)
            with self.lock:
                if rc == 0:
                    self.cancelled.append(bid)
                elif rc != 5:
                    self.errors.append("cancel %s: exit %d %s" % (bid, rc, body))

    def client(self, k):
        rng = random.Random(self.seed * 100 + k)
        i = 0
        while not self.stop_ev.is_set():
            if not self.booking_open.wait(0.05):
                continue
            self.book(3, rng, "c%d-%d" % (k, i))
            i += 1

    def local_client(self):
        rng = random.Random(self.seed * 100 + 99)
        i = 0
        while not self.stop_ev.is_set():
            if not self.local_open.wait(0.05):
                continue
            self.book(2, rng, "local-%d" % i)
            i += 1
            self.stop_ev.wait(0.1)  # pacing: a few bookings a second

    def box_office(self):
        i = 0
        while not self.stop_ev.is_set():
            bid = "box%d" % i
            rc, body = self.call(3, "reservation", "hold",
                                 ["show=" + self.shows[-1], "seats=1", "booking=" + bid], bid)
            if rc == 0:
                rc2, body2 = self.call(3, "reservation", "confirm",
                                       ["show=" + self.shows[-1], "booking=" + bid], "c" + bid)
                if rc2 != 0:
                    with self.lock:
                        self.errors.append("confirm %s: exit %d %s" % (bid, rc2, body2))
            with self.lock:
                self.box[bid] = rc
                if rc not in (0, 5):
                    self.errors.append("hold %s: exit %d %s" % (bid, rc, body))
            i += 1
            self.stop_ev.wait(0.1)  # pacing: the box office is slower than the web

    def start(self, local=False):
        fns = [lambda k=k: self.client(k) for k in range(self.clients)] + [self.box_office]
        if local:
            fns.append(self.local_client)
        for fn in fns:
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self.threads.append(t)

    def count(self, prefix=""):
        with self.lock:
            return sum(1 for b in self.accepted if b.startswith(prefix))

    def wait_accepted(self, n, what, timeout_s):
        base = self.count()
        wait_for(what, lambda: self.count() >= base + n, timeout_s)

    def finish(self):
        self.stop_ev.set()
        self.booking_open.set()
        for t in self.threads:
            t.join(timeout=self.give_up_s + 60)
            if t.is_alive():
                raise Fail("a client thread is stuck")
        if self.errors:
            raise Fail("%d client calls failed, first: %s" % (len(self.errors),
                                                                self.errors[0]))


# -------------------------------------------------------------- the checks --

def log_events(cl, store):
    p = run([cl.evbus, "log", "cat", store, "--json"])
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def check_everything(cl, load, shows, mon, wait_s=None):
    """The common checks; returns a summary dict. Stops the sniffers and
    the services (cleanly) on the way."""
    wait_s = wait_s or 120 * SLOW
    problems, summary = booking_check.check(cl.wrap[3], cl.res_cmd, cl.bk_cmd, shows,
                                            wait_s, quiet=True, extra=cl.call_extra)
    if problems:
        raise Fail("%d invariant problems (first: %s)" % (len(problems), problems[0]))
    heads = {}
    for name in ("reservation", "booking"):
        rc, st = cl.status(name)
        if rc != 0:
            raise Fail("%s status: exit %d" % (name, rc))
        heads[name] = st["head"]
    want = heads["reservation"] + heads["booking"]

    def sniffed():
        try:
            with open(cl.dir + "/sniff.jsonl") as f:
                return sum(1 for _ in f) >= want
        except OSError:
            return False
    wait_for("the sniffer on host 3 seeing %d events" % want, sniffed, 60 * SLOW)
    if mon is not None:
        mon.stop()
    for n in ("sniff", "sniff-stats"):
        rc = cl.stop(n)
        if rc != 0:
            raise Fail("evbus sniff (%s) exited %d on SIGTERM (see %s/%s.err)"
                       % (n, rc, cl.dir, n.replace("sniff-", "")))
    for n in ("booking", "reservation"):
        rc = cl.stop(n)
        if rc != 0:
            raise Fail("%s exited %d on SIGTERM" % (n, rc))
    logs = {"reservation": log_events(cl, cl.dir + "/res"),
            "booking": log_events(cl, cl.dir + "/bk")}
    for name, evs in logs.items():
        if len(evs) != heads[name] or [e["seq"] for e in evs] != list(range(1, len(evs) + 1)):
            raise Fail("%s: evbus log cat shows %d events, status said head %d"
                       % (name, len(evs), heads[name]))

    # The sniffer saw every event of both logs exactly once, byte-identical ids.
    seen = {}
    with open(cl.dir + "/sniff.jsonl") as f:
        for line in f:
            e = json.loads(line)
            seen.setdefault((e["service"], e["seq"]), []).append(e["id"])
    for name, evs in logs.items():
        for e in evs:
            got = seen.pop((name, e["seq"]), [])
            if got != [e["id"]]:
                raise Fail("%s seq %d (%s): the sniffer saw %s" % (name, e["seq"], e["id"],
                                                                   got or "nothing"))
    if seen:
        raise Fail("the sniffer saw events that are in no log: %s" % list(seen)[:3])

    # Nothing applied twice: an event causes at most one event in the other
    # log, and every BookingRequested got exactly one answer.
    caused = {}
    for name, evs in logs.items():
        for e in evs:
            if e.get("causation_id"):
                caused.setdefault((name, e["causation_id"]), []).append(e)
    other = {"reservation": "booking", "booking": "reservation"}
    for name, evs in logs.items():
        for e in evs:
            answers = caused.get((other[name], e["id"]), [])
            if len(answers) > 1:
                raise Fail("%s %s seq %d was applied %d times by %s: %s"
                           % (name, e["type"], e["seq"], len(answers), other[name],
                              [a["seq"] for a in answers]))
            if e["type"] == "BookingRequested" and \
                    [a["type"] for a in answers] not in (["SeatsHeld"], ["SeatsRejected"]):
                raise Fail("BookingRequested %s: reservation answered %s"
                           % (e["payload"]["booking"], [a["type"] for a in answers]))
    # Per booking, each type of event at most once, and a final one last.
    streams = {}
    for e in logs["booking"]:
        streams.setdefault(e["stream"], []).append(e["type"])
    final = {"BookingConfirmed", "BookingRejected", "BookingExpired", "BookingCancelled"}
    for s, types in streams.items():
        if len(set(types)) != len(types) or types[0] != "BookingRequested" \
                or types[-1] not in final:
            raise Fail("stream %s: %s" % (s, types))
    holds = {}
    for e in logs["reservation"]:
        b = e["payload"].get("booking")
        if b is not None:
            holds.setdefault((e["payload"]["show"], b), []).append(e["type"])
    for k, types in holds.items():
        if len(set(types)) != len(types) or ("SeatsHeld" in types and "SeatsRejected" in types):
            raise Fail("hold %s: %s" % (k, types))

    # Nothing lost: every accepted command is in the log, once.
    requested = {}
    for e in logs["booking"]:
        if e["type"] == "BookingRequested":
            b = e["payload"]["booking"]
            requested[b] = requested.get(b, 0) + 1
    lost = [b for b in load.accepted if requested.get(b) != 1]
    if lost:
        raise Fail("%d accepted bookings not in the booking log once, e.g. %s"
                   % (len(lost), lost[:3]))
    sold = [b for b, rc in load.box.items() if rc == 0]
    for b in sold:
        if holds.get((shows[-1], b), [])[:2] != ["SeatsHeld", "SeatsConfirmed"]:
            raise Fail("box office sale %s: reservation log has %s"
                       % (b, holds.get((shows[-1], b))))
    for b, rc in load.box.items():
        if rc == 5 and (shows[-1], b) in holds:
            raise Fail("box office hold %s was refused but is in the log" % b)
    st = summary["by_status"]
    return {"heads": heads, "bookings": summary["bookings"], "by_status": st,
            "box_sold": len(sold), "box_refused": len(load.box) - len(sold),
            "cancelled": len(load.cancelled), "retried": load.retried}


def feeds_report(mon, cl):
    tracks = dict(mon.feeds)
    tracks.update(sniffer_tracks(cl.dir + "/stats.jsonl"))
    parts = []
    for key in sorted(tracks):
        t = tracks[key]
        parts.append("%s: %d revived (max heartbeat age %.1f s), gaps %d, duplicates %d"
                     % (key, t.revivals, t.max_age / 1000.0, t.gaps, t.duplicates))
    return tracks, parts


def describe(res):
    st = res["by_status"]
    return ("%d bookings (%s), %d cancels, box office %d sold / %d refused, "
            "%d calls retried after a timeout; logs: reservation %d events, booking %d; "
            "sniffer saw each once"
            % (res["bookings"], " ".join("%s %d" % kv for kv in sorted(st.items())),
               res["cancelled"], res["box_sold"], res["box_refused"], res["retried"],
               res["heads"]["reservation"], res["heads"]["booking"]))


class Run:
    """What a case works with, and what the cleanup must find."""

    def __init__(self, lan, args, seed):
        self.lan, self.args, self.seed = lan, args, seed
        self.clusters = []
        self.loads = []
        self.monitors = []

    def monitor(self, cl):
        mon = Monitor(cl)
        self.monitors.append(mon)
        return mon

    def load(self, cl, shows, **kw):
        ld = Load(cl, shows, self.seed, **kw)
        self.loads.append(ld)
        return ld


def setup(r, shows, hold_timeout_ms=60000, discovery=False, curve=False):
    cl = Cluster(r.lan, *r.args, hold_timeout_ms=hold_timeout_ms, discovery=discovery,
                 curve=curve)
    r.clusters.append(cl)
    cl.start_service("reservation")
    cl.start_service("booking")
    cl.start_sniffers()
    for s, cap in shows:
        ep = cl.by_name("reservation") if discovery else [cl.res_cmd]
        p = run([cl.wrap[3], "call", *ep, "create_show", "show=" + s, "capacity=%d" % cap,
                 "--json", "--timeout", f"{3000 * SLOW}ms", *cl.extra_for("reservation")],
                check=False)
        rc, body = p.returncode, p.stdout.strip()
        if rc != 0:
            raise Fail("create_show %s from host 3: exit %d %s" % (s, rc, body))
    return cl


def wait_live(cl, timeout_s):
    """Every feed of both services live, heartbeats fresh."""
    def ok():
        for n in ("reservation", "booking"):
            rc, st = cl.status(n)
            if rc != 0 or not st.get("feeds"):
                return False
            for f in st["feeds"]:
                if f["state"] != "live" or not (0 <= f["heartbeat_age_ms"] < 2500):
                    return False
        return True
    wait_for("both services' feeds live", ok, timeout_s)


# --------------------------------------------------------------- the cases --

SHOWS = [("s1", 120), ("s2", 120), ("s3", 150)]


def start_watched(r, **load_kw):
    """The start of a fault case: both services and the sniffers up, every
    feed live, the monitor running from a baseline of connections, and the
    load made (not started)."""
    cl = setup(r, SHOWS)
    shows = [s for s, _ in SHOWS]
    wait_live(cl, 30 * SLOW)
    mon = r.monitor(cl)
    mon.mark_baseline()
    mon.start()
    return cl, shows, mon, r.load(cl, shows, **load_kw)


def finish_and_check(cl, shows, mon, load, n, after, t0):
    """The end of a fault case: n more bookings through booking, the load
    stopped, the common checks. (run seconds, results, feed tracks, report)."""
    load.booking_open.set()
    load.wait_accepted(n, "%d bookings after %s" % (n, after), 120 * SLOW)
    load.finish()
    run_s = time.monotonic() - t0
    res = check_everything(cl, load, shows, mon)
    tracks, parts = feeds_report(mon, cl)
    return run_s, res, tracks, parts


def case_partition(r):
    lan, seed = r.lan, r.seed
    cl, shows, mon, load = start_watched(r)
    t0 = time.monotonic()
    load.start(local=True)
    n = 30 * SCALE
    load.wait_accepted(n, "%d bookings before the cut" % n, 120 * SLOW)
    # The cut: booking's host leaves the LAN; host 3's clients wait, the box
    # office keeps selling at reservation and a client on host 2 books there.
    load.booking_open.clear()
    cut_s = 8.0
    box_before = len(load.box)
    local_before = load.count("local-")
    lan.link_down(2)
    t_cut = time.monotonic()
    load.local_open.set()
    say("host 2 cut off (veth-h2 down) for %.0f s" % cut_s)
    probe = subprocess.run([cl.wrap[3], "call", cl.bk_cmd, "status", "--timeout", "1000ms"],
                           capture_output=True, text=True)
    if probe.returncode != 7:
        raise Fail("host 3 reached booking across the cut (exit %d)" % probe.returncode)
    time.sleep(max(0.0, cut_s - (time.monotonic() - t_cut)))  # the fault itself
    load.local_open.clear()
    dead = {k: mon.track(k).dead for k in ("reservation <- booking", "booking <- show")}
    lan.link_up(2)
    t_up = time.monotonic()
    box_during = len(load.box) - box_before
    local_during = load.count("local-") - local_before
    say("link back after %.1f s; during the cut: %d box office calls on host 1, "
        "%d local bookings on host 2; feeds dead at link-up: %s"
        % (t_up - t_cut, box_during, local_during, dead))
    # The sniffer's feed of booking too: the check below asks for its revival
    # (once, a CI run checked before the sniffer's stats said it was back).
    wait_for("every feed alive again after the cut",
             lambda: mon.track("reservation <- booking").revivals >= 1
             and mon.track("booking <- show").revivals >= 1 and mon.all_alive()
             and sniff_revived(cl, "booking"),
             60 * SLOW, step=0.1)
    back_s = time.monotonic() - t_up
    run_s, res, tracks, parts = finish_and_check(cl, shows, mon, load, n, "the cut", t0)
    for key in ("reservation <- booking", "booking <- show", "sniff <- booking"):
        if tracks.get(key, FeedTrack()).revivals < 1:
            raise Fail("%s: never seen dead and back (%s)" % (key, "; ".join(parts)))
    if box_during == 0 or local_during == 0:
        raise Fail("nothing happened during the cut (box office %d, host 2 %d)"
                   % (box_during, local_during))
    tcp = mon.new_conns(via=lan.addr(2))
    if not tcp:
        raise Fail("no new TCP connection across host 2's link after the cut")
    say("feeds: " + "; ".join(parts))
    say("TCP reconnects across host 2's link: %d (%s)"
        % (len(tcp), ", ".join("%s:%d->%s:%d" % c for c in sorted(tcp))))
    return ("cut %.1f s, every feed alive %.1f s after link-up, %d TCP reconnects; "
            "during the cut %d box office calls and %d local bookings; load ran %.0f s; %s"
            % (t_up - t_cut, back_s, len(tcp), box_during, local_during, run_s,
               describe(res)))


def case_host_lost(r):
    """Booking's host goes away without a word and comes back: its outgoing
    FIN and RST are dropped (nftables on host 2) while booking is killed and
    started again, so every connection to its old sockets stays half-open on
    the other hosts. A SUB never sends, so nothing there finds out; evbus
    heartbeats must (a SUB has no ZMTP heartbeats: libzmq #3937)."""
    lan = r.lan
    cl, shows, mon, load = start_watched(r)
    t0 = time.monotonic()
    load.start()
    n = 20 * SCALE
    load.wait_accepted(n, "%d bookings before the loss" % n, 120 * SLOW)
    bk_pub = (lan.addr(2), PORTS["booking"][0])
    watchers = [cl.procs[k].pid for k in ("reservation", "sniff", "sniff-stats")]

    def live_subs():  # the SUB connections of the other hosts to booking's PUB
        return {c for pid in watchers for c in tcp_table(pid) if c[2:] == bk_pub}
    before = live_subs()
    if len(before) < 3:
        raise Fail("expected 3 SUB connections to booking's PUB, saw %s" % sorted(before))
    load.booking_open.clear()
    lan.drop_fin_rst(2)
    cl.stop("booking", signal.SIGKILL)
    t_lost = time.monotonic()
    cl.start_service("booking")
    still = live_subs() & before
    say("booking killed and started again behind a FIN/RST drop; half-open SUB "
        "connections left: %d of %d" % (len(still), len(before)))
    if not still:
        raise Fail("no half-open connection: the old SUB connections closed (%s)"
                   % sorted(live_subs()))
    # The subscriber dials again when a feed has been silent for DEAD_MS;
    # heartbeats come back within a second of that, so the monitor (a status
    # call every 0.2 s) may never see the age above DEAD_MS: a silence of
    # QUIET_MS, then a fresh heartbeat, then a new connection is the proof.
    quiet_ms = DEAD_MS - 1500

    def fresh_subs():
        return [c for c in mon.new_conns(via=lan.addr(2)) if c[2:] == bk_pub]

    def back():
        t = mon.track("reservation <- booking")
        return (t.max_age >= quiet_ms and t.last is not None and t.last < 2500
                and len(fresh_subs()) >= len(before) and mon.all_alive())
    try:
        wait_for("every feed alive again after booking's host came back", back,
                 60 * SLOW, step=0.1)
    except Fail as e:
        t = mon.track("reservation <- booking")
        raise Fail("%s (reservation <- booking: longest age %d ms, latest %s ms; "
                   "new connections to booking's PUB: %s)"
                   % (e, t.max_age, t.last, sorted(fresh_subs())))
    back_s = time.monotonic() - t_lost
    gone = before - live_subs()
    lan.allow_fin_rst(2)
    run_s, res, tracks, parts = finish_and_check(cl, shows, mon, load, n,
                                                 "booking came back", t0)
    # The sniffer dials again after the same silence as the subscriber; its
    # --stats lines come once a second: over 3 s of silence is the old link.
    if tracks.get("sniff <- booking", FeedTrack()).max_age < 3000:
        raise Fail("sniff <- booking: no silence seen (%s)" % "; ".join(parts))
    fresh = fresh_subs()
    if len(fresh) < len(before):
        raise Fail("%d new SUB connections to booking's PUB, want %d (%s)"
                   % (len(fresh), len(before), sorted(fresh)))
    say("feeds: " + "; ".join(parts))
    return ("%d half-open SUB connections replaced (%d left by the time every feed was "
            "alive, %.1f s after the loss); load ran %.0f s; %s"
            % (len(still), len(before) - len(gone), back_s, run_s, describe(res)))


def case_flap(r):
    lan, seed = r.lan, r.seed
    cl, shows, mon, load = start_watched(r, call_timeout_ms=1500)
    rng = random.Random(seed)
    t0 = time.monotonic()
    load.start()
    load.wait_accepted(10, "10 bookings before the flapping", 60 * SLOW)
    flaps = 10 * SCALE
    downs = []
    for _ in range(flaps):
        d = rng.uniform(0.2, 2.0)
        lan.link_down(2)
        time.sleep(d)  # the fault schedule
        lan.link_up(2)
        downs.append(d)
        time.sleep(rng.uniform(0.2, 2.0))
    during = load.count()
    say("%d flaps of veth-h2 (down %.1f s in all, %.1f-%.1f s each); %d bookings so far"
        % (flaps, sum(downs), min(downs), max(downs), during))
    load.wait_accepted(10, "10 bookings after the flapping", 120 * SLOW)
    load.finish()
    run_s = time.monotonic() - t0
    wait_live(cl, 60 * SLOW)
    res = check_everything(cl, load, shows, mon)
    tracks, parts = feeds_report(mon, cl)
    tcp = mon.new_conns(via=lan.addr(2))
    say("feeds: " + "; ".join(parts))
    return ("%d flaps (down %.1f s in all), %d TCP reconnects, %d feed revivals; "
            "load ran %.0f s; %s"
            % (flaps, sum(downs), len(tcp), sum(t.revivals for t in tracks.values()),
               run_s, describe(res)))


def case_loss(r):
    lan, seed = r.lan, r.seed
    if shutil.which("nft") is None:
        raise Skip("nft (nftables) is not installed (tools/setup.sh --test installs it)")
    cl = setup(r, SHOWS)
    shows = [s for s, _ in SHOWS]
    wait_live(cl, 30 * SLOW)
    mon = r.monitor(cl)
    mon.mark_baseline()
    mon.start()
    lan.add_loss(2, 20)
    say("nftables on host 2 drops 20% of the packets crossing its eth0")
    load = r.load(cl, shows, call_timeout_ms=3000)
    t0 = time.monotonic()
    load.start()
    n = 40 * SCALE
    load.wait_accepted(n, "%d bookings under 20%% loss" % n, 300 * SLOW)
    load.finish()
    # The sagas finish under loss too: wait until every booking is final
    # (queries that time out are simply asked again).
    c = cl.callers[3]

    def settled():
        rc, cust = c.pages(cl.bk_cmd, "customer", "bookings")
        return rc == 0 and cust.get("bookings") and \
            all(b["status"] != "requested" for b in cust["bookings"])
    wait_for("every booking final under loss", settled, 180 * SLOW, step=0.5)
    run_s = time.monotonic() - t0
    dropped, passed = lan.loss_counters(2)
    lan.remove_loss(2)
    ratio = dropped / float(dropped + passed or 1)
    if dropped == 0 or not 0.10 <= ratio <= 0.30:
        raise Fail("the loss rule dropped %d of %d packets (%.1f%%)"
                   % (dropped, dropped + passed, 100 * ratio))
    res = check_everything(cl, load, shows, mon)
    tracks, parts = feeds_report(mon, cl)
    tcp = mon.new_conns(via=lan.addr(2))
    say("feeds: " + "; ".join(parts))
    return ("%d of %d packets dropped on host 2 (%.1f%%), %d TCP reconnects, "
            "%d feed revivals; load and sagas ran %.0f s under loss; %s"
            % (dropped, dropped + passed, 100 * ratio, len(tcp),
               sum(t.revivals for t in tracks.values()), run_s, describe(res)))


def pcap_packets(data):
    """Number of packets in a classic pcap file."""
    if len(data) < 24:
        return 0
    magic = struct.unpack("<I", data[:4])[0]
    end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    off, n = 24, 0
    while off + 16 <= len(data):
        incl = struct.unpack(end + "I", data[off + 8:off + 12])[0]
        off += 16 + incl
        n += 1
    return n


def case_sniff_marker(r):
    lan, seed = r.lan, r.seed
    if shutil.which("tcpdump") is None:
        raise Skip("tcpdump is not installed (tools/setup.sh --test installs it)")
    cl = setup(r, SHOWS)
    shows = [s for s, _ in SHOWS]
    wait_live(cl, 30 * SLOW)
    marker = "MARKER-%016x" % random.Random(seed).getrandbits(64)
    pcap = cl.dir + "/br0.pcap"
    tcpdump = subprocess.Popen(
        ["ip", "netns", "exec", lan.br, "tcpdump", "-i", "br0", "-n", "-U", "--immediate-mode",
         "-s", "0",
         "-Z", "root", "-w", pcap, "tcp"],
        stdout=subprocess.DEVNULL, stderr=open(cl.dir + "/tcpdump.err", "wb"))
    cl.procs["tcpdump"] = tcpdump
    wait_for("tcpdump listening on br0",
             lambda: "listening on" in open(cl.dir + "/tcpdump.err").read(), 20 * SLOW)
    load = r.load(cl, shows, clients=2, customer=marker)
    load.start()
    load.wait_accepted(10, "10 bookings by customer " + marker, 60 * SLOW)
    load.finish()

    def in_sniffer():
        return open(cl.dir + "/sniff.jsonl").read().count(marker) >= 10
    wait_for("the sniffer on host 3 seeing the marker", in_sniffer, 60 * SLOW)
    res = check_everything(cl, load, shows, None)
    # tcpdump writes each packet as it comes (--immediate-mode -U); the
    # deadline only covers its scheduling.
    try:
        wait_for("the marker in the capture", lambda: marker.encode() in
                 open(pcap, "rb").read(), 20 * SLOW, step=0.2)
    except Fail:
        pass
    cl.stop("tcpdump", signal.SIGINT)
    data = open(pcap, "rb").read()
    hits = data.count(marker.encode())
    packets = pcap_packets(data)
    if hits == 0:
        raise Fail("marker %s not in the capture on br0 (%d bytes, %d packets; %s)"
                   % (marker, len(data), packets,
                      open(cl.dir + "/tcpdump.err").read().strip().replace("\n", "; ")))
    return ("customer=%s: %d copies in a capture of %d packets (%d bytes) on br0, plain "
            "mode; %s" % (marker, hits, packets, len(data), describe(res)))


# A capture under CURVE must be at least this big to say much by the
# marker's absence: many bookings' requests, events and catch-up pages.
MIN_CAPTURE_BYTES = 100 * 1024
MIN_CAPTURE_PACKETS = 500
# The ZMTP 3 greeting's mechanism field: 20 bytes, the name padded with NULs.
GREETING_CURVE = b"CURVE" + b"\0" * 15
GREETING_NULL = b"NULL" + b"\0" * 16


def bridge_capture(cl, lan):
    """tcpdump on br0 (the bridge's namespace), every tcp packet whole,
    written as it comes; returns the pcap's path once it listens."""
    pcap = cl.dir + "/br0.pcap"
    cl.procs["tcpdump"] = subprocess.Popen(
        ["ip", "netns", "exec", lan.br, "tcpdump", "-i", "br0", "-n", "-U", "--immediate-mode",
         "-s", "0", "-Z", "root", "-w", pcap, "tcp"],
        stdout=subprocess.DEVNULL, stderr=open(cl.dir + "/tcpdump.err", "wb"))
    wait_for("tcpdump listening on br0",
             lambda: "listening on" in open(cl.dir + "/tcpdump.err").read(), 20 * SLOW)
    return pcap


def case_curve_marker(r):
    """sniff_marker under CURVE: every service and client has a certificate;
    bookings carrying the marker succeed and the sniffer on host 3 decrypts
    it, but a capture on br0 of at least MIN_CAPTURE_BYTES and
    MIN_CAPTURE_PACKETS has no copy of it, and no plain (NULL) greeting."""
    lan, seed = r.lan, r.seed
    if shutil.which("tcpdump") is None:
        raise Skip("tcpdump is not installed (tools/setup.sh --test installs it)")
    cl = setup(r, SHOWS, curve=True)
    shows = [s for s, _ in SHOWS]
    wait_live(cl, 30 * SLOW)
    marker = "MARKER-%016x" % random.Random(seed).getrandbits(64)
    pcap = bridge_capture(cl, lan)
    load = r.load(cl, shows, clients=2, customer=marker)
    load.start()
    load.wait_accepted(10, "10 bookings by customer " + marker, 60 * SLOW)
    # Book on until the capture has the stated minimum size.
    wait_for("a capture of %d bytes on br0" % MIN_CAPTURE_BYTES,
             lambda: os.path.getsize(pcap) >= MIN_CAPTURE_BYTES, 300 * SLOW, step=0.2)
    load.finish()
    booked = load.count()

    def in_sniffer():
        return open(cl.dir + "/sniff.jsonl").read().count(marker) >= booked
    wait_for("the sniffer on host 3 seeing the marker %d times" % booked, in_sniffer,
             60 * SLOW)
    res = check_everything(cl, load, shows, None)
    cl.stop("tcpdump", signal.SIGINT)
    data = open(pcap, "rb").read()
    packets = pcap_packets(data)
    if len(data) < MIN_CAPTURE_BYTES or packets < MIN_CAPTURE_PACKETS:
        raise Fail("the capture is too small to tell: %d bytes, %d packets (at least %d "
                   "bytes and %d packets wanted)"
                   % (len(data), packets, MIN_CAPTURE_BYTES, MIN_CAPTURE_PACKETS))
    # The capture does hold the bus: CURVE greetings and MESSAGE commands
    # (each carries one encrypted ZeroMQ frame); no connection was plain.
    greetings = data.count(GREETING_CURVE)
    messages = data.count(b"\x07MESSAGE")
    if greetings == 0 or messages < booked:
        raise Fail("the capture holds %d CURVE greetings and %d MESSAGE commands for %d "
                   "bookings: not the bus traffic?" % (greetings, messages, booked))
    if GREETING_NULL in data:
        raise Fail("a plain (NULL mechanism) ZMTP greeting crossed the bridge")
    for needle in (marker.encode(), marker[len("MARKER-"):].encode()):
        if needle in data:
            raise Fail("%s is in the capture on br0 (%d bytes) under CURVE"
                       % (needle.decode(), len(data)))
    return ("customer=%s on %d bookings, seen decrypted by the sniffer on host 3, absent "
            "from a capture of %d packets (%d bytes; at least %d packets / %d bytes "
            "required) on br0 holding %d CURVE greetings, %d MESSAGE commands and no plain "
            "greeting; %s" % (marker, booked, packets, len(data), MIN_CAPTURE_PACKETS,
                              MIN_CAPTURE_BYTES, greetings, messages, describe(res)))


def case_curve_refused(r):
    """A client on host 3 whose key is in no allow-list: its sniff
    --from-start of both publishers prints nothing (no live event, no
    catch-up page) and says why; its calls to both services exit 8 at once
    and leave nothing in the logs; a plain client is refused too; both
    services log the refusal with host 3's address; no secret key is in
    any log. The allowed operator's load runs before and the common checks
    after."""
    lan = r.lan
    cl = setup(r, SHOWS, curve=True)
    shows = [s for s, _ in SHOWS]
    wait_live(cl, 30 * SLOW)
    load = r.load(cl, shows, clients=2)
    load.start()
    load.wait_accepted(20, "20 bookings by the operator", 60 * SLOW)
    load.finish()
    heads = {n: cl.status(n)[1].get("head", 0) for n in ("reservation", "booking")}
    intruder = cl.cert_new("intruder")
    icert = ["--cert", cl.keys + "/intruder_secret"]
    t_sniff = 5 * SLOW
    t0 = time.monotonic()
    p = run([cl.wrap[3], "sniff", "--follow", cl.res_follow, "--follow", cl.bk_follow, *icert,
             "--from-start", "--json", "--timeout", f"{t_sniff}s"], check=False)
    outputs = [p.stdout, p.stderr]
    if p.returncode != 1 or p.stdout != "":
        raise Fail("the intruder's sniff --from-start (%d + %d events in the logs): exit %d "
                   "(1 expected), %d bytes printed: %r"
                   % (heads["reservation"], heads["booking"], p.returncode, len(p.stdout),
                      p.stdout[:200]))
    if "allow-list" not in p.stderr:
        raise Fail("the intruder's sniff does not say why it got nothing: %r" % p.stderr[-400:])
    sniff_s = time.monotonic() - t0
    calls = []
    for name in ("reservation", "booking"):
        for argv in (["book", "show=s1", "seats=1", "customer=mallory",
                      "booking=mallory-" + name],
                     ["status"]):
            t0 = time.monotonic()
            p = run([cl.wrap[3], "call", cl.cmd_ep(name), *argv, "--json",
                     "--timeout", f"{20000}ms", *icert, "--server-key", cl.pubkey[name]],
                    check=False)
            took = time.monotonic() - t0
            outputs += [p.stdout, p.stderr]
            if p.returncode != 8 or "allow-list" not in p.stderr:
                raise Fail("the intruder's %s at %s: exit %d (8 expected) %r"
                           % (argv[0], name, p.returncode, p.stderr.strip()))
            if took > 10 * SLOW:
                raise Fail("the intruder's %s at %s refused only after %.1f s"
                           % (argv[0], name, took))
            calls.append(took)
        p = run([cl.wrap[3], "call", cl.cmd_ep(name), "status", "--timeout", "20000ms"],
                check=False)
        if p.returncode != 8 or "requires CURVE" not in p.stderr:
            raise Fail("a plain call to %s: exit %d %r" % (name, p.returncode, p.stderr))
    rc, cust = cl.call(3, "booking", "customer", "customer=mallory")
    if rc != 0 or cust.get("bookings"):
        raise Fail("the intruder's bookings: exit %d %s" % (rc, cust))

    def svc_log(name):
        with open("%s/%s.log" % (cl.dir, name)) as f:
            return f.read()

    def refusals(name):
        lines = [ln for ln in svc_log(name).splitlines()
                 if "refused client " + intruder in ln and "from " + lan.addr(3) in ln]
        return ([ln for ln in lines if ": publisher " in ln],
                [ln for ln in lines if "command socket" in ln])
    wait_for("both services logging the refusal of %s from %s (publisher and command "
             "socket)" % (intruder, lan.addr(3)),
             lambda: all(all(refusals(n)) for n in ("reservation", "booking")), 10 * SLOW)
    for name in ("reservation", "booking"):
        for peer in ("reservation", "booking", "operator"):
            if "refused client " + cl.pubkey[peer] in svc_log(name):
                raise Fail("%s refused %s, an allowed key" % (name, peer))
    res = check_everything(cl, load, shows, None)
    printed = "".join(outputs)
    for fn in os.listdir(cl.dir):
        if fn.endswith((".log", ".err")):
            with open(os.path.join(cl.dir, fn), errors="replace") as f:
                printed += f.read()
    for who in ("reservation", "booking", "operator", "intruder"):
        if cl.secret_key(who) in printed:
            raise Fail("%s's secret key is in a log or an output" % who)
    if "Sanitizer" in printed:  # ASan exits 1 too: the sniff's expected code
        raise Fail("a sanitizer report in a log or an output")
    line = refusals("reservation")[0][0]
    return ("intruder %s on host 3: sniff --from-start printed nothing in %.1f s (%d + %d "
            "events in the logs), 4 calls exit 8 in %.2f s at most, plain calls exit 8; "
            "reservation logged '%s'; %s"
            % (intruder[:8] + "...", sniff_s, heads["reservation"], heads["booking"],
               max(calls), line[line.index("refused"):], describe(res)))


def peers(cl, host):
    p = run([cl.wrap[host], "peers", "--iface", "eth0", "--port", str(BEACON_PORT), "--json",
             "--timeout", "2s"], check=False)
    try:
        return json.loads(p.stdout)
    except ValueError:
        return {}


def case_discovery(r):
    """Discovery (zbeacon) across the LAN, and through a cut: the services
    follow each other by name only (--follow-service), the sniffer on host 3
    follows both by name (--service), clients call them as @reservation and
    @booking; `evbus peers` on host 3 lists both with the endpoints they
    bound and their log ids. Host 2 is then cut off for 8 s as in partition:
    the feeds found by name come back, and the common checks hold."""
    lan = r.lan
    helptext = run([r.args[2], "--help"], check=False).stdout
    if "--follow-service" not in helptext or "--announce" not in helptext:
        raise NotBuilt("this build has no discovery (evbus-booking --help lacks "
                       "--follow-service/--announce)")
    t0 = time.monotonic()
    cl = setup(r, SHOWS, discovery=True)
    shows = [s for s, _ in SHOWS]
    wait_live(cl, 60 * SLOW)
    live_s = time.monotonic() - t0
    logs = {n: cl.status(n)[1]["log_id"] for n in ("reservation", "booking")}
    want = {n: ["tcp://%s:%d" % (lan.addr(cl.host_of[n]), p) for p in PORTS[n]]
            for n in ("reservation", "booking")}

    def found():
        got = {x.get("service"): x for x in peers(cl, 3).get("services", [])}
        for n, eps in want.items():
            x = got.get(n)
            lid = (x or {}).get("log_id") or "?"
            if x is None or [x.get("pub"), x.get("catchup"), x.get("cmd")] != eps \
                    or len(lid) < 8 or not logs[n].startswith(lid):
                return None
        return got
    got = wait_for("evbus peers on host 3 listing both services with their endpoints",
                   found, 30 * SLOW, step=0.2)
    say("evbus peers on host 3: " + "; ".join(
        "%s log %s at %s from %s" % (n, got[n]["log_id"][:8], got[n]["cmd"], got[n].get("from"))
        for n in sorted(want)))
    mon = r.monitor(cl)
    mon.mark_baseline()
    mon.start()
    load = r.load(cl, shows, clients=2, by_name=True)
    load.start()
    load.wait_accepted(10, "10 bookings through @booking", 120 * SLOW)
    load.booking_open.clear()
    lan.link_down(2)
    t_cut = time.monotonic()
    say("host 2 cut off for 8 s; the box office keeps calling @reservation")
    time.sleep(8.0)  # the fault itself
    lan.link_up(2)
    t_up = time.monotonic()
    wait_for("every feed found by name alive again after the cut",
             lambda: mon.track("reservation <- booking").revivals >= 1
             and mon.track("booking <- show").revivals >= 1 and mon.all_alive()
             and sniff_revived(cl, "booking"),
             60 * SLOW, step=0.1)
    back_s = time.monotonic() - t_up
    load.booking_open.set()
    load.wait_accepted(10, "10 bookings through @booking after the cut", 120 * SLOW)
    load.finish()
    res = check_everything(cl, load, shows, mon)
    tracks, parts = feeds_report(mon, cl)
    for key in ("reservation <- booking", "booking <- show", "sniff <- booking"):
        if tracks.get(key, FeedTrack()).revivals < 1:
            raise Fail("%s: never seen dead and back (%s)" % (key, "; ".join(parts)))
    say("feeds: " + "; ".join(parts))
    return ("both services found by name (feeds live %.1f s after the start, peers on host 3 "
            "agree with the bound endpoints and log ids); cut %.1f s, feeds found by name "
            "alive %.1f s after link-up, %d TCP reconnects; %s"
            % (live_s, t_up - t_cut, back_s, len(mon.new_conns(via=lan.addr(2))),
               describe(res)))


CASES = {"partition": case_partition, "flap": case_flap, "loss": case_loss,
         "host_lost": case_host_lost,
         "sniff_marker": case_sniff_marker, "discovery": case_discovery,
         "curve_marker": case_curve_marker, "curve_refused": case_curve_refused}


# ---------------------------------------------------------------- the main --

class Interrupted(Exception):
    pass


STOPPING = []


def on_signal(signum, frame):
    """The first SIGINT/SIGTERM/SIGHUP ends the case; later ones (a second
    Ctrl-C, a signal sent to the whole process group) must not interrupt
    the cleanup."""
    if not STOPPING:
        STOPPING.append(signum)
        raise Interrupted(signal.Signals(signum).name)


def on_alarm(signum, frame):
    raise Fail("the run's own deadline passed (EVB_LAN_TIMEOUT)")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--watchdog":
        watchdog(sys.argv[2])
        return 0
    if len(sys.argv) == 2 and sys.argv[1] == "--list":
        print("\n".join(CASES))
        return 0
    if len(sys.argv) != 5 or sys.argv[1] not in CASES:
        print(__doc__, file=sys.stderr)
        return 2
    case, args = sys.argv[1], sys.argv[2:]
    for p in args:
        if not os.access(p, os.X_OK):
            print("lan: FAIL: %s is not an executable" % p, file=sys.stderr)
            return 1
    ci = os.environ.get("CI") == "true"
    seed = int(os.environ.get("EVB_TEST_SEED", "0")) or random.randrange(1, 1 << 30)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(os.environ.get("EVB_LAN_TIMEOUT", "0")))
    lan = r = None
    t0 = time.monotonic()
    rc = 1
    failed = True
    try:
        if shutil.which("ip") is None:
            raise Skip("the ip program (iproute2) is not installed")
        if os.geteuid() != 0:
            raise Skip("not root: network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN")
        remove_stale()
        lan = Lan(3)
        lan.build()
        say("case %s, seed %d (EVB_TEST_SEED repeats it)%s"
            % (case, seed, ", sanitized build: deadlines x%d" % SLOW if SANITIZED else ""))
        r = Run(lan, args, seed)
        line = CASES[case](r)
        print("%s: OK %s (%.0f s)" % (case, line, time.monotonic() - t0), flush=True)
        rc = 0
        failed = False
    except Skip as e:
        if ci and os.geteuid() == 0 and not isinstance(e, NotBuilt):
            print("lan: FAIL: %s (CI=true as root: a skip is a failure)" % e, file=sys.stderr)
            rc = 1
        else:
            print("lan: SKIP: %s" % e, flush=True)
            rc = SKIP
            failed = False
    except Fail as e:
        print("lan: FAIL: %s: %s" % (case, e), file=sys.stderr, flush=True)
        rc = 1
    except (Interrupted, KeyboardInterrupt) as e:
        print("lan: interrupted (%s); cleaning up" % (e or "SIGINT"), file=sys.stderr)
        rc = 128 + int(STOPPING[0] if STOPPING else signal.SIGINT)
        failed = False
    except Exception:
        import traceback
        traceback.print_exc()
        rc = 1
    finally:
        signal.alarm(0)
        STOPPING.append(0)
        keep = failed or os.environ.get("EVB_LAN_KEEP") == "1"
        for ld in r.loads if r else []:
            ld.stop_ev.set()
        for mon in r.monitors if r else []:
            mon.halt.set()
            if mon.is_alive():
                mon.join(timeout=10)
        for cl in r.clusters if r else []:
            cl.close(keep)
        if lan is not None:
            lan.destroy()
            left = [ns for ns in ns_list() if ns.startswith(lan.tag + "-")]
            if left:
                print("lan: FAIL: namespaces left behind: %s" % left, file=sys.stderr)
                rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
