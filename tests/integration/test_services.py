#!/usr/bin/env python3
"""The reservation and booking services as real processes (ipc endpoints,
real LevelDB stores, SIGKILL), driven with `evbus call`.

usage: test_services.py CASE EVBUS RESERVATION BOOKING

Cases:
  concurrent   8 clients book one 100-seat show 1,000 times in total (and the
               box office holds seats meanwhile): never more than 100 seats
               taken, every confirmed booking holds its seats.
  kills        random SIGKILLs of either service during a booking run:
               afterwards the invariants hold, every booking is final.
  retry        a client whose call timed out retries the same command id and
               gets the first outcome: one booking, not two.
  rebuild      read models rebuilt from zero (--rebuild-views) answer the
               same as the live ones.
  bad          unknown commands, missing / wrong-typed fields, garbage bytes:
               a clear error, the service keeps serving, its log unchanged.
  expiry       with the reservation service down, bookings expire after the
               hold timeout; when it comes back the seats it then holds are
               released again.
EVB_TEST_SCALE multiplies the rounds and counts.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import booking_check  # noqa: E402

SCALE = max(1, int(os.environ.get("EVB_TEST_SCALE", "1")))
SANITIZED = os.environ.get("EVB_SANITIZED") == "1"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


class Cluster:
    """The two services in one scratch directory, ipc endpoints."""

    def __init__(self, evbus, res_bin, bk_bin, hold_timeout_ms=10000):
        base = os.environ.get("EVB_TEST_TMP") or tempfile.gettempdir()
        self.dir = tempfile.mkdtemp(prefix="svc-", dir=base)
        self.evbus, self.res_bin, self.bk_bin = evbus, res_bin, bk_bin
        self.hold_timeout_ms = hold_timeout_ms
        d = self.dir
        self.ep = {n: "ipc://%s/%s" % (d, n) for n in
                   ("res.pub", "res.cu", "res.cmd", "bk.pub", "bk.cu", "bk.cmd")}
        self.res_cmd, self.bk_cmd = self.ep["res.cmd"], self.ep["bk.cmd"]
        self.procs = {}
        self.caller = booking_check.Caller(evbus, timeout_ms=5000)

    def args(self, name, extra=()):
        e = self.ep
        if name == "reservation":
            return [self.res_bin, "--store", self.dir + "/res", "--pub", e["res.pub"],
                    "--catchup", e["res.cu"], "--cmd", e["res.cmd"],
                    "--follow", e["bk.pub"] + "," + e["bk.cu"], *extra]
        return [self.bk_bin, "--store", self.dir + "/bk", "--pub", e["bk.pub"],
                "--catchup", e["bk.cu"], "--cmd", e["bk.cmd"],
                "--follow", e["res.pub"] + "," + e["res.cu"],
                "--hold-timeout", str(self.hold_timeout_ms), *extra]

    def start(self, name, extra=()):
        log = open("%s/%s.log" % (self.dir, name), "a")
        self.procs[name] = subprocess.Popen(self.args(name, extra), stdout=log, stderr=log)
        ep = self.res_cmd if name == "reservation" else self.bk_cmd
        deadline = time.monotonic() + 30
        while True:
            rc, _ = self.caller.call(ep, "status")
            if rc == 0:
                return
            if self.procs[name].poll() is not None:
                fail("%s exited with %d at start (log %s/%s.log)"
                     % (name, self.procs[name].returncode, self.dir, name))
            if time.monotonic() > deadline:
                fail("%s does not answer status" % name)
            time.sleep(0.05)

    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs.pop(name, None)
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            p.wait(timeout=30)
        return p

    def stop(self, name):
        p = self.kill(name, signal.SIGTERM)
        if p is not None and p.returncode != 0:
            fail("%s stopped with exit code %d on SIGTERM" % (name, p.returncode))

    def call(self, ep, command, *args):
        return self.caller.call(ep, command, *args)

    def check(self, shows, wait_s=90):
        problems, summary = booking_check.check(self.evbus, self.res_cmd, self.bk_cmd,
                                                shows, wait_s)
        if problems:
            fail("%d invariant problems (first: %s); logs in %s"
                 % (len(problems), problems[0], self.dir))
        return summary

    def close(self, keep=False):
        for n in list(self.procs):
            self.kill(n)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def run_clients(cl, n_clients, total, make_args, on_result=None):
    """n_clients threads, each sending its share of `total` book commands."""
    results = []
    lock = threading.Lock()

    def worker(k):
        for i in range(k, total, n_clients):
            rc, body = cl.call(cl.bk_cmd, "book", *make_args(i))
            with lock:
                results.append((i, rc, body))
                if on_result:
                    on_result(i, rc, body)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def case_concurrent(cl):
    cl.start("reservation")
    cl.start("booking")
    rc, _ = cl.call(cl.res_cmd, "create_show", "show=big", "capacity=100")
    if rc != 0:
        fail("create_show: exit %d" % rc)
    total = 1000 * SCALE if not SANITIZED else 300
    box = {"held": 0, "refused": 0}

    def box_office():
        # The box office competes for the same seats.
        for i in range(40):
            rc, body = cl.call(cl.res_cmd, "hold", "show=big", "seats=1",
                               "booking=box%d" % i)
            box["held" if rc == 0 else "refused"] += 1
            if rc not in (0, 5):
                fail("box office hold: exit %d %s" % (rc, body))

    t = threading.Thread(target=box_office)
    t.start()
    results = run_clients(cl, 8, total, lambda i: ["show=big", "seats=1",
                                                   "customer=c%d" % (i % 37),
                                                   "booking=k%d" % i])
    t.join()
    bad = [r for r in results if r[1] != 0]
    if bad:
        fail("%d book calls failed, first: %s" % (len(bad), bad[0]))
    summary = cl.check(["big"])
    confirmed = summary["by_status"].get("confirmed", 0)
    seats = summary["seats"]
    if seats["reserved"] + seats["held"] > 100:
        fail("oversold: %s" % seats)
    if confirmed + box["held"] != 100:
        fail("%d confirmed + %d box office holds should fill the 100 seats (%s)"
             % (confirmed, box["held"], summary))
    if summary["bookings"] != total:
        fail("%d bookings in the read model, %d were sent" % (summary["bookings"], total))
    print("concurrent: %d bookings, %d confirmed, %d box-office holds, %s"
          % (total, confirmed, box["held"], summary["by_status"]))


def case_kills(cl):
    cl.start("reservation")
    cl.start("booking")
    shows = ["k1", "k2", "k3"]
    for s in shows:
        rc, _ = cl.call(cl.res_cmd, "create_show", "show=" + s, "capacity=50")
        if rc != 0:
            fail("create_show %s: %d" % (s, rc))
    rng = random.Random(int(os.environ.get("EVB_TEST_SEED", "0")) or None)
    stop = threading.Event()
    sent = {"ok": 0, "unreachable": 0, "other": 0}
    ids = []
    lock = threading.Lock()

    def client(k):
        i = 0
        while not stop.is_set():
            bid = "c%dn%d" % (k, i)
            i += 1
            # --retries: a timed-out call is sent again with the same cmd_id.
            rc, body = cl.call(cl.bk_cmd, "book", "show=" + rng.choice(shows),
                               "seats=%d" % rng.randint(1, 4), "customer=u%d" % k,
                               "booking=" + bid)
            with lock:
                if rc == 0:
                    sent["ok"] += 1
                    ids.append(bid)
                elif rc == 7:
                    sent["unreachable"] += 1
                else:
                    sent["other"] += 1
            if rc == 0 and rng.random() < 0.2:
                cl.call(cl.bk_cmd, "cancel", "booking=" + bid)
            if rc == 7:
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    kills = 0
    rounds = 6 * SCALE
    for _ in range(rounds):
        time.sleep(rng.uniform(0.3, 1.0))
        victim = rng.choice(["reservation", "booking"])
        cl.kill(victim)
        kills += 1
        time.sleep(rng.uniform(0.0, 0.3))
        cl.start(victim)
    stop.set()
    for t in threads:
        t.join()
    if sent["other"]:
        fail("calls failed with other errors: %s" % sent)
    summary = cl.check(shows, wait_s=120)
    # Every accepted booking is in the read model (nothing lost).
    rc, cust = cl.call(cl.bk_cmd, "customer")
    known = {b["booking"] for b in cust["bookings"]}
    missing = [b for b in ids if b not in known]
    if missing:
        fail("%d accepted bookings missing after the kills, e.g. %s" % (len(missing),
                                                                      missing[:3]))
    if summary["bookings"] == 0:
        fail("no booking went through")
    print("kills: %d SIGKILLs, calls %s, %s" % (kills, sent, summary["by_status"]))


def case_retry(cl):
    cl.start("reservation")
    cl.start("booking")
    cl.call(cl.res_cmd, "create_show", "show=r", "capacity=10")
    # Freeze the booking service so the first call times out while its
    # request waits in the socket; then let it run and retry the same id.
    p = cl.procs["booking"]
    p.send_signal(signal.SIGSTOP)
    try:
        t0 = subprocess.run([cl.evbus, "call", cl.bk_cmd, "book", "show=r", "seats=2",
                             "customer=rita", "--id", "retry-1", "--timeout", "300",
                             "--json"], capture_output=True, text=True)
    finally:
        p.send_signal(signal.SIGCONT)
    if t0.returncode != 7:
        fail("the call to a stopped service should time out (exit 7), got %d: %s"
             % (t0.returncode, t0.stderr))
    rc, body = cl.call(cl.bk_cmd, "book", "show=r", "seats=2", "customer=rita",
                       "--id", "retry-1")
    if rc != 0 or body.get("booking") != "retry-1":
        fail("retry: exit %d %s" % (rc, body))
    rc2, body2 = cl.call(cl.bk_cmd, "book", "show=r", "seats=2", "customer=rita",
                         "--id", "retry-1")
    if rc2 != 0 or body2 != body:
        fail("a second retry answered differently: %s vs %s" % (body2, body))
    # The same id for another command is refused clearly.
    rc3, body3 = cl.call(cl.bk_cmd, "cancel", "booking=retry-1", "--id", "retry-1")
    if rc3 != 6 or "already used" not in body3.get("message", ""):
        fail("cmd_id reused for another command: exit %d %s" % (rc3, body3))
    cl.check(["r"])
    rc, cust = cl.call(cl.bk_cmd, "customer", "customer=rita")
    if len(cust["bookings"]) != 1:
        fail("rita has %d bookings after a retried command, not 1: %s"
             % (len(cust["bookings"]), cust))
    rc, s = cl.call(cl.res_cmd, "show", "show=r")
    if s["reserved"] != 2:
        fail("show r: %d seats reserved, 2 expected" % s["reserved"])
    # A rejected command's outcome is remembered too.
    rc_a, _ = cl.call(cl.bk_cmd, "book", "show=nope", "seats=1", "customer=x", "--id", "r3")
    rc_b, _ = cl.call(cl.bk_cmd, "book", "show=nope", "seats=1", "customer=x", "--id", "r3")
    if (rc_a, rc_b) != (0, 0):
        fail("book on an unknown show (answered later as rejected): %d %d" % (rc_a, rc_b))
    rc4, b4 = cl.call(cl.res_cmd, "hold", "show=r", "seats=100", "--id", "h1")
    rc5, b5 = cl.call(cl.res_cmd, "hold", "show=r", "seats=100", "--id", "h1")
    if rc4 != 5 or rc5 != 5 or b4.get("message") != b5.get("message"):
        fail("a rejected hold retried: %d %s / %d %s" % (rc4, b4, rc5, b5))
    print("retry: one booking for a retried command id; rejections remembered")


def case_rebuild(cl):
    cl.start("reservation")
    cl.start("booking")
    shows = ["v1", "v2"]
    for s in shows:
        cl.call(cl.res_cmd, "create_show", "show=" + s, "capacity=30")
    run_clients(cl, 4, 80 * SCALE, lambda i: ["show=" + shows[i % 2], "seats=%d" % (1 + i % 3),
                                              "customer=p%d" % (i % 5), "booking=v%d" % i])
    for i in range(0, 80 * SCALE, 7):
        cl.call(cl.bk_cmd, "cancel", "booking=v%d" % i)
    cl.check(shows)

    def views():
        _, a = cl.call(cl.res_cmd, "availability")
        _, b = cl.call(cl.bk_cmd, "customer")
        for x in a["shows"]:
            x.pop("version", None)
        return (sorted(json.dumps(x, sort_keys=True) for x in a["shows"]),
                sorted(json.dumps(x, sort_keys=True) for x in b["bookings"]))

    live = views()
    for n in ("reservation", "booking"):
        cl.stop(n)
    for n in ("reservation", "booking"):
        cl.start(n, ["--rebuild-views"])
    cl.check(shows)
    rebuilt = views()
    if rebuilt != live:
        fail("rebuilt read models differ from the live ones:\n%s\n%s" % (live, rebuilt))
    if not live[0] or not live[1]:
        fail("empty read models")
    print("rebuild: %d shows and %d bookings identical after --rebuild-views"
          % (len(live[0]), len(live[1])))


def case_bad(cl):
    cl.start("reservation")
    cl.start("booking")
    cl.call(cl.res_cmd, "create_show", "show=b", "capacity=5")
    cl.check(["b"])
    _, st0 = cl.call(cl.bk_cmd, "status")
    _, rs0 = cl.call(cl.res_cmd, "status")
    cases = [
        (cl.bk_cmd, ["launch_rocket"], 6, "unknown command"),
        (cl.bk_cmd, ["book", "show=b", "seats=1"], 6, "customer: missing"),
        (cl.bk_cmd, ["book", "show=b", "seats=many", "customer=x"], 6, "seats"),
        (cl.bk_cmd, ["book", "show=b", "seats=0", "customer=x"], 6, "seats"),
        (cl.bk_cmd, ["book", "show=b/../x", "seats=1", "customer=x"], 6, "show"),
        (cl.bk_cmd, ["book", "show:=[1,2]", "seats=1", "customer=x"], 6, "show"),
        (cl.bk_cmd, ["cancel"], 6, "booking: missing"),
        (cl.bk_cmd, ["cancel", "booking=nobody"], 4, "does not exist"),
        (cl.res_cmd, ["create_show", "show=b2", "capacity=-3"], 6, "capacity"),
        (cl.res_cmd, ["create_show", "show=b2"], 6, "capacity: missing"),
        (cl.res_cmd, ["hold", "show=b", "seats=9"], 5, "seats free"),
        (cl.res_cmd, ["release", "show=b", "booking=zz"], 5, "nothing to release"),
    ]
    for ep, args, want, text in cases:
        p = subprocess.run([cl.evbus, "call", ep, *args, "--json"], capture_output=True,
                           text=True)
        if p.returncode != want:
            fail("%s: exit %d, expected %d (%s)" % (args, p.returncode, want, p.stderr))
        body = json.loads(p.stdout)
        if text not in body.get("message", ""):
            fail("%s: message %r does not mention %r" % (args, body.get("message"), text))
    # Garbage bytes on the command socket (a raw ZeroMQ DEALER).
    garbage = os.environ.get("EVB_BUS_GARBAGE")
    if garbage and os.path.exists(garbage):
        for ep in (cl.bk_cmd, cl.res_cmd):
            p = subprocess.run([garbage, "router", ep, "50"], capture_output=True, text=True,
                               timeout=120)
            if p.returncode != 0:
                fail("bus_garbage against %s: %d %s" % (ep, p.returncode, p.stderr))
    _, st1 = cl.call(cl.bk_cmd, "status")
    _, rs1 = cl.call(cl.res_cmd, "status")
    if st1.get("head") != st0.get("head") or rs1.get("head") != rs0.get("head"):
        fail("bad commands changed a log: booking %s -> %s, reservation %s -> %s"
             % (st0.get("head"), st1.get("head"), rs0.get("head"), rs1.get("head")))
    # Still serving.
    rc, body = cl.call(cl.bk_cmd, "book", "show=b", "seats=2", "customer=ok")
    if rc != 0:
        fail("not serving after bad input: %d %s" % (rc, body))
    cl.check(["b"])
    # Bad configuration: clear message, exit 2.
    p = subprocess.run([cl.bk_bin, "--store", cl.dir + "/x", "--cmd", "ipc://x",
                        "--sync", "sometimes"], capture_output=True, text=True)
    if p.returncode != 2 or "--sync" not in p.stderr:
        fail("bad --sync: exit %d %r" % (p.returncode, p.stderr))
    p = subprocess.run([cl.bk_bin, "--cmd", "ipc://x"], capture_output=True, text=True)
    if p.returncode != 2 or "--store" not in p.stderr:
        fail("missing --store: exit %d %r" % (p.returncode, p.stderr))
    p = subprocess.run([cl.bk_bin, "--store", cl.dir + "/bk", "--cmd", "ipc://x"],
                       capture_output=True, text=True)
    if p.returncode != 3 or "in use" not in p.stderr:
        fail("store held by the running service: exit %d %r" % (p.returncode, p.stderr))
    print("bad: %d bad requests answered clearly, logs unchanged, still serving"
          % len(cases))


def case_expiry(cl):
    cl.hold_timeout_ms = 800
    cl.start("reservation")
    cl.start("booking")
    cl.call(cl.res_cmd, "create_show", "show=e", "capacity=10")
    cl.check(["e"])
    cl.kill("reservation")
    for i in range(3):
        rc, _ = cl.call(cl.bk_cmd, "book", "show=e", "seats=3", "customer=eve",
                        "booking=e%d" % i)
        if rc != 0:
            fail("book while reservation is down: %d" % rc)
    # Restart booking too: the deadlines must come back from its log.
    cl.kill("booking")
    cl.start("booking")
    deadline = time.monotonic() + 30
    while True:
        _, cust = cl.call(cl.bk_cmd, "customer", "customer=eve")
        st = [b["status"] for b in cust.get("bookings", [])]
        if st and all(s == "expired" for s in st):
            break
        if time.monotonic() > deadline:
            fail("bookings did not expire: %s" % st)
        time.sleep(0.1)
    cl.start("reservation")
    summary = cl.check(["e"])
    if summary["seats"]["available"] != 10:
        fail("expired bookings left seats taken: %s" % summary["seats"])
    _, h = cl.call(cl.res_cmd, "holds", "show=e")
    states = sorted(x["state"] for x in h["holds"])
    if states != ["released"] * 3:
        fail("holds after expiry: %s (held late, then released, expected)" % states)
    print("expiry: 3 bookings expired while reservation was down; its late holds released")


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    case, evbus, res_bin, bk_bin = sys.argv[1:]
    fn = globals().get("case_" + case)
    if fn is None:
        fail("unknown case " + case)
    cl = Cluster(evbus, res_bin, bk_bin)
    ok = False
    try:
        fn(cl)
        ok = True
    finally:
        cl.close(keep=not ok)


if __name__ == "__main__":
    main()
