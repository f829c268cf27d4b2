#!/usr/bin/env python3
"""`evbus sniff` against real processes: `evbus serve` on a log made with
`evbus append`, live events sent with `evbus append --to`.

    test_sniff.py CASE EVBUS [STALL_SERVICE]

CASE is one of: live, from_start, last, filters, bad_args, record_replay, terminal,
stats, gaps, restart, and the slow readers of libzmq #3937: slow_sniff,
slow_mirror, slow_service (a service on the runtime, STALL_SERVICE, whose
handler blocks). Endpoints are ipc:// paths in a fresh directory per run, so
cases may run in parallel. Waits poll a condition (a line on a child's stderr or
stdout) with a deadline; no sleep stands in for synchronisation. Exit code 77
(skip) is not used: every case runs everywhere.
"""
import json
import os
import pty
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import Fail, check  # noqa: E402
import evbtest  # noqa: E402

CASE, EVBUS = sys.argv[1:3]
STALL = sys.argv[3] if len(sys.argv) > 3 else None
SLOW = 3 if os.environ.get("EVB_SANITIZED") else 1  # sanitizer builds run slower
log = evbtest.logger(f"sniff_{CASE}")


class Proc(evbtest.Proc):
    """A child whose stdout and stderr lines are read by threads."""

    def __init__(self, argv, stdin=False, env=None):
        self.out = queue.Queue()
        self.outlines = []
        super().__init__(argv, stdin=stdin, env=env)

    def _out_line(self, line):
        if line is not None:
            self.outlines.append(line)
        self.out.put(line)

    def wait_err(self, pred, timeout, what):
        deadline = time.monotonic() + timeout * SLOW
        while not any(pred(l) for l in list(self.err)):
            if self.p.poll() is not None:
                self.join(5)
                if any(pred(l) for l in self.err):
                    return
                raise Fail(f"{self.argv[:2]} exited {self.p.returncode} while waiting "
                           f"for {what}; stderr: {self.stderr()[-2000:]}")
            check(time.monotonic() < deadline,
                  f"timed out waiting for {what}; stderr: {self.stderr()[-2000:]}")
            time.sleep(0.02)

    def wait_exit(self, timeout):
        try:
            rc = self.p.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise Fail(f"{self.argv[:2]} did not exit within {timeout * SLOW}s; "
                       f"stdout: {self.outlines[-5:]} stderr: {self.stderr()[-2000:]}")
        self.join(10)
        return rc

    def term(self, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


class Env(evbtest.Scratch):
    def __init__(self):
        super().__init__(f"sniff_{CASE}_", "evbs_", short=60, suffix="")
        self.procs = []

    def start(self, argv, **kw):
        p = Proc(argv, **kw)
        self.procs.append(p)
        return p

    def cleanup(self, ok):
        for p in self.procs:
            p.kill()
        self.remove(ok, log)


def run(argv, timeout=60, **kw):
    return evbtest.run(argv, timeout * SLOW, **kw)


def ev_line(stream, etype, payload=None):
    d = {"stream": stream, "type": etype}
    if payload is not None:
        d["payload"] = payload
    return json.dumps(d)


def make_log(d, lines):
    r = run([EVBUS, "append", "--store", d, "--create", "--service", "demo"],
            input="\n".join(lines) + "\n", timeout=120)
    check(r.returncode == 0, f"append --store: {r.returncode} {r.stderr}")


def cat_json(d):
    r = run([EVBUS, "log", "cat", "--json", d], 120)
    check(r.returncode == 0, f"log cat {d}: {r.returncode} {r.stderr}")
    return [json.loads(l) for l in r.stdout.splitlines()]


class Server:
    """evbus serve on log d, with a command socket for `append --to`; tag
    tells the endpoints of several servers apart."""

    def __init__(self, env, d, extra=(), tag=""):
        self.env = env
        self.d = d
        self.pub, self.cu, self.cmd = (env.ep("pub" + tag), env.ep("cu" + tag),
                                       env.ep("cmd" + tag))
        self.follow = f"{self.pub},{self.cu}"
        self.p = env.start([EVBUS, "serve", "--store", d, "--pub", self.pub, "--catchup",
                            self.cu, "--cmd", self.cmd, "--heartbeat", "100ms", *extra])
        self.p.wait_err(lambda l: "evbus serve: serving" in l, 20, "serve's start line")

    def append(self, lines):
        r = run([EVBUS, "append", "--to", self.cmd, "--timeout", "10000ms"],
                input="\n".join(lines) + "\n", timeout=300)
        check(r.returncode == 0, f"append --to: {r.returncode} {r.stderr[-2000:]}")

    def status(self):
        r = run([EVBUS, "status", self.cmd, "--json"], 30)
        check(r.returncode == 0, f"status: {r.returncode} {r.stderr}")
        return json.loads(r.stdout)

    def stop(self):
        check(self.p.term() == 0, f"serve exit: {self.p.stderr()}")


def sniff(srv, *args):
    return [EVBUS, "sniff", "--follow", srv.follow, *args]


def wait_live(p):
    p.wait_err(lambda l: l.startswith("evbus sniff: live on "), 20, "the 'live on' line")


def json_out(lines):
    out = []
    for l in lines:
        try:
            out.append(json.loads(l))
        except ValueError:
            raise Fail(f"not a JSON line: {l!r}")
    return out


def same_as_log(got, logged, publisher):
    """Each sniffed object is the `log cat --json` object plus "publisher"."""
    by_seq = {e["seq"]: e for e in logged}
    for o in got:
        check(o.get("publisher") == publisher, f"publisher field: {o}")
        want = dict(by_seq[o["seq"]], publisher=publisher)
        check(o == want, f"seq {o['seq']}: sniffed {o}\n  logged {want}")


CATS = ["show", "booking", "showtime"]


def mixed(n, start=0):
    """n events spread over three categories, with payload fields to filter."""
    out = []
    for i in range(start, start + n):
        c = CATS[i % 3]
        out.append(ev_line(f"{c}-{i % 7}", ["Added", "Changed", "Removed"][i % 4 % 3],
                           {"n": i, "name": f"x{i % 5}", "even": i % 2 == 0,
                            "f": (i % 4) + 0.5}))
    return out


# ---- cases ----

def case_live(env):
    d = env.path("log")
    make_log(d, mixed(10))
    srv = Server(env, d)
    p = env.start(sniff(srv, "--json", "--count", "6"))
    wait_live(p)
    srv.append(mixed(6, start=10))
    check(p.wait_exit(30) == 0, f"sniff --count: {p.p.returncode} {p.stderr()}")
    got = json_out(p.outlines)
    check([o["seq"] for o in got] == list(range(11, 17)),
          f"live sniff printed seqs {[o['seq'] for o in got]}, want 11..16 (no history)")
    # SIGTERM ends a sniffer cleanly (exit 0), and --timeout with nothing seen is 1.
    p2 = env.start(sniff(srv, "--json"))
    wait_live(p2)
    check(p2.term() == 0, f"sniff after SIGTERM: {p2.p.returncode} {p2.stderr()}")
    r = run(sniff(srv, "--timeout", "1s"), 30)
    check(r.returncode == 1 and r.stdout.count("\n") <= 1,
          f"--timeout with nothing printed: {r.returncode} {r.stdout!r}")
    srv.stop()
    same_as_log(got, cat_json(d), srv.follow)
    log("live events printed once each, as log cat --json objects plus publisher")


def case_from_start(env):
    d = env.path("log")
    n_hist, n_live = 3500, 60  # several catch-up pages (1000 events each)
    make_log(d, mixed(n_hist))
    srv = Server(env, d)
    total = n_hist + n_live
    p = env.start(sniff(srv, "--from-start", "--json", "--count", str(total)))
    # Live events while the history is still being fetched, and after.
    srv.append(mixed(n_live // 2, start=n_hist))
    wait_live(p)
    srv.append(mixed(n_live - n_live // 2, start=n_hist + n_live // 2))
    check(p.wait_exit(60) == 0, f"sniff --from-start: {p.p.returncode} {p.stderr()}")
    got = json_out(p.outlines)
    seqs = [o["seq"] for o in got]
    check(len(seqs) == len(set(seqs)), "a duplicate was printed")
    check(sorted(seqs) == list(range(1, total + 1)),
          f"seqs missing/extra: {sorted(set(range(1, total + 1)) - set(seqs))[:10]} "
          f"{sorted(set(seqs) - set(range(1, total + 1)))[:10]}")
    check(seqs[:n_hist] == list(range(1, n_hist + 1)), "history is not in log order")
    for c in CATS:  # per category: log order
        cs = [o["seq"] for o in got if o["category"] == c]
        check(cs == sorted(cs), f"category {c} out of order")

    # --from SEQ: exactly from there; --category: only those, in order.
    r = run(sniff(srv, "--from", "3000", "--json", "--count", str(total - 2999)), 60)
    check(r.returncode == 0, f"--from 3000: {r.returncode} {r.stderr}")
    check([o["seq"] for o in json_out(r.stdout.splitlines())] == list(range(3000, total + 1)),
          "--from 3000 printed another list")
    logged = None
    srv.stop()
    logged = cat_json(d)
    same_as_log(got, logged, srv.follow)
    srv = Server(env, d)
    want = [e["seq"] for e in logged if e["category"] == "booking"]
    r = run(sniff(srv, "--from-start", "--category", "booking", "--json", "--count",
                  str(len(want))), 60)
    check(r.returncode == 0, f"--category booking: {r.returncode} {r.stderr}")
    check([o["seq"] for o in json_out(r.stdout.splitlines())] == want,
          "--category booking --from-start: another list")
    srv.stop()
    log(f"{total} events from the start: history then live, each once, in order")


def case_until_end(env):
    """--until-end (kcat -e): the history up to the head the publisher had
    when first heard, then exit 0; by category, from a seq; with appends
    going on it still ends, every event up to its end printed once; an empty
    log ends at once; --replay refuses it."""
    d = env.path("log")
    n = 2500  # three catch-up pages
    make_log(d, mixed(n))
    srv = Server(env, d)
    r = run(sniff(srv, "--until-end", "--json"), 60)
    seqs = [o["seq"] for o in json_out(r.stdout.splitlines())]
    check(r.returncode == 0 and seqs == list(range(1, n + 1)),
          f"--until-end: exit {r.returncode}, {len(seqs)} events: {r.stderr[-300:]}")
    logged = cat_json(d)
    want = [e["seq"] for e in logged if e["category"] == "booking"]
    r = run(sniff(srv, "--until-end", "--category", "booking", "--json"), 60)
    check(r.returncode == 0 and [o["seq"] for o in json_out(r.stdout.splitlines())] == want,
          f"--until-end --category booking: exit {r.returncode}: {r.stderr[-300:]}")
    r = run(sniff(srv, "--until-end", "--from", "2400", "--json"), 60)
    check(r.returncode == 0 and
          [o["seq"] for o in json_out(r.stdout.splitlines())] == list(range(2400, n + 1)),
          f"--until-end --from 2400: exit {r.returncode}: {r.stderr[-300:]}")
    p = env.start(sniff(srv, "--until-end", "--json"))
    srv.append(mixed(300, start=n))
    check(p.wait_exit(60) == 0, f"--until-end during appends: {p.p.returncode} {p.stderr()}")
    seqs = [o["seq"] for o in json_out(p.outlines)]
    check(len(seqs) >= n and seqs == list(range(1, len(seqs) + 1)),
          f"--until-end during appends printed {len(seqs)} events, not 1..k with k >= {n}")
    srv.stop()
    e = env.path("empty")
    r = run([EVBUS, "append", "--store", e, "--create", "--service", "demo"], input="")
    check(r.returncode == 0, f"an empty log: {r.returncode} {r.stderr}")
    srv = Server(env, e)
    r = run(sniff(srv, "--until-end", "--json"), 60)
    check(r.returncode == 0 and r.stdout == "",
          f"--until-end of an empty log: exit {r.returncode} {r.stdout[:200]!r}")
    srv.stop()
    r = run([EVBUS, "sniff", "--replay", "-", "--until-end"], 30, input="")
    check(r.returncode == 2 and "--until-end" in r.stderr,
          f"--replay --until-end: {r.returncode} {r.stderr}")
    log(f"--until-end: {n} events then exit 0, by category and from a seq; ends during "
        f"appends ({len(seqs)} printed); an empty log ends at once")


def case_log_order(env):
    """`sniff --from-start` and a follower of every category in log order
    (`mirror --log-order`, the library's evb_sub) see the same events in the
    same order, across history, a switch-over and live events; the copy's
    seqs are the publisher's (a faithful replica)."""
    d, mir = env.path("log"), env.path("mirror")
    n_hist, n_live = 2500, 40
    make_log(d, mixed(n_hist))
    srv = Server(env, d)
    total = n_hist + n_live
    p = env.start(sniff(srv, "--from-start", "--json", "--count", str(total)))
    m = env.start([EVBUS, "mirror", "--follow", srv.follow, "--store", mir, "--log-order"])
    srv.append(mixed(n_live // 2, start=n_hist))  # while both catch up
    wait_live(p)
    srv.append(mixed(n_live - n_live // 2, start=n_hist + n_live // 2))
    check(p.wait_exit(60) == 0, f"sniff --from-start: {p.p.returncode} {p.stderr()}")
    r = run([EVBUS, "mirror", "--follow", srv.follow, "--store", env.path("unused"),
             "--log-order", "--category", "show"], 30)
    check(r.returncode == 2 and "--log-order" in r.stderr,
          f"--log-order with --category: {r.returncode} {r.stderr}")
    check(m.term() == 0, f"mirror: {m.p.returncode} {m.stderr()[-2000:]}")
    r = run([EVBUS, "mirror", "--follow", srv.follow, "--store", mir, "--log-order",
             "--until-caught-up", "--timeout", "60s"], 90)  # the rest, if SIGTERM came early
    check(r.returncode == 0, f"mirror --until-caught-up: {r.returncode} {r.stderr[-2000:]}")
    srv.stop()
    sniffed = [o["id"] for o in json_out(p.outlines)]
    copied = cat_json(mir)
    check(len(sniffed) == total, f"sniff printed {len(sniffed)} events, want {total}")
    check([e["id"] for e in copied] == sniffed,
          "mirror --log-order and sniff --from-start differ in events or order")
    check([e["seq"] for e in copied] == [e["origin_seq"] for e in copied],
          "the copy's seqs are not the publisher's")
    log(f"{total} events: sniff --from-start and mirror --log-order agree, in log order")


def case_filters(env):
    d = env.path("log")
    make_log(d, mixed(60))
    logged = cat_json(d)
    srv = Server(env, d)

    cases = evbtest.filter_cases() + [
        (["--category", "show", "--category", "showtime"],
         lambda e: e["category"] in ("show", "showtime")),
        (["--since", logged[40]["ts"]], lambda e: e["ts_us"] >= logged[40]["ts_us"]),
    ]
    procs = [(a, f, env.start(sniff(srv, *([] if "--since" in a else ["--from-start"]),
                                    "--json", "--timeout", f"{3 * SLOW}s", *a)))
             for a, f in cases]
    for a, f, p in procs:
        rc = p.wait_exit(60)
        want = [e["seq"] for e in logged if f(e)]
        got = [o["seq"] for o in json_out(p.outlines)]
        check(got == want, f"{a}: printed {got}, want {want}; stderr: {p.stderr()}")
        check(rc == (0 if want else 1), f"{a}: exit {rc} ({len(want)} matched)")
    srv.stop()
    log(f"{len(cases)} filter combinations print exactly the matching events")


def case_bad_args(env):
    base = [EVBUS, "sniff"]
    ok = f"{env.ep('p')},{env.ep('c')}"
    bad = [
        (["--follow", ok, "--bogus"], "unknown option '--bogus'"),
        ([], "--follow"),
        (["--follow", "nocomma"], "--follow 'nocomma'"),
        (["--follow", "bogus://x,ipc:///tmp/y"], "bogus://x"),
        (["--follow", f"{env.ep('p')},nope://z"], "nope://z"),
        (["--follow", ok, "--color", "sometimes"], "--color"),
        (["--follow", ok, "--where", "noequals"], "--where 'noequals'"),
        (["--follow", ok, "--where", "=x"], "--where '=x'"),
        (["--follow", ok, "--from", "0"], "--from"),
        (["--follow", ok, "--from", "x"], "--from"),
        (["--follow", ok, "--from", "-0"], "--from -0: expected -N with N at least 1"),
        (["--follow", ok, "--from=-"], "--from -: expected -N"),
        (["--follow", ok, "--from", "-5", "--from-start"], "exclude"),
        (["--follow", ok, "--from", "3", "--from-start"], "exclude"),
        (["--follow", ok, "--since", "yesterday"], "--since 'yesterday'"),
        (["--follow", ok, "--category", "bad cat"], "--category 'bad cat'"),
        (["--follow", ok, "--type", "bad type"], "--type 'bad type'"),
        (["--follow", ok, "--count", "0"], "--count"),
        (["--follow", ok, "--rcvhwm", "0"], "--rcvhwm"),
        (["--follow", ok, "--replay", "x"], "--replay"),
        (["--follow", ok, "--timeout"], "--timeout needs a value"),
    ]
    for a, needle in bad:
        r = run(base + a, 30)
        check(r.returncode == 2, f"{a}: exit {r.returncode}, want 2; {r.stderr}")
        check(needle in r.stderr, f"{a}: stderr does not name {needle!r}: {r.stderr}")
        check(r.stderr.startswith("evbus sniff: "), f"{a}: message prefix: {r.stderr}")
        check(r.stdout == "", f"{a}: printed on stdout: {r.stdout!r}")
    r = run(base + ["--replay", env.path("missing.jsonl")], 30)
    check(r.returncode == 4 and "missing.jsonl" in r.stderr, f"missing replay: {r.stderr}")
    r = run(base + ["--follow", ok, "--record", env.path("no/such/dir/f")], 30)
    check(r.returncode == 4 and "no/such/dir/f" in r.stderr, f"bad record: {r.stderr}")
    r = run(base + ["--help"], 30)
    check(r.returncode == 0, f"--help exit {r.returncode}")
    for needle in ["--follow", "--category", "--type", "--stream", "--where", "--json",
                   "--color", "--count", "--timeout", "--from", "--from-start", "--since",
                   "--stats", "--rcvhwm", "--record", "--replay", "Exit code", "rx_us"]:
        check(needle in r.stdout, f"--help does not mention {needle}")
    r = run([EVBUS, "--help"], 30)
    check("sniff" in r.stdout, "evbus --help does not list sniff")
    # Nobody there: the sniffer waits, --timeout ends it with exit 1.
    r = run(base + ["--follow", "tcp://127.0.0.1:1,tcp://127.0.0.1:1", "--timeout", "1s"], 30)
    check(r.returncode == 1, f"unreachable publisher with --timeout: {r.returncode} {r.stderr}")
    log(f"{len(bad)} bad invocations: exit 2, each naming the flag or endpoint")


def case_record_replay(env):
    d = env.path("log")
    make_log(d, mixed(30))
    srv = Server(env, d)
    rec = env.path("rec.jsonl")
    p = env.start(sniff(srv, "--from-start", "--json", "--record", rec, "--count", "40"))
    wait_live(p)
    srv.append(mixed(10, start=30))
    check(p.wait_exit(60) == 0, f"sniff --record: {p.p.returncode} {p.stderr()}")
    seen = json_out(p.outlines)
    srv.stop()
    lines = open(rec).read().splitlines()
    check(len(lines) == 40, f"record holds {len(lines)} lines, want 40")
    for l in lines:
        o = json.loads(l)
        check(set(o) >= {"rx_us", "publisher", "raw", "service"} and o["service"] == "demo",
              f"record line: {o}")
    r = run([EVBUS, "sniff", "--replay", rec, "--json"], 60)
    check(r.returncode == 0, f"--replay: {r.returncode} {r.stderr}")
    check(json_out(r.stdout.splitlines()) == seen, "replay differs from what was printed")
    same_as_log(seen, cat_json(d), srv.follow)
    r = run([EVBUS, "sniff", "--replay", rec, "--json", "--type", "Removed", "--count", "2"])
    check(r.returncode == 0, f"--replay --type: {r.returncode} {r.stderr}")
    want = [o["seq"] for o in seen if o["type"] == "Removed"][:2]
    check([o["seq"] for o in json_out(r.stdout.splitlines())] == want, "replay --type")
    r = run([EVBUS, "sniff", "--replay", rec, "--color", "never"])
    check(r.returncode == 0 and len(r.stdout.splitlines()) == 41 and
          "\x1b[" not in r.stdout, f"replay as columns: {r.returncode} {r.stdout[:300]}")
    with open(rec, "a") as f:
        f.write('{"rx_us":1,"raw":"not base64!"}\nnot json\n')
    r = run([EVBUS, "sniff", "--replay", rec, "--json"])
    check(r.returncode == 1 and "line 41" in r.stderr and "line 42" in r.stderr and
          len(r.stdout.splitlines()) == 40, f"bad lines: {r.returncode} {r.stderr}")
    log("record then replay: the same objects; bad lines named, exit 1")


def pty_run(argv, timeout=30, env=None):
    """Run argv with stdout and stderr on a pseudo-terminal; return (rc, output)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                         env=None if env is None else {**os.environ, **env})
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        check(time.monotonic() < deadline, f"{argv} on a pty did not end: {out[-500:]!r}")
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    rc = p.wait(timeout=10)
    os.close(master)
    return rc, out.decode("utf-8", "replace")


def case_terminal(env):
    d = env.path("log")
    make_log(d, mixed(5) + [ev_line("show-9", "Long", {"text": "y" * 500})])
    srv = Server(env, d)
    argv = sniff(srv, "--from-start", "--count", "6")
    rc, out = pty_run(argv)
    check(rc == 0, f"on a pty: exit {rc}: {out[-1000:]}")
    check("\x1b[" in out, f"no ANSI colour on a terminal: {out[:500]!r}")
    rows = [l for l in out.replace("\r", "").split("\n") if "Added" in l or "Long" in l]
    check(len(rows) >= 3, f"columns: {out!r}")
    long_row = [l for l in rows if "Long" in l][0]
    check("y" * 200 not in long_row and "..." in long_row,
          f"payload not cut to the terminal width: {long_row!r}")
    r = run(argv, 30)
    check(r.returncode == 0 and "\x1b" not in r.stdout, f"piped: colour codes: {r.stdout!r}")
    plain = [l for l in r.stdout.splitlines()]
    check(len(plain) == 7 and plain[0].startswith("TIME"), f"piped columns: {plain}")
    check("y" * 500 in r.stdout, "piped output was cut")
    cols = plain[1].split()
    check(cols[1] == "demo" and cols[2] == "1" and cols[3] == "show-0" and cols[5] == "Added",
          f"columns: {cols}")
    r = run(argv + ["--color", "always"], 30)
    check(r.returncode == 0 and "\x1b[" in r.stdout, "--color always: no colour when piped")
    rc, out = pty_run(argv + ["--color", "never"])
    check(rc == 0 and "\x1b[3" not in out and "\x1b[1m" not in out,
          f"--color never on a pty: {out[:300]!r}")
    rc, out = pty_run(argv, env={"NO_COLOR": "1"})
    check(rc == 0 and "\x1b[3" not in out, f"NO_COLOR on a pty: {out[:300]!r}")
    rc, out = pty_run(argv + ["--json"])
    check(rc == 0 and "\x1b[3" not in out, "--json on a pty has colour codes")
    srv.stop()
    log("colour on a terminal only (--color, NO_COLOR respected), columns when piped")


def case_stats(env):
    d = env.path("log")
    make_log(d, mixed(30))
    srv = Server(env, d)
    p = env.start(sniff(srv, "--from-start", "--stats", "--json", "--type", "Added"))
    wait_live(p)
    srv.append(mixed(9, start=30))
    deadline = time.monotonic() + 30 * SLOW
    last = None
    while True:
        check(time.monotonic() < deadline, f"stats never showed 39 events: {last}")
        try:
            line = p.out.get(timeout=1)
        except queue.Empty:
            continue
        check(line is not None, f"sniff --stats exited: {p.stderr()}")
        last = json.loads(line)
        if sum(f["events"] for f in last["feeds"]) == 39:
            break
    check(p.term() == 0, f"--stats SIGTERM: {p.stderr()}")
    check({f["category"] for f in last["feeds"]} == set(CATS), f"feeds: {last}")
    f0 = last["feeds"][0]
    for k in ["publisher", "service", "state", "rate", "gaps", "duplicates", "bad_frames",
              "heartbeat_age_ms", "applied"]:
        check(k in f0, f"stats field {k} missing: {f0}")
    check(all(f["gaps"] == 0 and f["state"] == "live" for f in last["feeds"]), f"{last}")
    added = sum(1 for e in json_out(mixed(39)) if e["type"] == "Added")
    check(last["printed"] == added, f"matched Added: {last['printed']}, want {added}")
    r = run(sniff(srv, "--from-start", "--stats", "--timeout", f"{2 * SLOW}s"), 30)
    check(r.returncode == 0 and "ev/s" in r.stdout and "\x1b" not in r.stdout,
          f"piped --stats: {r.returncode} {r.stdout!r}")
    srv.stop()
    log(f"stats: {last}")


def case_gaps(env):
    """A stopped sniffer with a tiny RCVHWM loses live messages: it counts
    the gaps, fetches what it lost, and prints every event once."""
    d = env.path("log")
    make_log(d, mixed(3))
    srv = Server(env, d, extra=["--sndhwm", "10"])
    n = 1500
    p = env.start(sniff(srv, "--json", "--rcvhwm", "5", "--count", str(n)))
    wait_live(p)
    os.kill(p.p.pid, signal.SIGSTOP)
    big = "z" * 4000  # fills the socket buffers soon
    try:
        srv.append([ev_line(f"{CATS[i % 3]}-{i}", "Big", {"i": i, "pad": big})
                    for i in range(n)])
        # The publisher sends once the group fsync made them durable, which
        # may come after the appends returned: keep the sniffer stopped
        # until everything went out, so that its copies were really lost.
        deadline = time.monotonic() + 60 * SLOW
        while srv.status()["published"] < 3 + n:
            check(time.monotonic() < deadline, f"not all published: {srv.status()}")
            time.sleep(0.05)
    finally:
        os.kill(p.p.pid, signal.SIGCONT)
    check(p.wait_exit(90) == 0, f"sniff after the flood: {p.p.returncode} {p.stderr()}")
    got = [o["seq"] for o in json_out(p.outlines)]
    check(sorted(got) == list(range(4, 4 + n)) and len(got) == n,
          f"printed {len(got)} events, missing {sorted(set(range(4, 4 + n)) - set(got))[:10]}")
    err = p.stderr()
    check("gaps found" in err and "gap in category" in err,
          f"no gap reported on stderr: {err[-2000:]}")
    srv.stop()
    log(f"{n} events, each once, after losses; stderr: {err.splitlines()[-1]}")


# ---- slow readers: libzmq #3937 ----
# Issue 16's reproduction: a reader that does not read for 9 s while 20,000
# events go out, with a SUB queue of 20. The queue stays full for three ZMTP
# heartbeat timeouts (3 s each); with ZMTP heartbeats on the SUB, libzmq
# 4.3.4 aborted the reader once it read again (exit 134 or -6: "Assertion
# failed: _input_stopped"). The same condition for the three kinds of
# reader: sniff (its stdout not read), mirror (its --status-every lines not
# read), a service (its handler blocked: stall_service).

SLOW_N = 20000


def show_lines(n, start=0):
    return [ev_line(f"show-{i % 11}", "Added", {"i": i}) for i in range(start, start + n)]


def reader_away(srv, p, errpath, lines, blocked, what):
    """Wait until blocked() says reader p has stopped reading, send lines
    through srv, and keep the reader away 9 s from then (the condition under
    test, not a synchronisation). Requires p alive then."""
    def err():
        return open(errpath).read()[-2000:]
    t0 = time.monotonic()
    deadline = t0 + 20 * SLOW
    while not blocked():
        check(p.poll() is None, f"{what} exited {p.returncode} before it stopped reading: {err()}")
        check(time.monotonic() < deadline, f"{what} never stopped reading: {err()}")
        time.sleep(0.02)
    blocked_from = time.monotonic()
    base = srv.status()["published"]
    srv.append(lines)
    deadline = time.monotonic() + 60 * SLOW
    while srv.status()["published"] < base + len(lines):
        check(time.monotonic() < deadline, f"not all published: {srv.status()}")
        time.sleep(0.05)
    time.sleep(max(0.0, blocked_from + 9 - time.monotonic()))
    check(p.poll() is None, f"{what} died while away: exit {p.returncode} "
          f"(-6 or 134: libzmq #3937); {err()}")
    log(f"{what} stopped reading after {blocked_from - t0:.1f} s and was away "
        f"{time.monotonic() - blocked_from:.1f} s; {len(lines)} events sent meanwhile")


def full_pipe():
    """A pipe whose buffer is already full of '#' lines: the first write of
    the child given its write end blocks, as behind `| (sleep 9; cat)`."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        while True:
            os.write(w, b"#" * 99 + b"\n")  # under PIPE_BUF: whole or not at all
    except BlockingIOError:
        pass
    os.set_blocking(w, True)
    return r, w


def finish(p, what, errpath, timeout):
    """SIGTERM p (if it still runs) and require exit 0."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout * SLOW)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    check(p.returncode == 0, f"{what} exit {p.returncode}: {open(errpath).read()[-2000:]}")


def case_slow_sniff(env):
    """`sniff --json | (sleep 9; cat)`: stdout is a pipe nobody reads yet;
    once its 64 KiB are full the sniffer blocks in write and its SUB queue
    fills behind it. Required: it lives, exits 0 at --count, and has
    printed every event once."""
    d = env.path("log")
    make_log(d, mixed(3))
    srv = Server(env, d, extra=["--heartbeat", "500ms"])
    errpath = env.path("sniff.err")
    with open(errpath, "w") as errf:
        p = subprocess.Popen(sniff(srv, "--json", "--rcvhwm", "20", "--count", str(SLOW_N)),
                             stdout=subprocess.PIPE, stderr=errf)
    try:
        reader_away(srv, p, errpath, show_lines(SLOW_N),
                    lambda: "evbus sniff: live on" in open(errpath).read(), "sniff")
        out, _ = p.communicate(timeout=120 * SLOW)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = open(errpath).read()
    check(p.returncode == 0, f"sniff exit {p.returncode}: {err[-2000:]}")
    got = [o["seq"] for o in json_out(out.decode().splitlines())]
    want = list(range(4, 4 + SLOW_N))
    check(sorted(got) == want,
          f"printed {len(got)} events, missing {sorted(set(want) - set(got))[:10]}")
    srv.stop()
    log(f"reader away 9 s with a full SUB queue: alive, {SLOW_N} events each once; "
        f"stderr: {err.splitlines()[-1]}")


def case_slow_mirror(env):
    """`evbus mirror --status-every 10ms` whose stdout is a pipe already full
    (nobody reads it): the mirror blocks in its first write (its main
    thread's wchan says pipe_write) and stops copying. Required: it lives, copies every event
    once when its output is read again, and exits 0 on SIGTERM."""
    d, mir = env.path("log"), env.path("mirror")
    make_log(d, show_lines(3))
    srv = Server(env, d, extra=["--heartbeat", "500ms"])
    errpath = env.path("mirror.err")
    lines = queue.Queue()
    r, w = full_pipe()
    with open(errpath, "w") as errf:
        p = subprocess.Popen([EVBUS, "mirror", "--follow", srv.follow, "--store", mir,
                              "--rcvhwm", "20", "--status-every", "10ms"],
                             stdout=w, stderr=errf)
    os.close(w)
    try:
        reader_away(srv, p, errpath, show_lines(SLOW_N, 3),
                    lambda: evbtest.wchan(p.pid).endswith("pipe_write"), "mirror")
        out = os.fdopen(r, "rb")
        threading.Thread(target=lambda: [lines.put(l) for l in out if not l.startswith(b"#")],
                         daemon=True).start()
        want = 3 + SLOW_N
        deadline = time.monotonic() + 120 * SLOW
        while True:
            try:
                o = json.loads(lines.get(timeout=1))
                if o["applied"] == want and o["state"] == "live":
                    break
            except queue.Empty:
                pass
            check(p.poll() is None, f"mirror exited {p.returncode}: "
                  f"{open(errpath).read()[-2000:]}")
            check(time.monotonic() < deadline, f"mirror never copied seq {want}")
    finally:
        finish(p, "mirror", errpath, 30)
    got = [o["payload"]["i"] for o in cat_json(mir)]
    check(sorted(got) == list(range(want)),
          f"mirror holds {len(got)} events, not 0..{want - 1} once each")
    srv.stop()
    log(f"mirror blocked 9 s with a full SUB queue: alive, {want} events copied once")


def case_slow_service(env):
    """A service whose handler blocks 9 s (stall_service: a "Stall" event)
    with --rcvhwm 20. Required: it lives, applies every event once after
    the stall (its status: applied up to the last seq, applied_events that
    many), and exits 0 on SIGTERM."""
    d = env.path("log")
    make_log(d, show_lines(3))
    srv = Server(env, d, extra=["--heartbeat", "500ms"])
    scmd = env.ep("stall_cmd")
    errpath = env.path("stall.err")
    with open(errpath, "w") as errf:
        p = subprocess.Popen([STALL, "--store", env.path("stall"), "--cmd", scmd,
                              "--follow", srv.follow, "--rcvhwm", "20"],
                             stdout=subprocess.DEVNULL, stderr=errf)

    def show_feed():
        r = run([EVBUS, "status", scmd, "--json"], 30)
        if r.returncode != 0:
            return None
        return next((f for f in json.loads(r.stdout).get("feeds", [])
                     if f["category"] == "show"), None)
    try:
        deadline = time.monotonic() + 20 * SLOW
        while (show_feed() or {}).get("applied") != 3:
            check(p.poll() is None, f"stall_service exited {p.returncode}: "
                  f"{open(errpath).read()[-2000:]}")
            check(time.monotonic() < deadline, "stall_service never applied the first 3")
            time.sleep(0.05)
        srv.append([ev_line("show-stall", "Stall", {"s": 9})])
        reader_away(srv, p, errpath, show_lines(SLOW_N, 4),
                    lambda: "stalling for 9 s" in open(errpath).read(), "stall_service")
        want = 4 + SLOW_N
        deadline = time.monotonic() + 120 * SLOW
        while True:
            f = show_feed() or {}
            if f.get("applied") == want and f.get("state") == "live":
                break
            check(p.poll() is None, f"stall_service exited {p.returncode}: "
                  f"{open(errpath).read()[-2000:]}")
            check(time.monotonic() < deadline, f"stall_service never applied seq {want}: {f}")
            time.sleep(0.1)
        check(f.get("applied_events") == want,
              f"{f.get('applied_events')} events applied, want {want} (each once)")
    finally:
        finish(p, "stall_service", errpath, 30)
    srv.stop()
    log(f"service handler blocked 9 s with a full SUB queue: alive, applied up to seq {want}; "
        f"feed {f}")


def case_restart(env):
    """The publisher stops; events are appended to its log meanwhile (never
    sent live); it comes back: heartbeats show the sniffer what it missed,
    and it fetches them. Two publishers at once, each with its own seqs."""
    d, d2 = env.path("log"), env.path("log2")
    make_log(d, mixed(3))
    make_log(d2, mixed(4))
    srv = Server(env, d)
    # a second publisher on its own endpoints
    p2 = env.start([EVBUS, "serve", "--store", d2, "--pub", env.ep("pub2"), "--catchup",
                    env.ep("cu2"), "--heartbeat", "100ms"])
    p2.wait_err(lambda l: "evbus serve: serving" in l, 20, "second serve")
    follow2 = f"{env.ep('pub2')},{env.ep('cu2')}"
    p = env.start(sniff(srv, "--follow", follow2, "--from-start", "--json", "--count",
                        str(3 + 4 + 15)))
    p.wait_err(lambda l: sum(x.startswith("evbus sniff: live on") for x in p.err) == 2, 20,
               "both publishers live")
    srv.append(mixed(5, start=3))
    srv.stop()
    make_log(d, mixed(5, start=8))  # appended while nobody publishes
    srv = Server(env, d)
    srv.append(mixed(5, start=13))
    check(p.wait_exit(60) == 0, f"sniff across a restart: {p.p.returncode} {p.stderr()}")
    got = json_out(p.outlines)
    one = [o["seq"] for o in got if o["publisher"] == srv.follow]
    two = [o["seq"] for o in got if o["publisher"] == follow2]
    check(sorted(one) == list(range(1, 19)) and len(one) == 18,
          f"first publisher: {one}")
    check(two == [1, 2, 3, 4], f"second publisher: {two}")
    check(p2.term() == 0, "second serve exit")
    srv.stop()
    same_as_log([o for o in got if o["publisher"] == srv.follow], cat_json(d), srv.follow)
    log("publisher restart: missed events fetched; two publishers kept apart")


LONG = "show-" + "L" * 55  # a 60-character stream id
TIME_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


def case_last(env):
    """--from -N (kcat's -o -N): with --until-end exactly the last N events
    of each publisher (its own head), filters applied to those; text rows
    show the time as `log cat` does (its ts) and stay aligned with a
    60-character stream id."""
    d, d2 = env.path("log"), env.path("log2")
    make_log(d, mixed(40) + [ev_line(LONG, "Added", {"n": 40})])
    make_log(d2, mixed(5))
    logged = cat_json(d)
    n = len(logged)
    srv, srv2 = Server(env, d), Server(env, d2, tag="2")
    for a, want in ((["--from", "-5"], list(range(n - 4, n + 1))),
                    (["--from=-5"], list(range(n - 4, n + 1))),
                    (["--from", "-1000"], list(range(1, n + 1))),
                    (["--from", "-10", "--type", "Added"],
                     [e["seq"] for e in logged[-10:] if e["type"] == "Added"]),
                    (["--from", "-9", "--category", "booking"],
                     [e["seq"] for e in logged[-9:] if e["category"] == "booking"])):
        r = run(sniff(srv, "--until-end", "--json", *a), 60)
        got = [o["seq"] for o in json_out(r.stdout.splitlines())]
        check(r.returncode == 0 and got == want,
              f"{a} --until-end: exit {r.returncode}, {got}, want {want}: {r.stderr[-300:]}")
    r = run([EVBUS, "sniff", "--follow", srv.follow, "--follow", srv2.follow, "--from", "-2",
             "--until-end", "--json"], 60)
    got = sorted((o["publisher"], o["seq"]) for o in json_out(r.stdout.splitlines()))
    want = sorted([(srv.follow, n - 1), (srv.follow, n), (srv2.follow, 4), (srv2.follow, 5)])
    check(r.returncode == 0 and got == want,
          f"two publishers --from -2: exit {r.returncode}, {got}, want {want}: {r.stderr}")
    r = run(sniff(srv, "--until-end", "--from", "-4", "--color", "never"), 60)
    rows = r.stdout.splitlines()
    check(r.returncode == 0 and len(rows) == 5 and rows[0].startswith("TIME "),
          f"text --from -4: exit {r.returncode}: {rows} {r.stderr[-300:]}")
    ts = {e["seq"]: e["ts"] for e in logged}
    bad = [l for l in rows[1:] if not re.match(rf"^{TIME_RE}  ", l)
           or l.split()[0] != ts.get(int(l.split()[2]))]
    check(not bad, f"time column is not log cat's ts: {bad}")
    hdr = rows[0]
    cols = {c: hdr.index(c) for c in ("STREAM", "VER", "TYPE", "PAYLOAD")}
    check(LONG not in r.stdout and sum("…" in l for l in rows) == 1,
          f"the 60-character stream id is not cut in the middle: {rows}")
    off = [l for l in rows[1:] if l[cols["TYPE"]:].split()[0] not in ("Added", "Changed",
                                                                      "Removed")
           or not l[cols["PAYLOAD"]:].startswith("{")
           or l[cols["STREAM"] - 2:cols["STREAM"]] != "  "]
    check(not off, f"rows not aligned with the header: {off}")
    srv2.stop()
    srv.stop()
    log(f"--from -N: the last N of each publisher (filters on those); time as log cat's ts; "
        f"rows aligned with a 60-character stream id")


CASES = {
    "last": case_last,
    "restart": case_restart,
    "live": case_live,
    "from_start": case_from_start,
    "until_end": case_until_end,
    "log_order": case_log_order,
    "filters": case_filters,
    "bad_args": case_bad_args,
    "record_replay": case_record_replay,
    "terminal": case_terminal,
    "stats": case_stats,
    "gaps": case_gaps,
    "slow_sniff": case_slow_sniff,
    "slow_mirror": case_slow_mirror,
    "slow_service": case_slow_service,
}


def main():
    if CASE not in CASES:
        print(f"unknown case {CASE}; one of {', '.join(CASES)}", file=sys.stderr)
        return 2
    env = Env()
    ok = False
    try:
        CASES[CASE](env)
        ok = True
    except Fail as e:
        log(f"FAIL: {e}")
    finally:
        env.cleanup(ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
