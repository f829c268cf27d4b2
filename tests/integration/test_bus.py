#!/usr/bin/env python3
"""Bus integration tests: real processes over ipc:// sockets.

    test_bus.py CASE EVBUS BUS_PUB BUS_GARBAGE

CASE is one of: late_joiner, slow_subscriber, garbage, pub_kill, mirror_kill,
append_cli, append_signal, garbage_hitrun, crash_points, two_publishers, catchup_memory,
disk_full. The publisher is bus_pub (appends and publishes, killable); the
subscriber is `evbus mirror`, whose copy is compared with the publisher's log
through `evbus log cat --json` once both are stopped (a log is opened by one
process at a time). No sleep is used to wait for something: every wait polls
a condition (a line on a child's stdout, a status line) with a deadline.
EVB_TEST_SCALE scales round counts; EVB_TEST_TMP is the scratch directory.
"""
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import Fail, check  # noqa: E402
import evbtest  # noqa: E402

CASE, EVBUS, BUS_PUB, GARBAGE = sys.argv[1:5]
SCALE = float(os.environ.get("EVB_TEST_SCALE", "1") or "1")
SEED = int(os.environ.get("EVB_TEST_SEED", str(int(time.time()))))
rng = random.Random(SEED)
CATS3 = ["show", "showtime", "booking"]
# A payload {"b": "x" * 1100000}: its msgpack is 1 + 2 + 5 + 1100000 bytes.
BIG_MSG = ("append to big-1, event 0: payload: 1100008 bytes, over the limit of 1044480 "
           "for payload and metadata")
log = evbtest.logger(CASE)


class Proc(evbtest.Proc):
    """A child whose stdout lines are read by a thread into a queue."""

    def __init__(self, argv, stdin=False, name=None, env=None):
        self.lines = queue.Queue()
        super().__init__(argv, stdin=stdin, env=env, name=name)

    def _out_line(self, line):
        self.lines.put(line)

    def wait_line(self, pred, timeout, what):
        """Consume stdout lines until pred(line) is true; return that line."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail(f"{self.name}: timed out after {timeout}s waiting for {what}; "
                           f"stderr: {self.stderr()[-2000:]}")
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                self.p.wait()
                raise Fail(f"{self.name} exited ({self.p.returncode}) while waiting for "
                           f"{what}; stderr: {self.stderr()[-2000:]}")
            if pred(line):
                return line

    def send(self, text):
        self.p.stdin.write(text)
        self.p.stdin.flush()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.join(10)

    def term(self, timeout=30):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise Fail(f"{self.name} did not stop within {timeout}s of SIGTERM")
        self.join(10)
        return rc

    def drain(self):
        out = []
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return out
            if line is not None:
                out.append(line)


class Env(evbtest.Scratch):
    def __init__(self):
        super().__init__(f"bus_{CASE}_", "evbt_")
        self.procs = []

    def start(self, argv, stdin=False, name=None, env=None):
        p = Proc(argv, stdin=stdin, name=name, env=env)
        self.procs.append(p)
        return p

    def cleanup(self, ok):
        for p in self.procs:
            p.kill()
        for m in getattr(self, "mounts", []):
            subprocess.run(["umount", m], capture_output=True)
        self.remove(ok, log)


# ---- helpers ----

def start_pub(env, d, count, batch=100, cats=CATS3, extra=(), pub="pub", cu="cu",
              penv=None):
    p = env.start([BUS_PUB, d, env.ep(pub), env.ep(cu), str(count), str(batch),
                   ",".join(cats), *extra], stdin=True, name="bus_pub", env=penv)
    p.ready_head = int(p.wait_line(lambda l: l.startswith("ready"), 30, "ready").split()[1])
    return p


def wait_done(p, timeout):
    line = p.wait_line(lambda l: l.startswith("done"), timeout, "done")
    return int(line.split()[1])


def mirror_argv(env, d, cats, pub="pub", cu="cu", extra=()):
    a = [EVBUS, "mirror", "--follow", f"{env.ep(pub)},{env.ep(cu)}", "--store", d]
    for c in cats:
        a += ["--category", c]
    return a + list(extra)


def status_lines(lines):
    return [json.loads(l) for l in lines if l.startswith("{")]


def wait_status(p, pred, timeout, what):
    """Read status-every JSON lines (one per feed, repeated) until pred(feeds)
    holds for a complete set; feeds is {category: status}."""
    feeds = {}
    deadline = time.monotonic() + timeout

    def ok(line):
        if not line.startswith("{"):
            return False
        s = json.loads(line)
        feeds[s["category"]] = s
        return pred(feeds)

    p.wait_line(ok, max(1, deadline - time.monotonic()), what)
    return feeds


def caught_up_at(n, cats):
    def pred(feeds):
        return (set(feeds) == set(cats) and
                all(f["state"] == "live" and f["lag"] == 0 and f["applied"] >= n and
                    f["head"] >= n for f in feeds.values()))
    return pred


def cat_json(d, category=None):
    a = [EVBUS, "log", "cat", "--json", d]
    if category:
        a += ["--category", category]
    r = subprocess.run(a, capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, f"log cat {d} exited {r.returncode}: {r.stderr}")
    return [json.loads(l) for l in r.stdout.splitlines()]


def compare(src_dir, mirror_dir, cats, same_ids=True):
    """The mirror holds exactly the source's events of cats: same ids in the
    same order per category, each once, origin = source position. With
    same_ids False (a mirror run with --fresh-ids) the copies have new ids,
    so an event applied twice would be there twice: origins must be unique."""
    src = cat_json(src_dir)
    mir = cat_json(mirror_dir)
    check([e["seq"] for e in src] == list(range(1, len(src) + 1)),
          "source log is not contiguous")
    want = [e for e in src if e["category"] in cats]
    log_id = src[0]["log_id"] if src else None
    ids = [e["id"] for e in mir]
    check(len(ids) == len(set(ids)), "mirror holds an id twice")
    origins = [e.get("origin_seq") for e in mir]
    check(len(origins) == len(set(origins)), "mirror holds an origin_seq twice")
    extra = {e["category"] for e in mir} - set(cats)
    check(not extra, f"mirror holds categories it did not follow: {sorted(extra)}")
    for c in cats:
        s = [e for e in want if e["category"] == c]
        m = [e for e in mir if e["category"] == c]
        check(len(s) == len(m), f"category {c}: source has {len(s)} events, mirror {len(m)}")
        for a, b in zip(s, m):
            if (a["id"] if same_ids else None, a["seq"], log_id, a["stream"], a["type"],
                a["payload"], a["ts_us"]) != \
               (b["id"] if same_ids else None, b.get("origin_seq"), b.get("origin_log_id"),
                    b["stream"], b["type"], b["payload"], b["ts_us"]):
                raise Fail(f"category {c}: source seq {a['seq']} differs from mirror seq "
                           f"{b['seq']}:\n  {a}\n  {b}")
    check(len(mir) == len(want), f"mirror has {len(mir)} events, want {len(want)}")
    return len(want)


def start_serve(env, argv):
    """`evbus serve` with argv, once it has said it serves."""
    srv = env.start([EVBUS, "serve", *argv], name="serve")
    deadline = time.monotonic() + 20
    while not any("evbus serve: serving" in l for l in srv.err):
        check(time.monotonic() < deadline and srv.p.poll() is None,
              f"serve did not start: {srv.stderr()}")
        time.sleep(0.05)
    return srv


def run(argv, timeout, **kw):
    return evbtest.run(argv, timeout, **kw)


# ---- cases ----

def case_late_joiner(env):
    n = 200000
    d, m = env.path("pub"), env.path("mirror")
    t0 = time.monotonic()
    pub = start_pub(env, d, n, batch=100)
    check(wait_done(pub, 120) == n, "bus_pub did not reach its count")
    log(f"published {n} events in {time.monotonic() - t0:.1f}s")
    t0 = time.monotonic()
    r = run(mirror_argv(env, m, ["show", "booking"],
                        extra=["--until-caught-up", "--timeout", "120s", "--stats-json"]), 180)
    check(r.returncode == 0, f"mirror exited {r.returncode}: {r.stderr}")
    st = status_lines(r.stdout.splitlines())
    log(f"mirror caught up in {time.monotonic() - t0:.1f}s: {st}")
    check(all(s["applied"] == n and s["state"] == "live" for s in st) and len(st) == 2,
          f"final status: {st}")
    check(pub.term() == 0, "bus_pub did not exit 0 on SIGTERM")
    got = compare(d, m, ["show", "booking"])
    check(sum(s["applied_events"] for s in st) == got, "applied_events != events copied")
    log(f"mirror equals source ({got} events of show+booking, none of showtime)")

    # Live: the mirror runs, then the publisher appends more.
    more = 20000
    pub = start_pub(env, d, n + more, batch=100, extra=["--go-on-stdin"])
    mir = env.start(mirror_argv(env, m, ["show", "booking"],
                                extra=["--status-every", "100ms", "--stats-json"]),
                    name="mirror")
    wait_status(mir, caught_up_at(n, ["show", "booking"]), 60, "mirror live at the head")
    pub.send("go\n")
    check(wait_done(pub, 120) == n + more, "bus_pub did not reach its count")
    wait_status(mir, caught_up_at(n + more, ["show", "booking"]), 60,
                "mirror live at the new head")
    check(mir.term() == 0, "mirror did not exit 0 on SIGTERM")
    final = [s for s in status_lines(mir.drain()) if s["final"]]
    check(pub.term() == 0, "bus_pub did not exit 0 on SIGTERM")
    got2 = compare(d, m, ["show", "booking"])
    check(sum(s["applied_events"] for s in final) == got2 - got,
          f"live run applied {sum(s['applied_events'] for s in final)} events, "
          f"want {got2 - got}: {final}")
    log(f"live: {got2 - got} more events, each once; final {final}")


def case_slow_subscriber(env):
    n = int(100000 * max(SCALE, 0.2))
    d, m = env.path("pub"), env.path("mirror")
    pub = start_pub(env, d, n, batch=1000, extra=["--go-on-stdin", "--sndhwm", "100"])
    mir = env.start(mirror_argv(env, m, CATS3, extra=["--rcvhwm", "100", "--status-every",
                                                      "200ms", "--stats-json"]), name="mirror")
    wait_status(mir, lambda f: set(f) == set(CATS3) and
                all(s["log_id"] != "0" * 32 for s in f.values()), 30, "mirror connected")
    pub.send("go\n")
    check(wait_done(pub, 120) == n, "bus_pub did not reach its count")
    wait_status(mir, caught_up_at(n, CATS3), 120, "mirror caught up after the flood")
    check(mir.term() == 0, "mirror did not exit 0 on SIGTERM")
    final = [s for s in status_lines(mir.drain()) if s["final"]]
    check(pub.term() == 0, "bus_pub did not exit 0 on SIGTERM")
    gaps = sum(s["gaps"] for s in final)
    pages = sum(s["pages"] for s in final)
    log(f"final: {final}")
    check(gaps > 0, f"no gap was detected (gaps={gaps}): the test proved nothing; "
                    "tune --sndhwm/--rcvhwm/count")
    check(pages > 0, "gaps but no catch-up page fetched")
    got = compare(d, m, CATS3)
    check(sum(s["applied_events"] for s in final) == got, "applied_events != events copied")
    check(sum(s["duplicates"] for s in final) >= 0, "")
    log(f"{got} events once each; {gaps} gaps filled with {pages} pages")


def case_garbage(env):
    n = 5000
    d = env.path("pub")
    pub = start_pub(env, d, n, batch=50)
    wait_done(pub, 60)
    r = run([GARBAGE, "router", env.ep("cu"), str(int(50 * max(SCALE, 0.2)))], 60)
    log(f"router garbage: {r.stdout.strip()!r}")
    check(r.returncode == 0, f"bus_garbage router: {r.returncode} {r.stdout} {r.stderr}")
    check(pub.p.poll() is None, "publisher died from garbage")
    # The publisher still serves: a fresh mirror catches up.
    m1 = env.path("mirror1")
    r = run(mirror_argv(env, m1, ["show", "booking"],
                        extra=["--until-caught-up", "--timeout", "60s"]), 90)
    check(r.returncode == 0, f"mirror after garbage exited {r.returncode}: {r.stderr}")
    # Garbage on the SUB side: follow a garbage PUB with the real catch-up.
    g = env.start([GARBAGE, "pub", env.ep("gpub")], name="bus_garbage")
    g.wait_line(lambda l: l == "ready", 10, "ready")
    m2 = env.path("mirror2")
    mir = env.start(mirror_argv(env, m2, ["show", "booking"], pub="gpub",
                                extra=["--status-every", "100ms", "--stats-json"]),
                    name="mirror")
    wait_status(mir, lambda f: caught_up_at(n, ["show", "booking"])(f) and
                all(s["bad_frames"] > 0 for s in f.values()), 60,
                "mirror caught up while counting bad frames")
    check(mir.term() == 0, "mirror did not exit 0 on SIGTERM")
    final = [s for s in status_lines(mir.drain()) if s["final"]]
    log(f"final: {final}")
    check(g.term() == 0, "bus_garbage pub did not stop")
    check(pub.term() == 0, "bus_pub did not exit 0 on SIGTERM after garbage")
    check("bad catch-up request" in pub.stderr(),
          "publisher did not log the bad requests")
    got = compare(d, m2, ["show", "booking"])
    check(sum(s["applied_events"] for s in final) == got, "applied_events != copied")
    compare(d, m1, ["show", "booking"])
    log(f"garbage counted ({final[0]['bad_frames']} bad frames); {got} real events applied")


def case_pub_kill(env):
    rounds = max(2, int(20 * SCALE))
    per = 3000
    d, m = env.path("pub"), env.path("mirror")
    mir = env.start(mirror_argv(env, m, CATS3, extra=["--status-every", "100ms",
                                                      "--stats-json"]), name="mirror")
    head = 0
    for r in range(rounds):
        sync = ["none", "group", "every"][r % 3]
        target = (r + 1) * per
        p = start_pub(env, d, target, batch=rng.choice([1, 10, 100]), extra=["--sync", sync])
        start = p.ready_head
        check(start >= head, f"publisher restarted at head {start}, below {head}")
        kill_at = start + rng.randint(0, per)
        if kill_at > start:
            p.wait_line(lambda l: l.startswith(("appended", "done")) and
                        int(l.split()[1]) >= kill_at, 60, f"appended >= {kill_at}")
        p.kill()
        last = [l for l in p.drain() if l.startswith("appended")]
        head = max(head, int(last[-1].split()[1]) if last else kill_at)
        log(f"round {r + 1}/{rounds}: sync {sync}, killed at >= {kill_at}")
    final_n = rounds * per
    p = start_pub(env, d, final_n, batch=100)
    check(wait_done(p, 120) == final_n, "bus_pub did not reach its count")
    wait_status(mir, caught_up_at(final_n, CATS3), 120, "mirror caught up after the kills")
    check(mir.term() == 0, "mirror did not exit 0 on SIGTERM")
    final = [s for s in status_lines(mir.drain()) if s["final"]]
    check(p.term() == 0, "bus_pub did not exit 0")
    got = compare(d, m, CATS3)
    check(got == final_n, f"mirror has {got} events, publisher {final_n}")
    check(sum(s["applied_events"] for s in final) == got, "applied_events != copied")
    log(f"{rounds} publisher kills; mirror equals the publisher's {got} events: {final}")


def case_mirror_kill(env):
    rounds = max(2, int(20 * SCALE))
    per = 3000
    d, m = env.path("pub"), env.path("mirror")
    pub = start_pub(env, d, 0, batch=50, extra=["--go-on-stdin"])
    pub.send("go\n")
    for r in range(rounds):
        pub.send(f"more {per}\n")
        mir = env.start(mirror_argv(env, m, CATS3, extra=["--status-every", "20ms",
                                                          "--fresh-ids"]),
                        name="mirror")
        # Kill after a random number of events applied this run (or at once).
        want = rng.randint(0, per)
        if want > 0:
            try:
                wait_status(mir, lambda f: len(f) == 3 and
                            sum(s["applied_events"] for s in f.values()) >= want, 60,
                            f"{want} events applied")
            except Fail:
                if mir.p.poll() is not None:
                    raise
        # A random kill instant: after 0..3 more status lines (20 ms apart).
        extra = rng.randint(0, 3)
        for _ in range(extra):
            try:
                mir.wait_line(lambda l: l.startswith("{"), 5, "a status line")
            except Fail:
                break
        mir.kill()
        log(f"round {r + 1}/{rounds}: mirror killed after >= {want} events")
    total = rounds * per
    pub.wait_line(lambda l: l == f"done {total}", 120, f"done {total}")
    r = run(mirror_argv(env, m, CATS3, extra=["--until-caught-up", "--timeout", "120s",
                                              "--stats-json", "--fresh-ids"]), 180)
    check(r.returncode == 0, f"final mirror exited {r.returncode}: {r.stderr}")
    check(pub.term() == 0, "bus_pub did not exit 0")
    got = compare(d, m, CATS3, same_ids=False)
    check(got == total, f"mirror has {got} events, publisher {total}")
    head = json.loads(run([EVBUS, "log", "info", "--json", m], 60).stdout)["head"]
    check(head == total, f"mirror head {head} != {total} source events")
    log(f"{rounds} mirror kills; mirror equals source ({got} events, each origin once)")


def case_crash_points(env):
    """Deterministic crash points: the publisher dies between making events
    durable and sending them, and in the middle of a catch-up page; the
    mirror dies after its handler and before its commit, and right after a
    commit. Each process must die by its own SIGKILL (the point was hit);
    after restarts the mirror equals the source."""
    rounds = max(1, int(3 * SCALE))
    d, m = env.path("pub"), env.path("mirror")
    total = 0
    for point in ["pub.before_send", "pub.mid_page"] * rounds:
        total += 4000
        if point == "pub.mid_page":
            # A mirror that starts behind makes the publisher serve pages.
            p = start_pub(env, d, total - 2000, batch=100)
            wait_done(p, 60)
            check(p.term() == 0, "bus_pub did not exit 0")
        # Every append is a point hit for before_send; the first page that
        # holds events is one for mid_page.
        after = str(rng.randint(1, 20) if point == "pub.before_send" else 1)
        p = start_pub(env, d, total, batch=100,
                      penv={"EVB_CRASH_POINT": point, "EVB_CRASH_AFTER": after})
        mir = env.start(mirror_argv(env, m, CATS3, extra=["--status-every", "50ms"]),
                        name="mirror")
        rc = p.p.wait(timeout=120)
        check(rc == -9, f"publisher with {point}:{after} exited {rc}, not by SIGKILL")
        mir.wait_line(lambda l: l.startswith("{"), 30, "mirror status")
        check(mir.term() == 0, "mirror did not exit 0 on SIGTERM")
        log(f"publisher died at {point} (hit {after})")
    p = start_pub(env, d, total, batch=100)
    wait_done(p, 120)
    for point in ["sub.before_commit", "sub.after_commit"] * rounds:
        after = str(rng.randint(1, 3))  # commits: one per catch-up page or live event
        p.send("more 3000\n")
        total += 3000
        mir = env.start(mirror_argv(env, m, CATS3), name="mirror",
                        env={"EVB_CRASH_POINT": point, "EVB_CRASH_AFTER": after})
        rc = mir.p.wait(timeout=120)
        check(rc == -9, f"mirror with {point}:{after} exited {rc}, not by SIGKILL")
        log(f"mirror died at {point} (hit {after})")
    p.wait_line(lambda l: l == f"done {total}", 120, f"done {total}")
    r = run(mirror_argv(env, m, CATS3, extra=["--until-caught-up", "--timeout", "120s"]), 180)
    check(r.returncode == 0, f"final mirror exited {r.returncode}: {r.stderr}")
    check(p.term() == 0, "bus_pub did not exit 0")
    got = compare(d, m, CATS3)
    check(got == total, f"mirror has {got} events, publisher {total}")
    log(f"crash points hit; mirror equals the publisher's {got} events")


def case_two_publishers(env):
    """Two publishers, three mirrors with overlapping category sets (one
    following both publishers), all SIGKILLed and restarted in random order
    for a bounded number of rounds; each mirror ends holding exactly the
    events it follows, each once, in order per (publisher, category)."""
    rounds = max(4, int(16 * SCALE))
    per = 1500
    pubs = {"A": env.path("pubA"), "B": env.path("pubB")}
    eps = {"A": ("pa", "ca"), "B": ("pb", "cb")}
    mirrors = {  # name: (follows, categories)
        "M1": (["A", "B"], ["show", "booking"]),
        "M2": (["A"], CATS3),
        "M3": (["B"], ["showtime", "booking"]),
    }

    def margv(name, extra=()):
        follows, cats = mirrors[name]
        a = [EVBUS, "mirror", "--store", env.path(name)]
        for f in follows:
            a += ["--follow", f"{env.ep(eps[f][0])},{env.ep(eps[f][1])}"]
        for c in cats:
            a += ["--category", c]
        return a + list(extra)

    target = {"A": 0, "B": 0}
    running = {}

    def start(name):
        if name in pubs:
            target[name] += per
            running[name] = start_pub(env, pubs[name], target[name], batch=rng.choice([1, 20]),
                                      pub=eps[name][0], cu=eps[name][1])
        else:
            running[name] = env.start(margv(name, ["--status-every", "20ms"]), name=name)

    for name in ["A", "B", "M1", "M2", "M3"]:
        start(name)
    for r in range(rounds):
        victim = rng.choice(sorted(running))
        p = running.pop(victim)
        # Let the victim make some progress first: appends, or applied events.
        if victim in pubs:
            p.wait_line(lambda l: l.startswith(("appended", "done")), 30, "progress")
        else:
            want = rng.randint(0, 500)
            p.wait_line(lambda l: l.startswith("{") and
                        json.loads(l)["applied_events"] >= want or
                        (l.startswith("{") and json.loads(l)["lag"] == 0), 30,
                        f"{victim} applying")
        p.kill()
        start(victim)
        log(f"round {r + 1}/{rounds}: killed and restarted {victim}")
    for name in pubs:
        running[name].wait_line(lambda l, n=name: l == f"done {target[n]}", 120,
                                f"{name} done")
    for name in mirrors:
        running.pop(name).kill()
        r = run(margv(name, ["--until-caught-up", "--timeout", "120s"]), 180)
        check(r.returncode == 0, f"{name} exited {r.returncode}: {r.stderr}")
    for name in pubs:
        check(running[name].term() == 0, f"{name} did not exit 0")
    src = {n: cat_json(d) for n, d in pubs.items()}
    logids = {n: e[0]["log_id"] for n, e in src.items()}
    for name, (follows, cats) in mirrors.items():
        mir = cat_json(env.path(name))
        origins = [(e["origin_log_id"], e["origin_seq"]) for e in mir]
        check(len(origins) == len(set(origins)), f"{name} holds an event twice")
        total = 0
        for f in follows:
            for c in cats:
                want = [e["id"] for e in src[f] if e["category"] == c]
                got = [e["id"] for e in mir
                       if e["origin_log_id"] == logids[f] and e["category"] == c]
                check(got == want, f"{name}: {f}/{c} has {len(got)} events, want "
                                   f"{len(want)} (or another order)")
                total += len(want)
        check(len(mir) == total, f"{name} holds {len(mir)} events, want {total}")
        log(f"{name}: {total} events, each once, in order")


def proc_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def case_catchup_memory(env):
    """A subscriber catches up 1,000,000 events (EVB_TEST_SCALE scales it)
    while another follows live and the publisher keeps appending. Bounds,
    stated here and in the closing notes: the anonymous memory (RssAnon,
    sampled every 20 ms: the process's own) of the catching-up mirror and of
    the publisher under 200 MB each, the mirror's peak RSS (VmHWM, which also
    counts the LevelDB tables it maps, page cache that compactions of its two
    databases touch) under 300 MB; and the live mirror keeps applying during
    the catch-up."""
    n = max(100000, int(1000000 * SCALE))
    d = env.path("pub")
    pub = start_pub(env, d, n, batch=1000, extra=["--go-on-stdin"])
    pub.send("go\n")
    check(wait_done(pub, 600) == n, "bus_pub did not reach its count")
    live = env.start(mirror_argv(env, env.path("live"), ["booking"],
                                 extra=["--status-every", "100ms", "--stats-json"]),
                     name="live")
    # The live mirror starts at the head: catch it up first (booking only).
    lf = wait_status(live, caught_up_at(n, ["booking"]), 300, "live mirror at the head")
    live_start = lf["booking"]["applied_events"]
    big = env.start(mirror_argv(env, env.path("big"), CATS3, extra=["--status-every", "200ms"]),
                    name="big")
    peaks = {"pub_anon": 0, "big_anon": 0, "big_file": 0}
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.02):  # a sampling period, not a synchronisation
            for k, pid, field in (("pub_anon", pub.p.pid, "RssAnon"),
                                  ("big_anon", big.p.pid, "RssAnon"),
                                  ("big_file", big.p.pid, "RssFile")):
                try:
                    peaks[k] = max(peaks[k], proc_kb(pid, field))
                except OSError:
                    pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    deadline = time.monotonic() + 600
    more = 0
    while True:
        check(time.monotonic() < deadline, "catch-up did not finish in 600 s")
        pub.send("more 1000\n")  # live traffic goes on meanwhile (one batch)
        more += 1000
        try:
            feeds = wait_status(big, lambda f: len(f) == 3, 5, "big mirror status")
        except Fail:
            continue
        if all(f["state"] == "live" and f["lag"] == 0 for f in feeds.values()) and \
                sum(f["applied_events"] for f in feeds.values()) >= n:
            break
    sampling.set()
    sampler.join()
    big_hwm = proc_kb(big.p.pid, "VmHWM")
    check(live.term() == 0, "live mirror did not exit 0")
    final = [x for x in status_lines(live.drain()) if x.get("final")]
    live_end = final[0]["applied_events"] if final else live_start
    log(f"caught up {n} events; big mirror VmHWM {big_hwm} kB, sampled peaks RssAnon "
        f"{peaks['big_anon']} kB, RssFile {peaks['big_file']} kB; publisher RssAnon peak "
        f"{peaks['pub_anon']} kB; live mirror applied {live_end - live_start} events "
        f"meanwhile")
    # AddressSanitizer keeps freed memory in quarantine (256 MB by default) and
    # adds shadow memory: instrumented builds get a looser bound.
    bound = (800 if os.environ.get("EVB_SANITIZED") else 200) * 1024
    check(peaks["big_anon"] < bound,
          f"catching-up mirror's anonymous memory peaked at {peaks['big_anon']} kB "
          f"(bound {bound} kB)")
    check(big_hwm < bound + 100 * 1024,
          f"catching-up mirror peaked at {big_hwm} kB (bound {bound + 100 * 1024} kB)")
    check(peaks["pub_anon"] < bound,
          f"publisher anonymous memory peaked at {peaks['pub_anon']} kB (bound {bound} kB)")
    check(live_end > live_start, "the live mirror did not move during the catch-up")
    check(big.term() == 0, "big mirror did not exit 0")
    check(pub.term() == 0, "bus_pub did not exit 0")


def case_disk_full(env):
    """The disk fills up under a served log (a 12 MB tmpfs): appends fail with
    a clear error, catch-up keeps serving, and once space is freed (the tmpfs
    grown) appends work again, with nothing stored lost. Needs root to mount;
    without root it is skipped (exit 77) unless CI=true, where that fails."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            raise Fail("disk_full needs root to mount a tmpfs, and CI runs as root")
        print("[disk_full] SKIP: not root, cannot mount a tmpfs", file=sys.stderr)
        sys.exit(77)
    mnt = env.path("small")
    os.makedirs(mnt)
    r = run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", mnt], 30)
    check(r.returncode == 0, f"mount tmpfs: {r.stderr}")
    env.mounts = [mnt]
    d, cmd = os.path.join(mnt, "log"), env.ep("cmd")
    # --sync every: an append reported ok is durable, so the mirror must get
    # exactly those.
    srv = env.start([EVBUS, "serve", "--create", "--service", "full", "--store", d, "--pub",
                     env.ep("pub"), "--catchup", env.ep("cu"), "--cmd", cmd, "--sync",
                     "every"], name="serve")
    deadline = time.monotonic() + 30
    while run([EVBUS, "status", cmd, "--timeout", "200ms"], 10).returncode != 0:
        check(time.monotonic() < deadline and srv.p.poll() is None,
              f"serve did not start: {srv.stderr()}")
    big = "x" * 8000
    line = '{"stream":"file-%d","type":"Chunk","payload":{"data":"%s"}}'
    r = run([EVBUS, "append", "--to", cmd, "--json"], 300,
            input="".join(line % (i, big) + "\n" for i in range(3000)))
    out = [json.loads(l) for l in r.stdout.splitlines()]
    ok = sum(1 for o in out if o["ok"])
    # exit 4: the service's log stopped taking writes, so append stops there.
    check(r.returncode == 4 and 0 < ok < 3000, f"append into 12 MB: exit {r.returncode}, "
          f"{ok} ok")
    check("No space left on device" in r.stderr or "free on its file system" in r.stderr,
          f"the error does not say the disk is full: {r.stderr[-400:]}")
    full_msg = [l for l in r.stderr.splitlines() if "space" in l][:1]
    # While full, appends are refused at once with the reason; serving goes on.
    r = run([EVBUS, "append", "--to", cmd], 30, input=line % (0, "z") + "\n")
    check(r.returncode == 4 and "free" in r.stderr, f"append while full: {r.stderr}")
    log(f"{ok} appends of 8 KB fitted; then: {full_msg[0][:200] if full_msg else '?'}")
    # Catch-up still serves everything that was stored.
    m = env.path("mirror")
    r = run(mirror_argv(env, m, ["file"], extra=["--until-caught-up", "--timeout", "60s"]), 90)
    check(r.returncode == 0, f"mirror of a full log: exit {r.returncode}: {r.stderr}")
    head = json.loads(run([EVBUS, "log", "info", "--json", m], 30).stdout)["head"]
    check(head == ok, f"mirror copied {head} events, the full log holds {ok}")
    # Free space: the log takes writes again.
    r = run(["mount", "-o", "remount,size=96m", mnt], 30)
    check(r.returncode == 0, f"remount: {r.stderr}")
    r = run([EVBUS, "append", "--to", cmd], 60,
            input="".join(line % (i, "y") + "\n" for i in range(100)))
    check(r.returncode == 0, f"append after freeing space: exit {r.returncode}: {r.stderr}")
    check(srv.term() == 0, "serve did not exit 0")
    r = run([EVBUS, "log", "verify", d], 120)
    check(r.returncode == 0, f"verify after the full disk: {r.stdout} {r.stderr}")
    n = json.loads(run([EVBUS, "log", "info", "--json", d], 30).stdout)["head"]
    # The append that failed may still be in the file (written, then its
    # fsync failed): a client retries such an append with the same id.
    check(n in (ok + 100, ok + 101), f"log holds {n} events, want {ok} (+1) + 100")
    got = [e["payload"]["data"][:1] for e in cat_json(d)]
    check(got[:ok] == ["x"] * ok and got[-100:] == ["y"] * 100, "events out of place")
    log(f"space freed: 100 more appended; verify clean; {n} events, none lost")


def case_append_cli(env):
    d = env.path("log")
    lines = [
        '{"stream":"show-1","type":"ShowAdded","payload":{"n":1,"f":1.5,"s":"\\u00e9\\ud83d\\ude00","a":[true,null]}}',
        '{"stream":"show-1","type":"Again","expected_version":5}',
        'not json',
        '',
        '{"stream":"booking-1","type":"B","id":"0123456789abcdef0123456789abcdef"}',
        '{"stream":"booking-1","type":"B","id":"0123456789abcdef0123456789abcdef"}',
        '{"stream":"bad stream","type":"B"}',
        '{"stream":"x-1","type":"B","paylod":{}}',
        '{"stream":"x-1","type":"B","payload":{"big":18446744073709551615}}',
    ]
    r = run([EVBUS, "append", "--store", d, "--create", "--service", "demo", "--json"], 60,
            input="\n".join(lines) + "\n")
    check(r.returncode == 1, f"append with bad lines: exit {r.returncode}, want 1")
    out = [json.loads(l) for l in r.stdout.splitlines()]
    check([o["line"] for o in out] == [1, 2, 3, 5, 6, 7, 8, 9], f"lines: {out}")
    check([o["ok"] for o in out] == [True, False, False, True, True, False, False, True],
          f"ok flags: {out}")
    check(out[4]["duplicate"] and out[4]["seq"] == out[3]["seq"], "retry not a duplicate")
    check("line 2:" in r.stderr and "expected version 5" in r.stderr, r.stderr)
    check('line 8: unknown field "paylod"' in r.stderr, r.stderr)
    check('line 7: field "stream"' in r.stderr, r.stderr)
    ev = cat_json(d)
    check(len(ev) == 3 and ev[0]["payload"] == {"n": 1, "f": 1.5, "s": "\u00e9\U0001F600",
                                                "a": [True, None]}, f"stored: {ev[0]}")
    check(ev[2]["payload"] == {"big": {"$int": "18446744073709551615"}}, f"stored: {ev[2]}")
    r = run([EVBUS, "append", "--store", d], 30, input='{"stream":"s-1","type":"T"}\n')
    check(r.returncode == 0 and "appended seq 4" in r.stdout, f"{r.returncode} {r.stdout}")
    # One size limit, one message (the same through `serve --cmd`: test_ops).
    big = json.dumps({"stream": "big-1", "type": "T", "payload": {"b": "x" * 1100000}})
    r = run([EVBUS, "append", "--store", d], 30, input=big + "\n")
    check(r.returncode == 1 and f"line 1: {BIG_MSG}" in r.stderr,
          f"oversized event: exit {r.returncode} {r.stderr!r}")
    r = run([EVBUS, "append", "--store", env.path("none")], 30, input="")
    check(r.returncode == 3, f"missing log: exit {r.returncode}")
    r = run([EVBUS, "append"], 30, input="")
    check(r.returncode == 2 and "--store" in r.stderr, f"no --store: {r.returncode}")

    # serve: a start line, the log locked, a mirror catches up, SIGTERM -> 0.
    srv = start_serve(env, ["--store", d, "--pub", env.ep("p"), "--catchup", env.ep("c")])
    r = run([EVBUS, "append", "--store", d], 30, input='{"stream":"s-1","type":"T"}\n')
    check(r.returncode == 3 and "in use" in r.stderr, f"locked log: {r.returncode} {r.stderr}")
    m = env.path("m")
    r = run([EVBUS, "mirror", "--follow", f"{env.ep('p')},{env.ep('c')}", "--store", m,
             "--until-caught-up", "--timeout", "30s", "--stats-json"], 60)
    check(r.returncode == 0, f"mirror of serve: {r.returncode} {r.stderr}")
    check(srv.term() == 0, f"serve exit on SIGTERM: {srv.p.returncode} {srv.stderr()}")
    compare(d, m, sorted({e["category"] for e in cat_json(d)}))
    r = run([EVBUS, "serve", "--store", d, "--pub", "bogus://x", "--catchup",
             env.ep("c")], 30)
    check(r.returncode in (2, 4) and "bogus://x" in r.stderr, f"bad endpoint: {r.stderr}")
    r = run([EVBUS, "mirror", "--follow", "nocomma", "--store", m], 30)
    check(r.returncode == 2 and "--follow" in r.stderr, f"bad --follow: {r.stderr}")
    r = run([EVBUS, "mirror", "--follow", f"{env.ep('p')},{env.ep('c')}", "--store", m,
             "--until-caught-up", "--timeout", "1s"], 30)
    check(r.returncode == 4 and "not caught up" in r.stderr, f"timeout: {r.returncode} {r.stderr}")
    for c in ("serve", "append", "mirror"):
        r = run([EVBUS, c, "--help"], 30)
        check(r.returncode == 0 and "Usage: evbus " + c in r.stdout, f"{c} --help")
    log("append, serve and mirror behave")


def case_append_signal(env):
    """Ctrl-C (SIGINT) or SIGTERM on `evbus append ... > FILE` (stdout a
    file: block-buffered). Required: exit 4 with "interrupted after line N"
    on stderr, FILE ends with a whole line, and its result lines are exactly
    the events stored (none reported and lost, none stored and unreported).
    Three runs: --store waiting for more input (SIGINT), --store while input
    streams in (SIGTERM), --to waiting for more input (SIGINT)."""
    srv = start_serve(env, ["--store", env.path("served"), "--create", "--service", "demo",
                            "--pub", env.ep("sp"), "--catchup", env.ep("sc"), "--cmd",
                            env.ep("scmd")])

    def line(i):
        return json.dumps({"stream": f"show-{i % 13}", "type": "Added",
                           "payload": {"i": i, "pad": "x" * 40}}) + "\n"
    for mode, sig, streaming in (("store", signal.SIGINT, False),
                                 ("store", signal.SIGTERM, True),
                                 ("to", signal.SIGINT, False)):
        what = f"append --{mode}, {signal.Signals(sig).name}" + (", streaming" if streaming else "")
        d = env.path(f"log-{mode}-{int(sig)}")
        argv = ([EVBUS, "append", "--store", d, "--create", "--service", "demo"]
                if mode == "store" else [EVBUS, "append", "--to", env.ep("scmd")])
        outpath = env.path(f"out-{mode}-{int(sig)}")
        with open(outpath, "wb") as out:
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out,
                                 stderr=subprocess.PIPE)
        feeder = None
        try:
            if streaming:
                def feed():
                    try:
                        for i in range(1000000):
                            p.stdin.write(line(i).encode())
                    except (BrokenPipeError, ValueError, OSError):
                        pass
                feeder = threading.Thread(target=feed, daemon=True)
                feeder.start()
                deadline = time.monotonic() + 60
                while os.path.getsize(outpath) < 64 * 1024:  # a few hundred reported
                    check(p.poll() is None and time.monotonic() < deadline,
                          f"{what}: no output: exit {p.poll()}")
                    time.sleep(0.01)
            else:
                p.stdin.write("".join(line(i) for i in range(1000)).encode())
                p.stdin.flush()
                # All read and appended: it waits in read() for more.
                deadline = time.monotonic() + 60
                while not evbtest.wchan(p.pid).endswith("pipe_read"):
                    check(p.poll() is None and time.monotonic() < deadline,
                          f"{what}: never waited for input: exit {p.poll()}")
                    time.sleep(0.01)
            p.send_signal(sig)
            try:
                _, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                raise Fail(f"{what}: still running 30 s after the signal")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        err = err.decode(errors="replace")
        text = open(outpath, "rb").read().decode()
        outl = text.splitlines()
        check(p.returncode == 4 and f"interrupted after line {len(outl)}" in err,
              f"{what}: exit {p.returncode} (want 4, 'interrupted after line {len(outl)}'); "
              f"{len(outl)} lines out; stderr {err[-500:]}")
        check(text.endswith("\n"), f"{what}: output ends in a torn line: {text[-100:]!r}")
        seqs = [int(l.split()[4]) for l in outl if l.startswith("line ") and " appended seq " in l]
        check(len(seqs) == len(outl), f"{what}: not all output lines are results: {outl[-3:]}")
        if mode == "store":
            stored = len(cat_json(d))
        else:
            r = run([EVBUS, "status", "--json", env.ep("scmd")], 30)
            stored = json.loads(r.stdout)["head"] - (seqs[0] - 1)
        check(stored == len(outl) and (streaming or stored == 1000),
              f"{what}: {stored} events stored, {len(outl)} reported")
        if feeder is not None:
            feeder.join(timeout=10)
        log(f"{what}: {stored} events stored, each reported, exit 4")
    check(srv.term() == 0, f"serve exit: {srv.stderr()}")


def case_garbage_hitrun(env):
    """Clients that send bad requests to `evbus serve`'s command and
    catch-up sockets and leave at once (bus_garbage hitrun, 300 each).
    Required: serve keeps serving (status answers, exit 0 on SIGTERM), and
    each kind of warning a peer can cause ("bad request", "reply not
    delivered", "bad catch-up request") is logged at most once a second.
    Before: one "reply not delivered" line per request."""
    d = env.path("log")
    r = run([EVBUS, "append", "--store", d, "--create", "--service", "demo"], 30,
            input='{"stream":"s-1","type":"T"}\n')
    check(r.returncode == 0, f"append: {r.returncode} {r.stderr}")
    cmd, cu = env.ep("cmd"), env.ep("c")
    srv = start_serve(env, ["--store", d, "--pub", env.ep("p"), "--catchup", cu, "--cmd", cmd])
    t0 = time.monotonic()
    for ep in (cmd, cu):
        r = run([GARBAGE, "hitrun", ep, "300"], 60)
        check(r.returncode == 0, f"bus_garbage hitrun {ep}: {r.returncode} {r.stderr}")
    r = run([EVBUS, "status", "--json", cmd], 30)
    check(r.returncode == 0, f"status after the garbage: {r.returncode} {r.stderr}")
    took = time.monotonic() - t0
    check(srv.term() == 0, f"serve exit on SIGTERM: {srv.stderr()[-2000:]}")
    err = srv.stderr().splitlines()
    counts = {}
    for kind in ("command socket", "bad catch-up request"):
        counts[kind] = sum(kind in l for l in err)
        check(1 <= counts[kind] <= 2 * (int(took) + 2),
              f"{counts[kind]} '{kind}' lines in {took:.1f} s (at most one a second per kind)")
    log(f"600 hit-and-run clients in {took:.1f} s: warning lines {counts}")


CASES = {
    "late_joiner": case_late_joiner,
    "garbage_hitrun": case_garbage_hitrun,
    "append_signal": case_append_signal,
    "slow_subscriber": case_slow_subscriber,
    "garbage": case_garbage,
    "pub_kill": case_pub_kill,
    "mirror_kill": case_mirror_kill,
    "append_cli": case_append_cli,
    "crash_points": case_crash_points,
    "two_publishers": case_two_publishers,
    "catchup_memory": case_catchup_memory,
    "disk_full": case_disk_full,
}


def main():
    if CASE not in CASES:
        print(f"unknown case {CASE}; one of {', '.join(CASES)}", file=sys.stderr)
        return 2
    log(f"seed {SEED} (EVB_TEST_SEED), scale {SCALE}")
    env = Env()
    ok = False
    t0 = time.monotonic()
    try:
        CASES[CASE](env)
        ok = True
    except Fail as e:
        print(f"[{CASE}] FAIL: {e}", file=sys.stderr)
    finally:
        env.cleanup(ok)
    log(f"{'ok' if ok else 'FAILED'} in {time.monotonic() - t0:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
