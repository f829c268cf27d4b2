#!/usr/bin/env python3
"""A log with a damaged table loses nothing more than the damaged block:
readers, the bus and salvage all go on after the hole.

    test_damaged.py EVBUS

A log of 20,000 events (in tables) has 16 bytes flipped in the middle of its
largest table; LevelDB's block checksum then fails for one block. Checks:
  cat/export    read every event but the block's (exit 1), naming the hole
                once ("events A..B cannot be read"); before, `log cat`
                stopped at the hole.
  serve+sniff   `evbus sniff --from-start` prints every readable event (the
                same seqs and ids as `log cat`), says where the hole is and
                goes on after it; serve logs the hole. Before, the page that
                held the damage failed and nothing after it came.
  mirror        a mirror's feed stalls at the hole: `evbus status` shows
                state stalled and "hole": [A, B]; `evbus feed skip` at B
                lets it go on, and the mirror then holds every readable event.
  salvage       `evbus log salvage` (exit 1) writes a log with the same log
                id in which every readable event is byte-identical at its
                seq (`log cat --json` lines equal) and each lost seq holds a
                marker (stream evbus.hole-A, type Unreadable, payload {from,
                to}); verify names the hole in one line; a writer opens it
                and appends; the damaged log is unchanged. A salvage of the
                clean log exits 0 and equals it; of a log whose write-ahead
                log lost records, it fills that hole too and the copy takes
                appends, which the damaged log refuses.
  one bit       a log whose index is gone (every event is the unindexed
                tail a read-only open loads) and whose payloads are random
                (snappy keeps them as they are), one bit flipped at three
                places in three copies: cat exits 1 naming the hole and
                prints no event that differs from the clean log's, verify
                exits 1, info exits 1 with `tail_damage`, salvage lists the
                hole. Before, the open read the
                tail without block checksums and put the block in the cache,
                where the checked reads found it: cat exited 0 printing the
                garbled event, verify passed, salvage copied it as good.
"""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import Fail, check, wait_for  # noqa: E402
import evbtest  # noqa: E402

EVBUS = sys.argv[1]
log = evbtest.logger("damaged")


def run(argv, timeout=120, **kw):
    return evbtest.run([EVBUS, *argv], timeout, **kw)


def lines(n, start=0):
    return "".join(json.dumps({"stream": f"show-{i % 17}", "type": "Added",
                               "payload": {"i": i, "pad": "x" * 100}}) + "\n"
                   for i in range(start, start + n))


def make_log(d, n):
    r = run(["append", "--store", d, "--create", "--service", "demo"], input=lines(n))
    check(r.returncode == 0, f"append: {r.returncode} {r.stderr[-500:]}")
    # A second open replays the write-ahead log into a table.
    r = run(["append", "--store", d], input="")
    check(r.returncode == 0, f"reopen: {r.returncode} {r.stderr[-500:]}")


def flip(path, off, n=16):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(n)
        f.seek(off)
        f.write(bytes(x ^ 0xFF for x in b))


def cat(d, *extra):
    r = run(["log", "cat", d, "--json", *extra])
    return r, [json.loads(x) for x in r.stdout.splitlines()]


def table_damage(base, clean):
    d = os.path.join(base, "table")
    shutil.copytree(clean, d)
    tables = sorted((f for f in os.listdir(d) if f.endswith(".ldb")),
                    key=lambda f: os.path.getsize(os.path.join(d, f)))
    p = os.path.join(d, tables[-1])
    flip(p, os.path.getsize(p) // 2)
    r, evs = cat(d)
    seqs = [e["seq"] for e in evs]
    lost = sorted(set(range(1, 20001)) - set(seqs))
    check(r.returncode == 1 and 0 < len(lost) < 200,
          f"cat of the damaged table: exit {r.returncode}, {len(evs)} events: {r.stderr}")
    a, b = lost[0], lost[-1]
    check(lost == list(range(a, b + 1)), f"cat lost {lost}, not one range")
    check(f"events {a}..{b} cannot be read" in r.stderr and r.stderr.count("cannot be read")
          == 1, f"cat's report of the hole: {r.stderr}")
    _, want = cat(clean)
    check(evs == [e for e in want if not a <= e["seq"] <= b],
          "cat of the damaged log differs from the clean log's events")
    r = run(["log", "export", d])
    check(r.returncode == 1 and len(r.stdout.splitlines()) == 1 + len(evs) and
          f"events {a}..{b} cannot be read" in r.stderr,
          f"export of the damaged table: exit {r.returncode}, {len(r.stdout.splitlines())} "
          f"lines: {r.stderr}")
    log(f"table damage: events {a}..{b} lost; cat/export read the other {len(evs)}, "
        f"naming the hole once")
    return d, evs, (a, b)


def serve_and_read(base, d, evs, hole):
    a, b = hole
    pub, cu = "ipc://" + os.path.join(base, "p"), "ipc://" + os.path.join(base, "c")
    mcmd = "ipc://" + os.path.join(base, "m")
    srv = subprocess.Popen([EVBUS, "serve", "--store", d, "--pub", pub, "--catchup", cu,
                            "--sync", "none"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    mir = None
    try:
        r = run(["sniff", "--follow", f"{pub},{cu}", "--from-start", "--json", "--count",
                 str(len(evs)), "--timeout", "60s"])
        got = [json.loads(x) for x in r.stdout.splitlines()]
        check(r.returncode == 0 and [(e["seq"], e["id"]) for e in got] ==
              [(e["seq"], e["id"]) for e in evs],
              f"sniff --from-start: exit {r.returncode}, {len(got)} of {len(evs)} events: "
              f"{r.stderr[-800:]}")
        check(f"events {a}..{b} of its log cannot be read" in r.stderr,
              f"sniff did not name the hole: {r.stderr[-800:]}")
        mdir = os.path.join(base, "mirror")
        mir = subprocess.Popen([EVBUS, "mirror", "--follow", f"{pub},{cu}", "--store", mdir,
                                "--service", "mirror", "--cmd", mcmd],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def feed():
            check(mir.poll() is None, "mirror exited")
            s = run(["status", "--json", "--timeout", "500ms", mcmd])
            # exit 1 while a feed is stalled: the JSON is there all the same
            fs = json.loads(s.stdout)["feeds"] if s.returncode in (0, 1) else []
            return fs[0] if fs else None

        last = {}

        def stalled():
            last["feed"] = feed()
            return last["feed"] if last["feed"] and last["feed"]["state"] == "stalled" else None
        try:
            f = wait_for("the mirror's feed to stall at the hole", stalled)
        except Fail as e:
            raise Fail(f"{e}; its last status: {last.get('feed')}")
        check(f.get("hole") == [a, b] and f["applied"] == a - 1 and
              f"events {a}..{b}" in f["reason"], f"stalled feed: {f}")
        r = run(["feed", "skip", mcmd, "show", str(b)])
        check(r.returncode == 0, f"feed skip: {r.returncode} {r.stderr}")
        f = wait_for("the mirror to apply every readable event",
                     lambda: (lambda x: x if x and x["applied"] == 20000 else None)(feed()))
        check(f["state"] == "live" and f["applied_events"] == len(evs),
              f"mirror after the skip: {f}")
    finally:
        if mir is not None:
            mir.terminate()
            merr = mir.communicate(timeout=30)[1]
        srv.terminate()
        err = srv.communicate(timeout=30)[1]
    check(srv.returncode == 0 and f"events {a}..{b}" in err and "cannot be read" in err,
          f"serve: exit {srv.returncode}, no line about the hole: {err[-800:]}")
    check(mir.returncode == 0 and "STALLED" in merr, f"mirror: exit {mir.returncode}: "
          f"{merr[-800:]}")
    r, mevs = cat(mdir)
    check(r.returncode == 0 and [e["id"] for e in mevs] == [e["id"] for e in evs],
          f"the mirror's log: exit {r.returncode}, {len(mevs)} events")
    log(f"serve+sniff: {len(got)} events, the hole named, serve logged it; mirror stalled "
        f"with hole [{a}, {b}], went on after `feed skip`, holds {len(mevs)} events")


def salvage(base, d, evs, hole, clean):
    a, b = hole
    before = {f: open(os.path.join(d, f), "rb").read() for f in os.listdir(d)
              if os.path.isfile(os.path.join(d, f))}
    dst = os.path.join(base, "salvaged")
    r = run(["log", "salvage", d, dst, "--json"])
    check(r.returncode == 1, f"salvage: exit {r.returncode} {r.stderr}")
    si = json.loads(r.stdout)
    check(si["holes"] == [[a, b]] and si["unreadable"] == b - a + 1 and
          si["events"] == len(evs) and si["head"] == 20000, f"salvage said {si}")
    check(f"events {a}..{b} lost" in r.stderr, f"salvage did not name the hole: {r.stderr}")
    after = {f: open(os.path.join(d, f), "rb").read() for f in os.listdir(d)
             if os.path.isfile(os.path.join(d, f))}
    check(before == after, "salvage changed the damaged log")
    r, got = cat(dst)
    check(r.returncode == 0 and len(got) == 20000, f"cat of the copy: {r.returncode} "
          f"{len(got)} {r.stderr[-300:]}")
    check([e for e in got if not a <= e["seq"] <= b] == evs,
          "the copy's readable events differ from the damaged log's")
    marks = [e for e in got if a <= e["seq"] <= b]
    check(all(e["stream"] == f"evbus.hole-{a}" and e["type"] == "Unreadable" and
              e["payload"] == {"from": a, "to": b} for e in marks), f"markers: {marks[:2]}")
    r = run(["log", "verify", dst])
    probs = [x for x in r.stdout.splitlines() if x.startswith("problem")]
    check(r.returncode == 1 and len(probs) == 1 and f"events {a}..{b} were lost" in probs[0],
          f"verify of the copy: exit {r.returncode}: {r.stdout[-800:]}")
    r = run(["append", "--store", dst], input=lines(1, 20000))
    check(r.returncode == 0 and "appended seq 20001 " in r.stdout,
          f"append to the copy: {r.returncode} {r.stdout} {r.stderr}")
    # A clean log: exit 0, the same events.
    cdst = os.path.join(base, "salvaged-clean")
    r = run(["log", "salvage", clean, cdst])
    check(r.returncode == 0, f"salvage of the clean log: {r.returncode} {r.stderr}")
    check(cat(cdst)[1] == cat(clean)[1], "the clean log's copy differs from it")
    r = run(["log", "salvage", clean, cdst])
    check(r.returncode == 4 and "already exists" in r.stderr, f"salvage onto a copy: {r.stderr}")
    log(f"salvage: {si['events']} events byte-identical at their seqs, markers at "
        f"{a}..{b}, verify names it once, the copy takes appends; clean log copied as is")


def wal_damage(base):
    """Events lost in the write-ahead log: the log refuses appends after the
    hole; its salvaged copy fills it with markers and takes them."""
    d = os.path.join(base, "wal")
    r = run(["append", "--store", d, "--create", "--service", "demo"], input=lines(2000))
    check(r.returncode == 0, f"append: {r.returncode} {r.stderr[-300:]}")
    wal = [os.path.join(d, f) for f in os.listdir(d) if f.endswith(".log")][0]
    flip(wal, os.path.getsize(wal) // 2)
    r = run(["append", "--store", d], input=lines(1, 2000))
    check(r.returncode == 3, f"append to the damaged WAL log: {r.returncode} {r.stderr}")
    dst = os.path.join(base, "wal-salvaged")
    r = run(["log", "salvage", d, dst, "--json"])
    check(r.returncode == 1, f"salvage of the WAL log: {r.returncode} {r.stderr}")
    si = json.loads(r.stdout)
    check(len(si["holes"]) >= 1 and si["events"] + si["unreadable"] == si["head"],
          f"salvage of the WAL log said {si}")
    r = run(["append", "--store", dst], input=lines(1, 2000))
    check(r.returncode == 0 and f"appended seq {si['head'] + 1} " in r.stdout,
          f"append to the WAL log's copy: {r.returncode} {r.stdout} {r.stderr}")
    log(f"WAL damage: the log refuses appends; its copy ({si['events']} events, holes "
        f"{si['holes']}) takes them")


def one_bit(base):
    clean = os.path.join(base, "bits")
    data = "".join(json.dumps({"stream": f"show-{i % 17}", "type": "Added",
                               "payload": {"r": os.urandom(48).hex()}}) + "\n"
                   for i in range(6000))
    r = run(["append", "--store", clean, "--create", "--service", "demo"], input=data)
    check(r.returncode == 0, f"append: {r.returncode} {r.stderr[-500:]}")
    r = run(["append", "--store", clean], input="")
    check(r.returncode == 0, f"reopen: {r.returncode} {r.stderr[-500:]}")
    _, want = cat(clean)
    want = {e["seq"]: e for e in want}
    for frac in (0.3, 0.5, 0.7):
        d = os.path.join(base, f"bit{int(frac * 10)}")
        shutil.copytree(clean, d)
        shutil.rmtree(os.path.join(d, "index"))
        t = max((f for f in os.listdir(d) if f.endswith(".ldb")),
                key=lambda f: os.path.getsize(os.path.join(d, f)))
        p = os.path.join(d, t)
        off = int(os.path.getsize(p) * frac)
        with open(p, "r+b") as f:
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 1]))
        r, evs = cat(d)
        altered = [e["seq"] for e in evs if e != want.get(e["seq"])]
        check(r.returncode == 1 and "cannot be read" in r.stderr and not altered and
              len(evs) < len(want),
              f"cat of a bit flipped at {t}@{off}: exit {r.returncode}, {len(evs)} events, "
              f"altered {altered[:5]}: {r.stderr[-400:]}")
        r = run(["log", "verify", d])
        check(r.returncode == 1, f"verify of a bit flipped at {t}@{off}: exit {r.returncode}")
        r = run(["log", "info", d, "--json"])
        info = json.loads(r.stdout) if r.stdout.strip() else {}
        check(r.returncode == 1 and info.get("tail_damage", {}).get("count", 0) > 0,
              f"info of a bit flipped at {t}@{off}: exit {r.returncode} {r.stdout[-300:]}")
        r = run(["log", "salvage", d, d + "-salvaged", "--json"])
        si = json.loads(r.stdout) if r.stdout.strip() else {}
        check(r.returncode == 1 and si.get("holes"),
              f"salvage of a bit flipped at {t}@{off}: exit {r.returncode} {r.stdout[-300:]}")
    log("one bit: cat, verify, info and salvage name the damage at three places; no "
        "garbled event")


def main():
    base = evbtest.scratch_dir("damaged_", short=60)
    t0 = time.monotonic()
    ok = False
    try:
        clean = os.path.join(base, "clean")
        make_log(clean, 20000)
        d, evs, hole = table_damage(base, clean)
        serve_and_read(base, d, evs, hole)
        salvage(base, d, evs, hole, clean)
        wal_damage(base)
        one_bit(base)
        ok = True
    except Fail as e:
        print(f"[damaged] FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        if ok:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"[damaged] kept {base}", file=sys.stderr)
    log(f"ok in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
