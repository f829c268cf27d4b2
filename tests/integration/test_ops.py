#!/usr/bin/env python3
"""Operator commands against real processes over ipc:// sockets.

    test_ops.py EVBUS

`evbus serve --cmd` takes appends from `evbus append --to` (good lines, a
version conflict, bad lines: each reported on its own, exit 1) and answers
`evbus status`; an `evbus mirror --cmd` follows it and `status` shows its
feeds live with no lag; an event type the mirror refuses (--refuse-type, a
test-only flag) stalls its feed, `feed retry` leaves it stalled, `feed skip`
moves it past that event, and the mirror's copy lacks exactly that event.
Unreachable and bad endpoints give exit 4 (quickly, naming the endpoint) and
2. No sleep is used to wait for something: every wait polls a condition
with a deadline. EVB_TEST_TMP is the scratch directory.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import Fail, check, wait_for  # noqa: E402
import evbtest  # noqa: E402

EVBUS = sys.argv[1]
log = evbtest.logger("ops")


def run(argv, timeout=60, **kw):
    return evbtest.run([EVBUS, *argv], timeout, **kw)


def status_json(ep, timeout_ms=1000):
    """The parsed status reply, or None when the call failed."""
    r = run(["status", "--json", "--timeout", f"{timeout_ms}ms", ep])
    if r.returncode not in (0, 1):
        return None
    lines = r.stdout.splitlines()
    check(len(lines) == 1, f"status --json printed {len(lines)} lines: {r.stdout!r}")
    return json.loads(lines[0])


def feeds_by_cat(st):
    return {f["category"]: f for f in st["feeds"]}


def cat_json(d):
    r = run(["log", "cat", "--json", d])
    check(r.returncode == 0, f"log cat {d}: exit {r.returncode}: {r.stderr}")
    return [json.loads(l) for l in r.stdout.splitlines()]


def lines_of(*objs):
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs)


def main_test(procs, ep):
    src, mir = os.path.join(procs.base, "src"), os.path.join(procs.base, "mirror")
    pub, cu, cmd, mcmd = ep("pub"), ep("cu"), ep("cmd"), ep("mcmd")

    # ---- serve --cmd, append --to ----
    srv = procs.start(["serve", "--store", src, "--create", "--service", "demo",
                       "--pub", pub, "--catchup", cu, "--cmd", cmd], "serve")
    def serve_up():
        check(srv.poll() is None, f"serve exited: {procs.stderr(srv)}")
        return status_json(cmd, 200)

    wait_for("serve to answer status", serve_up)

    # One size limit, one message: as `append --store` says it (test_bus).
    big = json.dumps({"stream": "big-1", "type": "T", "payload": {"b": "x" * 1100000}})
    r = run(["append", "--to", cmd], input=big + "\n")
    want = ("line 1: append to big-1, event 0: payload: 1100008 bytes, over the limit of "
            "1044480 for payload and metadata")
    check(r.returncode == 1 and want in r.stderr, f"oversized event through --to: exit "
                                                  f"{r.returncode} {r.stderr!r}")

    bid = "0123456789abcdef0123456789abcdef"
    r = run(["append", "--to", cmd, "--json"], input=lines_of(
        {"stream": "show-1", "type": "ShowAdded", "payload": {"n": 1, "s": "\u00e9"}},
        {"stream": "show-1", "type": "Again", "expected_version": 5},
        "not json",
        "",
        {"stream": "booking-1", "type": "Booked", "id": bid},
        {"stream": "booking-1", "type": "Booked", "id": bid},
        {"stream": "show-1", "type": "ShowMoved", "expected_version": 1},
        {"stream": "x-1", "type": "T", "schema": 0},
        {"stream": "x-1", "type": "T", "paylod": {}},
        {"stream": "bad stream", "type": "T"},
        {"stream": "show-2", "type": "ShowAdded", "expected_version": "none"},
        {"stream": "booking-2", "type": "Booked", "payload": {"seats": [1, 2]}}))
    check(r.returncode == 1, f"append --to with bad lines: exit {r.returncode}, want 1; "
                             f"{r.stderr}")
    out = [json.loads(l) for l in r.stdout.splitlines()]
    check([o["line"] for o in out] == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12], f"lines: {out}")
    check([o["ok"] for o in out] ==
          [True, False, False, True, True, True, False, False, False, True, True],
          f"ok flags: {out}")
    check([o.get("seq") for o in out if o["ok"]] == [1, 2, 2, 3, 4, 5], f"seqs: {out}")
    check(out[4]["duplicate"] and not out[3]["duplicate"] and out[4]["id"] == bid,
          f"retry with the same id is not a duplicate: {out}")
    check(out[5]["version"] == 2 and out[5]["stream"] == "show-1", f"version: {out[5]}")
    check("expected version 5" in out[1]["error"] and "at 1" in out[1]["error"],
          f"conflict message does not name the versions: {out[1]}")
    check("not valid JSON" in out[2]["error"], f"bad JSON: {out[2]}")
    check('field "schema"' in out[6]["error"], f"schema: {out[6]}")
    check('unknown field "paylod"' in out[7]["error"], f"typo: {out[7]}")
    check('field "stream"' in out[8]["error"], f"stream: {out[8]}")
    check("line 2:" in r.stderr and "5 of 11 lines failed" in r.stderr, r.stderr)

    # plain output, same format as the offline mode
    r = run(["append", "--to", cmd], input=lines_of({"stream": "show-3", "type": "T"}))
    check(r.returncode == 0 and r.stdout.startswith("line 1: appended seq 6 show-3 "
                                                    "version 1 id "),
          f"append --to text: {r.returncode} {r.stdout!r} {r.stderr}")

    # ---- status of the publisher ----
    serve_st = st = wait_for("serve to publish up to 6",
                  lambda: (lambda s: s if s and s["published"] == 6 else None)(
                      status_json(cmd)))
    check(st["head"] == 6 and st["service"] == "demo" and len(st["log_id"]) == 32,
          f"serve status: {st}")
    cats = {c["name"]: c for c in st["categories"]}
    check(cats["show"]["count"] == 4 and cats["show"]["head"] == 6 and
          cats["booking"]["count"] == 2 and cats["booking"]["head"] == 5, f"categories: {st}")
    check(st["sync"] == "group" and st["synced"] >= 6, f"sync: {st}")
    r = run(["status", cmd])
    check(r.returncode == 0 and "head" in r.stdout and "booking" in r.stdout and
          st["log_id"] in r.stdout, f"status text: {r.returncode} {r.stdout} {r.stderr}")
    log("serve --cmd: appends through append --to, status")

    # ---- a mirror with a command socket ----
    mir_p = procs.start(["mirror", "--follow", f"{pub},{cu}", "--store", mir, "--cmd", mcmd,
                         "--refuse-type", "Refused"], "mirror")

    def mirror_at(n):
        """Both feeds live, no lag, applied up to n (a feed's position is a
        sequence of the publisher's log, not a count of its own events)."""
        def f():
            check(mir_p.poll() is None, f"mirror exited: {procs.stderr(mir_p)}")
            s = status_json(mcmd)
            if not s:
                return None
            fb = feeds_by_cat(s)
            if (set(fb) == {"show", "booking"} and
                    all(x["state"] == "live" and x["lag"] == 0 for x in fb.values()) and
                    all(x["applied"] == n and x["head"] == n for x in fb.values())):
                return s
            return None
        return f

    st = wait_for("the mirror's feeds live with no lag", mirror_at(6))
    fb = feeds_by_cat(st)
    check(fb["show"]["head"] == 6 and fb["show"]["log_id"] == serve_st["log_id"],
          f"mirror feed head/log id: {st} vs {serve_st}")
    check(fb["show"]["publisher"] == f"{pub},{cu}" and fb["show"]["reason"] == "" and
          fb["show"]["applied_events"] == 4 and fb["booking"]["applied_events"] == 2,
          f"mirror status: {st}")
    r = run(["status", mcmd])
    check(r.returncode == 0 and "live" in r.stdout and f"{pub},{cu}" in r.stdout and
          "CATEGORY" in r.stdout, f"mirror status text: {r.returncode} {r.stdout}")
    # A mirror has no command counters: "-", not 0; each feed a row.
    for want in (r"^program {2,}mirror$", r"^commands {2,}-$", r"^uptime {2,}-$",
                 r"^head {2,}6$", r"^  demo +show +live +\S+ +6 +6 +0 ",
                 r"^  demo +booking +live +\S+ +6 +6 +0 "):
        check(re.search(want, r.stdout, re.M), f"mirror status text lacks {want!r}:\n"
                                               f"{r.stdout}")
    log("mirror --cmd: status shows both feeds live, lag 0")

    # ---- a refused event stalls its feed ----
    r = run(["append", "--to", cmd, "--json"], input=lines_of(
        {"stream": "booking-9", "type": "Refused"},
        {"stream": "booking-1", "type": "Booked2"},
        {"stream": "show-1", "type": "ShowMoved"}))
    check(r.returncode == 0, f"append: {r.returncode} {r.stderr}")
    check([json.loads(l)["seq"] for l in r.stdout.splitlines()] == [7, 8, 9], r.stdout)

    def stalled(min_refusals):
        def f():
            s = status_json(mcmd)
            b = s and feeds_by_cat(s)["booking"]
            return b if b and b["state"] == "stalled" and b["refusals"] >= min_refusals \
                else None
        return f

    b = wait_for("the booking feed to stall", stalled(5))
    check(5 <= b["applied"] < 7 and b["head"] == 9 and b["lag"] == 9 - b["applied"],
          f"stalled feed: {b}")
    check("event 7" in b["reason"] and "Refused" in b["reason"], f"reason: {b}")
    def show_at(n):
        s = status_json(mcmd)
        return s if s and feeds_by_cat(s)["show"]["applied"] == n else None

    wait_for("show to reach 9 (a stalled feed holds up no other)", lambda: show_at(9))
    r = run(["status", mcmd])
    check(r.returncode == 1 and "stalled" in r.stdout and "event 7" in r.stdout,
          f"status with a stalled feed: exit {r.returncode} {r.stdout}")
    r = run(["status", "--json", mcmd])
    check(r.returncode == 1 and json.loads(r.stdout)["feeds"], f"--json exit {r.returncode}")

    # retry: the handler still refuses, the feed stalls again
    r = run(["feed", "retry", mcmd, "booking"])
    check(r.returncode == 0, f"feed retry: {r.returncode} {r.stderr}")
    b = wait_for("the booking feed to stall again", stalled(10))
    check(5 <= b["applied"] < 7, f"after retry: {b}")

    # rejections: a live feed, an unknown feed, a sequence behind the feed
    r = run(["feed", "retry", mcmd, f"{pub},{cu}/show"])
    check(r.returncode == 1 and "not stalled" in r.stderr and mcmd in r.stderr,
          f"retry of a live feed: {r.returncode} {r.stderr}")
    r = run(["feed", "skip", mcmd, "nosuch", "3"])
    check(r.returncode == 1 and "nosuch" in r.stderr, f"unknown feed: {r.returncode} "
                                                      f"{r.stderr}")
    r = run(["feed", "skip", mcmd, "booking", "4"])
    check(r.returncode == 1 and "already past 4" in r.stderr,
          f"skip behind: {r.returncode} {r.stderr}")
    r = run(["feed", "skip", mcmd, "booking", "x"])
    check(r.returncode == 2 and "SEQ" in r.stderr, f"bad SEQ: {r.returncode} {r.stderr}")

    # skip the refused event (publisher named by its PUB endpoint alone)
    r = run(["feed", "skip", mcmd, f"{pub}/booking", "7"])
    check(r.returncode == 0, f"feed skip: {r.returncode} {r.stderr}")
    st = wait_for("the mirror live again past the skipped event", mirror_at(9))
    r = run(["status", mcmd])
    check(r.returncode == 0, f"status after skip: {r.returncode} {r.stdout}")
    log("stall, retry (stalls again), skip (moves on)")

    check(procs.term(mir_p) == 0, f"mirror exit: {procs.stderr(mir_p)}")
    check(procs.term(srv) == 0, f"serve exit: {procs.stderr(srv)}")
    source = cat_json(src)
    copy = cat_json(mir)
    check([e["seq"] for e in source] == list(range(1, 10)), f"source: {source}")
    want = [e for e in source if e["seq"] != 7]
    # Categories are applied independently: compare as sets, each once.
    check(sorted(e["origin_seq"] for e in copy) == [e["seq"] for e in want],
          f"mirror origins {[e['origin_seq'] for e in copy]}")
    check(sorted(e["id"] for e in copy) == sorted(e["id"] for e in want),
          "mirror ids differ from the source's (less the skipped one)")
    check(all(e["type"] != "Refused" for e in copy), "the refused event was copied")
    log(f"mirror holds the source less exactly event 7 ({len(copy)} events)")

    # A feed that stops (the publisher's log recreated: another log id) makes
    # the mirror exit 1 at its signal, as its --help says (it exited 0).
    srv = procs.start(["serve", "--store", src, "--pub", pub, "--catchup", cu, "--cmd", cmd],
                      "serve-again")
    wait_for("serve to answer status", serve_up)
    mir_p = procs.start(["mirror", "--follow", f"{pub},{cu}", "--store",
                         os.path.join(procs.base, "mirror2"), "--cmd", mcmd], "mirror2")
    wait_for("the second mirror live", lambda: (status_json(mcmd, 300) or {}).get("feeds")
             and all(f["state"] == "live" for f in status_json(mcmd, 300)["feeds"]))
    check(procs.term(srv) == 0, f"serve exit: {procs.stderr(srv)}")
    srv = procs.start(["serve", "--store", os.path.join(procs.base, "src2"), "--create",
                       "--service", "demo", "--pub", pub, "--catchup", cu, "--cmd", cmd],
                      "serve-new-log")
    wait_for("serve of a new log to answer status", serve_up)
    run(["append", "--to", cmd], input=lines_of({"stream": "show-1", "type": "T"}))
    wait_for("a feed of the mirror stopped", lambda: any(
        f["state"] == "stopped" for f in (status_json(mcmd, 300) or {}).get("feeds", [])))
    rc = procs.term(mir_p)
    check(rc == 1, f"mirror with a stopped feed: exit {rc} {procs.stderr(mir_p)[-500:]}")
    check(procs.term(srv) == 0, f"serve exit: {procs.stderr(srv)}")
    log("a feed stopped by a log id change: the mirror exits 1 at its signal")


def endpoints_test(procs, ep):
    nothing = ep("nothing")
    for argv in (["status", "--timeout", "300ms", nothing],
                 ["feed", "retry", "--timeout", "300ms", nothing, "show"],
                 ["feed", "skip", "--timeout", "300ms", nothing, "show", "3"]):
        t0 = time.monotonic()
        r = run(argv)
        took = time.monotonic() - t0
        check(r.returncode == 4 and nothing in r.stderr,
              f"{argv[:2]} unreachable: exit {r.returncode} {r.stderr}")
        check(took < 3, f"{argv[:2]} took {took:.1f}s with --timeout 300ms")
    r = run(["append", "--to", nothing, "--timeout", "300ms"],
            input=lines_of({"stream": "a-1", "type": "T"}, {"stream": "a-1", "type": "T"}))
    check(r.returncode == 4 and nothing in r.stderr and r.stdout == "" and
          "lines after 1 were not read" in r.stderr,
          f"append --to unreachable: {r.returncode} {r.stdout!r} {r.stderr}")

    # garbage: an endpoint that is not a command socket (a PUB), one that is
    # not an endpoint at all
    d = os.path.join(procs.base, "g")
    srv = procs.start(["serve", "--store", d, "--create", "--service", "g", "--pub",
                       ep("gpub"), "--catchup", ep("gcu")], "gserve")
    wait_for("serve to bind", lambda: "serving" in procs.stderr(srv) or srv.poll())
    check(srv.poll() is None, f"serve exited: {procs.stderr(srv)}")
    t0 = time.monotonic()
    r = run(["status", "--timeout", "300ms", ep("gpub")])
    check(r.returncode == 4 and ep("gpub") in r.stderr and time.monotonic() - t0 < 3,
          f"status on a PUB: {r.returncode} {r.stderr}")
    r = run(["status", "--timeout", "300ms", ep("gcu")])
    check(r.returncode == 4 and ep("gcu") in r.stderr,
          f"status on a catch-up ROUTER: {r.returncode} {r.stderr}")
    check(procs.term(srv) == 0, f"serve exit: {procs.stderr(srv)}")
    for bad in ("not-an-endpoint", "tcp://nohost"):
        r = run(["status", bad])
        check(r.returncode == 2 and bad in r.stderr, f"status {bad}: {r.returncode} "
                                                     f"{r.stderr}")
    r = run(["append", "--to", ep("x"), "--store", d])
    check(r.returncode == 2 and "--to" in r.stderr, f"--to with --store: {r.stderr}")
    r = run(["status"])
    check(r.returncode == 2, f"status without endpoint: {r.returncode}")
    r = run(["feed", "bogus"])
    check(r.returncode == 2 and "retry" in r.stderr, f"feed bogus: {r.stderr}")
    for argv in (["status"], ["feed"], ["feed", "retry"], ["feed", "skip"], ["append"],
                 ["serve"], ["mirror"]):
        r = run([*argv, "--help"])
        check(r.returncode == 0 and "Usage: evbus " + " ".join(argv) in r.stdout,
              f"{argv} --help: {r.returncode} {r.stdout[:200]}")
    r = run(["serve", "--help"])
    check("--cmd" in r.stdout, "serve --help lacks --cmd")
    r = run(["mirror", "--help"])
    check("--cmd" in r.stdout and "--refuse-type" in r.stdout, "mirror --help")
    log("unreachable (exit 4, fast), garbage endpoints, usage errors, --help")


def ipc_served(ep):
    """A process accepts connections on the ipc:// socket file of ep."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(ep[len("ipc://"):])
            return True
        except OSError:
            return False


def ipc_in_use_test(procs, ep):
    """A second `evbus serve` given an ipc:// endpoint that a running one
    serves is refused (exit 4, naming it), and the first keeps its sockets:
    its files still accept connections, a sniffer gets its next event live.
    A socket file left by a process killed with SIGKILL is taken over."""
    pub, cu, cmd = ep("upub"), ep("ucu"), ep("ucmd")

    def serve(name, endpoints):
        return procs.start(["serve", "--store", os.path.join(procs.base, name), "--create",
                            "--service", name, *endpoints], name)

    def up(p):
        wait_for(f"{p.name} to answer status",
                 lambda: check(p.poll() is None, f"{p.name} exited: {procs.stderr(p)}")
                 or status_json(cmd, 200))

    a = serve("ua", ["--pub", pub, "--catchup", cu, "--cmd", cmd])
    up(a)
    for what, eps in (("--pub", ["--pub", pub, "--catchup", ep("ucu2"), "--cmd", ep("ucmd2")]),
                      ("--catchup", ["--pub", ep("upub3"), "--catchup", cu]),
                      ("--cmd", ["--pub", ep("upub4"), "--catchup", ep("ucu4"), "--cmd", cmd])):
        b = serve("ub" + what[2:], eps)
        try:
            rc = b.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Fail(f"a second serve with {what} in use still runs")
        err = procs.stderr(b)
        check(rc == 4 and "in use" in err and eps[eps.index(what) + 1] in err,
              f"second serve, {what} in use: exit {rc}, want 4 naming it; {err}")
        for e in (pub, cu, cmd):
            check(ipc_served(e), f"after a second serve with {what}: {e} no longer served")
    sn = procs.start(["sniff", "--follow", f"{pub},{cu}", "--count", "1"], "usniff")
    wait_for("the sniffer to go live", lambda: "live on" in procs.stderr(sn) or sn.poll())
    r = run(["append", "--to", cmd], input=lines_of({"stream": "u-1", "type": "Live"}))
    check(r.returncode == 0, f"append --to the first serve: {r.returncode} {r.stderr}")
    try:
        rc = sn.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise Fail(f"the sniffer never got the event: {procs.stderr(sn)}")
    check(rc == 0, f"sniff --count 1 of the first serve: exit {rc}; {procs.stderr(sn)}")
    a.kill()
    a.wait()
    check(all(os.path.exists(e[len("ipc://"):]) and not ipc_served(e) for e in (pub, cu, cmd)),
          "SIGKILL left no stale socket files to take over")
    c = serve("ua", ["--pub", pub, "--catchup", cu, "--cmd", cmd])
    up(c)
    check(procs.term(c) == 0, f"serve exit: {procs.stderr(c)}")
    log("ipc endpoints in use refused (exit 4, named), the first serve unharmed; "
        "stale socket files taken over")


def main():
    return evbtest.procs_main("ops", EVBUS, "ops_", "evbo_",
                              [main_test, endpoints_test, ipc_in_use_test])


if __name__ == "__main__":
    sys.exit(main())
