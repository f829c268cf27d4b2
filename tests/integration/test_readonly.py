#!/usr/bin/env python3
"""Read-only commands change no byte of a log, damaged or not, read it while
its service runs, and need only read permission (store/roenv.h).

    test_readonly.py EVBUS

Checks:
  damaged WAL   a copy of a log whose write-ahead log (*.log) has 16 bytes
                flipped: `log info` (exit 1, a damage line), `verify`,
                `cat`, `export`, `state`, `checkpoints` and a `backup` of it
                leave every file as it was (names, sizes, SHA-256); before,
                LevelDB's recovery rewrote the directory and deleted the
                damaged .log (its events then lost for good). verify names
                the gap once and the index entries into it once per index
                (before: one line per entry, 163 lines). `append --store`
                refuses to open it (exit 3, naming the missing events) and
                changes nothing (before: exit 0, appended after the hole).
  matrix        16 bytes flipped at the start, middle and end of each kind of
                file (write-ahead log, table, MANIFEST, CURRENT; the log's and
                the index's): info/verify/cat exit 0, 1 or 3 (never a crash),
                name the directory when they cannot open it, change no byte,
                and cat gives only events equal to the clean log's, which
                serve + sniff --from-start deliver, no more, no less; where
                cat can read, `log salvage` copies exactly what it read, and
                where nothing opens it salvages a copy LevelDB repaired (all
                of it for a damaged MANIFEST or CURRENT). A damaged index
                (derived) never makes a reader give up.
  torn tail     the write-ahead log's last record cut short (a crash): read
                as the events before it; a writer opens it and appends.
  clean log     the same on an undamaged log, whose events all read back.
  live          `evbus serve` holds the log: `log info` and `log cat` read
                it (exit 0, the served head), verify, export, state and
                checkpoints exit 0 beside it; `log backup` while 2,000 appends
                go through serve writes a copy that verifies clean and equals
                the log's first events up to its head; the server keeps
                serving (an append through it lands, seen by the next read).
  non-root      the log owned by root, files 0644: every read-only verb and a
                backup as user nobody, no byte changed; an unreadable CURRENT
                named with "permission denied" (root only; else exit 77, and
                under CI=true a failure).
"""
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import Fail, check, wait_for  # noqa: E402
import evbtest  # noqa: E402

EVBUS = sys.argv[1]
log = evbtest.logger("readonly")


def run(argv, timeout=120, **kw):
    return evbtest.run([EVBUS, *argv], timeout, **kw)


def tree(d):
    """Every file under d: relative name -> (size, sha256)."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = (os.path.getsize(p), hashlib.sha256(fh.read())
                                              .hexdigest())
    return out


def lines(n, start=0):
    return "".join(json.dumps({"stream": f"show-{i % 17}", "type": "Added",
                               "payload": {"i": i}}) + "\n" for i in range(start, start + n))


def make_log(d, n):
    r = run(["append", "--store", d, "--create", "--service", "demo"], input=lines(n))
    check(r.returncode == 0, f"append: {r.returncode} {r.stderr[-500:]}")


READ_VERBS = (["info"], ["verify"], ["cat", "--json"], ["export"], ["state", "show-3"],
              ["checkpoints"])


def read_all(d, runner=None):
    """The read-only verbs on d, and a backup of it next to it (the source
    must not change either): {verb: completed run}."""
    runner = runner or (lambda argv: run(argv))
    res = {" ".join([v[0], d, *v[1:]]): runner(["log", v[0], d, *v[1:]])
           for v in READ_VERBS}
    bk = d.rstrip("/") + "-bk"
    res["backup " + d] = runner(["log", "backup", d, bk])
    shutil.rmtree(bk, ignore_errors=True)
    return res


def untouched(d, what):
    before = tree(d)
    res = read_all(d)
    after = tree(d)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    check(not changed, f"{what}: read-only commands changed {changed} "
                       f"({[(k, before.get(k), after.get(k)) for k in changed][:3]})")
    return res


def damaged_wal(base):
    d = os.path.join(base, "damaged")
    make_log(d, 2000)
    wals = [f for f in os.listdir(d) if f.endswith(".log")]
    check(len(wals) == 1 and os.path.getsize(os.path.join(d, wals[0])) > 100000,
          f"expected one write-ahead log with the events: {os.listdir(d)}")
    p = os.path.join(d, wals[0])
    with open(p, "r+b") as f:
        f.seek(os.path.getsize(p) // 2)
        b = f.read(16)
        f.seek(os.path.getsize(p) // 2)
        f.write(bytes(x ^ 0xFF for x in b))
    res = untouched(d, "damaged WAL")
    cat = res[f"cat {d} --json"]
    got = len(cat.stdout.splitlines())
    check(0 < got < 2000, f"cat of the damaged log read {got} events (exit {cat.returncode})")
    i = res["info " + d]
    check(i.returncode == 1 and "damage" in i.stdout and "dropping" in i.stdout,
          f"info of the damaged log: exit {i.returncode}, no damage line: {i.stdout}")
    # verify: one line per damaged range, not one per index entry into it.
    v = res["verify " + d]
    probs = [x for x in (v.stdout + v.stderr).splitlines() if x.startswith("problem:")]
    check(v.returncode == 1 and sum(x.startswith("problem: sequence gap:") for x in probs) == 1 and
          not any("points at missing event" in x for x in probs) and len(probs) <= 6,
          f"verify of the damaged log: exit {v.returncode}, {len(probs)} problem lines: "
          f"{probs[:8]}")
    # A writer refuses to go on after the hole, and changes nothing either.
    before = tree(d)
    r = run(["append", "--store", d], input=lines(1, 5000))
    check(r.returncode == 3 and "are missing" in r.stderr and "refusing" in r.stderr,
          f"append to the damaged log: exit {r.returncode} {r.stderr!r}")
    check(tree(d) == before, "the refused append changed the log")
    log(f"damaged WAL: info/verify/cat/export/state changed nothing; {got} of 2000 "
        f"events readable; verify exit 1 in {len(probs)} lines: {probs[0]}; append "
        f"refused: {r.stderr.strip()[:160]}")


def serve_sniff(base, d, read, what):
    """`evbus serve` of the damaged log d and `evbus sniff --from-start`:
    every event cat read, the same seqs and ids, nothing else."""
    pub, cu = "ipc://" + os.path.join(base, "mp"), "ipc://" + os.path.join(base, "mc")
    srv = subprocess.Popen([EVBUS, "serve", "--store", d, "--pub", pub, "--catchup", cu,
                            "--sync", "none"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        r = run(["sniff", "--follow", f"{pub},{cu}", "--from-start", "--json", "--count",
                 str(len(read)), "--timeout", "30s"])
    finally:
        srv.terminate()
        err = srv.communicate(timeout=30)[1]
    got = [(o["seq"], o["id"]) for o in map(json.loads, r.stdout.splitlines())]
    want = [(o["seq"], o["id"]) for o in map(json.loads, read)]
    check(got == want, f"{what}: serve + sniff --from-start gave {len(got)} events, cat "
          f"{len(want)} (sniff exit {r.returncode}: {r.stderr[-300:]}; serve exit "
          f"{srv.returncode}: {err[-300:]})")


def matrix(base):
    """16 bytes flipped in each kind of file of a log (write-ahead log, a
    table, MANIFEST, CURRENT; the index's too) at its start, middle and end:
    info, verify and cat exit 0, 1 or 3 (never a crash), name the directory
    when they cannot open it, and change no byte; what cat reads of a damaged
    table log is a subset of the clean log's events; salvage gets 99% of them
    back when a table's end (its footer and index block) is damaged; `evbus serve` of the
    damaged log and `evbus sniff --from-start` deliver exactly what cat read. The log is appended to
    twice, so that its first events are in a table (the second open replays
    the write-ahead log into one)."""
    clean = os.path.join(base, "matrix")
    make_log(clean, 3000)
    r = run(["append", "--store", clean], input=lines(1, 3000))
    check(r.returncode == 0, f"second append: {r.returncode} {r.stderr}")
    want = {json.loads(x)["seq"]: x for x in
            run(["log", "cat", clean, "--json"]).stdout.splitlines()}
    cases = []
    for sub in ("", "index"):
        names = sorted(os.listdir(os.path.join(clean, sub)))
        for kind, pick in (("wal", lambda n: n.endswith(".log")),
                           ("table", lambda n: n.endswith(".ldb")),
                           ("manifest", lambda n: n.startswith("MANIFEST-")),
                           ("current", lambda n: n == "CURRENT")):
            files = [n for n in names if pick(n)]
            if files:
                cases.append((os.path.join(sub, files[-1]), kind))
    seen, served = [], 0
    for i, (rel, kind) in enumerate(cases):
        for where in ("start", "middle", "end"):
            d = os.path.join(base, f"m{i}{where}")
            shutil.copytree(clean, d)
            p = os.path.join(d, rel)
            n = os.path.getsize(p)
            off = {"start": 0, "middle": n // 2, "end": max(0, n - 16)}[where]
            with open(p, "r+b") as f:
                f.seek(off)
                b = f.read(16)
                f.seek(off)
                f.write(bytes(x ^ 0xFF for x in b))
            before = tree(d)
            codes = []
            for verb in (["info", d], ["verify", d], ["cat", d, "--json"]):
                r = run(["log", *verb])
                codes.append(r.returncode)
                check(r.returncode in (0, 1, 3), f"{rel} {where}: log {verb[0]} exit "
                      f"{r.returncode}: {r.stderr[-300:]}")
                check(r.returncode != 3 or d in r.stderr,
                      f"{rel} {where}: log {verb[0]} exit 3 without naming {d}: {r.stderr}")
                if verb[0] == "cat" and r.returncode != 3:
                    for x in r.stdout.splitlines():
                        o = json.loads(x)
                        check(want.get(o["seq"]) == x, f"{rel} {where}: cat gave event "
                              f"{o['seq']} unlike the clean log's")
                    read = r.stdout.splitlines()
            # salvage keeps every event cat could read; of a log that does
            # not open, it salvages a repaired copy (events of the clean log)
            sv = os.path.join(base, f"m{i}{where}.salvaged")
            r = run(["log", "salvage", d, sv, "--json"])
            check(r.returncode in (0, 1), f"{rel} {where}: salvage exit {r.returncode}: "
                  f"{r.stderr[-300:]}")
            got = [x for x in run(["log", "cat", sv, "--json"]).stdout.splitlines()
                   if not json.loads(x)["stream"].startswith("evbus.hole-")]
            if codes[2] != 3:
                check(got == read, f"{rel} {where}: the salvaged log's events differ from "
                      "what cat read")
            check(all(want.get(json.loads(x)["seq"]) == x for x in got),
                  f"{rel} {where}: the salvaged log has events unlike the clean log's")
            check(not os.path.exists(sv + ".repair"), f"{rel} {where}: {sv}.repair left")
            if kind in ("manifest", "current"):  # the tables and the WAL are whole
                check(len(got) == len(want), f"{rel} {where}: salvage of a repaired copy "
                      f"got {len(got)} of {len(want)} events")
            if kind == "table" and where == "end":
                # the footer and index block damaged: RepairDB drops the table,
                # salvage finds its data blocks by their checksums (rawtable.c)
                check(len(got) >= 0.99 * len(want), f"{rel} {where}: salvage got {len(got)} "
                      f"of {len(want)} events from a table whose index is damaged")
            check(not rel.startswith("index") or 3 not in codes,
                  f"{rel} {where}: a damaged index (derived) made a reader give up: {codes}")
            codes.append(len(got))
            shutil.rmtree(sv)
            check(tree(d) == before, f"{rel} {where}: a read-only command changed the log")
            check(codes[0] != 1 or codes[1] == 1,
                  f"{rel} {where}: info found damage (exit 1) but verify exited {codes[1]}")
            if codes[2] != 3:
                serve_sniff(base, d, read, f"{rel} {where}")
                served += 1
            seen.append(f"{rel}@{where}:{'/'.join(map(str, codes))}")
            shutil.rmtree(d)
    log(f"damage matrix ({len(seen)} cases, exits info/verify/cat, events salvaged of "
        f"{len(want)}; {served} served and sniffed as cat read them): {' '.join(seen)}")


def torn_tail(base):
    """The last record of the write-ahead log cut short (a crash in the middle
    of a write): no hole, so a writer opens it as before, and goes on after
    the last whole event."""
    d = os.path.join(base, "torn")
    make_log(d, 500)
    wal = [os.path.join(d, f) for f in os.listdir(d) if f.endswith(".log")][0]
    os.truncate(wal, os.path.getsize(wal) - 400)  # into the last event's record
    r = run(["log", "info", d, "--json"])
    check(r.returncode == 0, f"info of the torn log: {r.returncode} {r.stderr}")
    head = json.loads(r.stdout)["head"]
    check(495 <= head < 500, f"torn log: head {head}, want the last event(s) cut")
    r = run(["append", "--store", d], input=lines(1, 7000))
    check(r.returncode == 0 and f"appended seq {head + 1} " in r.stdout,
          f"append to the torn log: exit {r.returncode} {r.stdout} {r.stderr}")
    log(f"torn tail: read as {head} events; a writer opens it and appends seq {head + 1}")


def clean_log(base):
    d = os.path.join(base, "clean")
    make_log(d, 3000)
    res = untouched(d, "clean log")
    for k, r in res.items():
        check(r.returncode == 0, f"log {k}: exit {r.returncode} {r.stderr[-500:]}")
    got = [json.loads(x)["seq"] for x in res[f"cat {d} --json"].stdout.splitlines()]
    check(got == list(range(1, 3001)), f"cat read {len(got)} events, not 1..3000")
    # A backup across file systems (tmpfs): nothing can be linked, all copied.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    if shm and os.stat(shm).st_dev != os.stat(d).st_dev:
        bk = tempfile.mkdtemp(prefix="evb-bk-", dir=shm)
        try:
            r = run(["log", "backup", d, os.path.join(bk, "log"), "--json"])
            check(r.returncode == 0, f"backup to tmpfs: {r.returncode} {r.stderr}")
            bi = json.loads(r.stdout)
            check(bi["files_linked"] == 0 and bi["head"] == 3000 and bi["bytes_copied"] > 0,
                  f"backup to tmpfs: {bi}")
            r = run(["log", "verify", os.path.join(bk, "log")])
            check(r.returncode == 0, f"verify of the tmpfs backup: {r.returncode} {r.stdout}")
        finally:
            shutil.rmtree(bk, ignore_errors=True)
        log(f"clean log: backup to tmpfs copied {bi['bytes_copied']} bytes, verifies")
    r = run(["log", "backup", d, d])
    check(r.returncode == 4 and "already exists" in r.stderr, f"backup onto itself: {r.stderr}")
    log("clean log: every verb exit 0, nothing changed, 3000 events read")
    return d


def live(base, d):
    cmd = "ipc://" + os.path.join(base, "cmd")
    srv = subprocess.Popen([EVBUS, "serve", "--store", d, "--pub",
                            "ipc://" + os.path.join(base, "pub"), "--catchup",
                            "ipc://" + os.path.join(base, "cu"), "--cmd", cmd],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("serve to answer status",
                 lambda: check(srv.poll() is None, "serve exited") or
                 run(["status", "--timeout", "200ms", cmd]).returncode == 0)
        r = run(["append", "--to", cmd], input=lines(500, 3000))
        check(r.returncode == 0, f"append --to: {r.returncode} {r.stderr[-500:]}")
        r = run(["log", "info", d, "--json"])
        check(r.returncode == 0, f"log info while served: exit {r.returncode} {r.stderr}")
        head = json.loads(r.stdout)["head"]
        check(head == 3500, f"log info while served: head {head}, want 3500")
        r = run(["log", "cat", d, "--json"])
        check(r.returncode == 0 and len(r.stdout.splitlines()) == 3500,
              f"log cat while served: exit {r.returncode}, {len(r.stdout.splitlines())} "
              f"events; {r.stderr[-500:]}")
        for v in READ_VERBS[1:]:
            r = run(["log", v[0], d, *v[1:]])
            check(r.returncode == 0, f"log {v[0]} while served: exit {r.returncode} "
                                     f"{r.stderr[-500:]}")
        # A backup while appends go on: the log as of the backup's start.
        feeder = subprocess.Popen([EVBUS, "append", "--to", cmd], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            feeder.stdin.write(lines(2000, 10000).encode())
            feeder.stdin.flush()
            bk = os.path.join(base, "backup")
            r = run(["log", "backup", d, bk, "--json"])
            check(r.returncode == 0, f"log backup while served: {r.returncode} {r.stderr}")
            bi = json.loads(r.stdout)
        finally:
            feeder.stdin.close()
            feeder.wait(timeout=60)
        check(feeder.returncode == 0, f"the appends during the backup: {feeder.returncode}")
        r = run(["log", "verify", bk])
        check(r.returncode == 0, f"verify of the backup: {r.returncode} {r.stdout[-300:]}")
        got = [json.loads(x) for x in run(["log", "cat", bk, "--json"]).stdout.splitlines()]
        check(len(got) == bi["head"] >= 3500, f"backup holds {len(got)}, head {bi['head']}")
        src = [json.loads(x) for x in run(["log", "cat", d, "--json", "--to",
                                           str(bi["head"])]).stdout.splitlines()]
        check(got == src, "the backup differs from the log's first events")
        r = run(["append", "--to", cmd], input=lines(1, 3500))
        check(r.returncode == 0, f"append after the reads: {r.returncode} {r.stderr}")
        r = run(["log", "info", d, "--json"])
        check(r.returncode == 0 and json.loads(r.stdout)["head"] == 5501,
              f"the next read: {r.returncode} {r.stdout[:300]} {r.stderr}")
    finally:
        srv.terminate()
        err = srv.communicate(timeout=30)[1]
    check(srv.returncode == 0, f"serve exit {srv.returncode}: {err[-1000:]}")
    log(f"live: info and cat read the served log (head 3500); a backup during appends "
        f"(head {bi['head']}, {bi['files_linked']} tables linked) verifies and equals the "
        f"log's first events; serve unharmed")


def non_root(base, d):
    if os.geteuid() != 0:
        return False
    ro = tempfile.mkdtemp(prefix="evb-ro-")
    try:
        os.chmod(ro, 0o755)
        dst = os.path.join(ro, "log")
        shutil.copytree(d, dst)
        for root, dirs, files in os.walk(dst):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        nobody = pwd.getpwnam("nobody")

        def as_nobody(argv):
            return subprocess.run([EVBUS, *argv], capture_output=True, text=True,
                                  timeout=120, user=nobody.pw_uid, group=nobody.pw_gid,
                                  extra_groups=[], cwd="/")
        before = tree(dst)
        r = as_nobody(["log", "info", dst, "--json"])
        check(r.returncode == 0 and json.loads(r.stdout)["head"] == 5501,
              f"log info as nobody: exit {r.returncode} {r.stdout[:200]} {r.stderr}")
        r = as_nobody(["log", "cat", dst, "--json"])
        check(r.returncode == 0 and len(r.stdout.splitlines()) == 5501,
              f"log cat as nobody: exit {r.returncode} {r.stderr}")
        # every other verb, and a backup into a directory nobody can write in
        os.chmod(ro, 0o1777)
        for k, r in read_all(dst, as_nobody).items():
            check(r.returncode == 0, f"log {k} as nobody: exit {r.returncode} {r.stderr[-300:]}")
        check(tree(dst) == before, "reading as nobody changed the log")
        os.chmod(os.path.join(dst, "CURRENT"), 0o600)
        r = as_nobody(["log", "info", dst])
        check(r.returncode != 0 and "permission denied" in r.stderr and "CURRENT" in r.stderr,
              f"an unreadable CURRENT: exit {r.returncode} {r.stderr}")
    finally:
        shutil.rmtree(ro, ignore_errors=True)
    log("non-root: nobody reads a root-owned 0644 log with every read-only verb and backs "
        "it up; an unreadable file is named")
    return True


def main():
    base = evbtest.scratch_dir("readonly_", short=60)
    t0 = time.monotonic()
    ok = False
    try:
        damaged_wal(base)
        torn_tail(base)
        d = clean_log(base)
        matrix(base)
        live(base, d)
        rooted = non_root(base, d)
        ok = True
    except Fail as e:
        print(f"[readonly] FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        if ok:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"[readonly] kept {base}", file=sys.stderr)
    log(f"ok in {time.monotonic() - t0:.1f}s")
    if not rooted:
        log("non-root case not run: needs root to make a log it does not own")
        return 1 if os.environ.get("CI") == "true" else 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
