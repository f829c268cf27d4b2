#!/usr/bin/env python3
"""Mixed versions on one bus (bus/PROTOCOL.md, "Versions"): the `evbus` of an
earlier release, built from this repository's history, against this build.

    test_compat.py EVBUS SOURCE_DIR [COMMIT]

COMMIT (default 3c467a6, protocol 1 revision 1: the release before the
readers skipped appended fields) is exported with `git archive` from
SOURCE_DIR and its `evbus` built once (Debug, no tests: about 10 s on
2 cores) into a cache that later runs reuse:
$EVB_COMPAT_CACHE, else $XDG_CACHE_HOME/evbus/compat, else
~/.cache/evbus/compat, one directory per commit, built under a lock.
Without the repository's history (a shallow clone, a tarball) the test
fails saying so: it is never skipped.

Both directions, each with history (catch-up pages) and live events:
  1. the old `serve`; the new `sniff --from-start`, `mirror` (a feed per
     category) and `mirror --log-order`; live events through the old
     `append --to` and the new one (the command socket, both ways);
  2. the new `serve`; the old `sniff --from-start` and `mirror`; live events
     through the old `append --to`.
Each reader must see every event of the log once (ids compared with
`evbus log cat --json`), the log-order copy in the log's order.
Waits poll a condition with a deadline; no sleep stands in for one.
"""
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import Fail, check  # noqa: E402
import evbtest  # noqa: E402

EVBUS, SRC = sys.argv[1:3]
COMMIT = sys.argv[3] if len(sys.argv) > 3 else "3c467a6"
SLOW = 3 if os.environ.get("EVB_SANITIZED") else 1
log = evbtest.logger("compat")


def cache_root():
    if os.environ.get("EVB_COMPAT_CACHE"):
        return os.environ["EVB_COMPAT_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".cache")
    return os.path.join(base, "evbus", "compat")


def dur(prog, n, unit):
    """A duration flag's value: the earlier release takes a bare number in
    the flag's old unit; this one wants the unit written."""
    return str(n) if prog != EVBUS else f"{n}{unit}"


def old_evbus():
    """The evbus of COMMIT: from the cache, or built into it."""
    r = subprocess.run(["git", "-C", SRC, "rev-parse", "--verify", "-q",
                        COMMIT + "^{commit}"], capture_output=True, text=True)
    check(r.returncode == 0,
          f"commit {COMMIT} is not in {SRC}'s history (a shallow clone or a tarball?): "
          "this test builds the earlier release from it; run it in a full clone")
    full = r.stdout.strip()
    d = os.path.join(cache_root(), full)
    os.makedirs(d, exist_ok=True)
    binary = os.path.join(d, "evbus")
    with open(os.path.join(d, "lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)  # a parallel run builds once
        if os.access(binary, os.X_OK):
            log(f"{COMMIT}: cached at {binary}")
            return binary
        work = tempfile.mkdtemp(prefix="build-", dir=d)
        try:
            src = os.path.join(work, "src")
            os.mkdir(src)
            arch = subprocess.Popen(["git", "-C", SRC, "archive", full],
                                    stdout=subprocess.PIPE)
            tar = subprocess.run(["tar", "-x", "-C", src], stdin=arch.stdout,
                                 capture_output=True)
            arch.stdout.close()
            check(arch.wait() == 0 and tar.returncode == 0,
                  f"git archive {COMMIT} | tar: {tar.stderr.decode()[-500:]}")
            env = {k: v for k, v in os.environ.items()
                   if k not in ("CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS")}
            # Debug: its code meets -Werror's maybe-uninitialized at -O2 with
            # this compiler, and nothing here needs speed.
            steps = [["cmake", "-S", src, "-B", os.path.join(work, "b"),
                      "-DCMAKE_BUILD_TYPE=Debug", "-DEVBUS_TESTS=OFF",
                      "-DEVBUS_CRASH_POINTS=OFF"],
                     ["cmake", "--build", os.path.join(work, "b"), "-j",
                      str(os.cpu_count() or 2), "--target", "evbus_cli"]]
            for argv in steps:
                r = subprocess.run(argv, capture_output=True, text=True, env=env,
                                   timeout=900)
                check(r.returncode == 0, f"building {COMMIT}: {' '.join(argv[:3])}: "
                      f"{(r.stdout + r.stderr)[-3000:]}")
            tmp = binary + ".new"
            shutil.copy2(os.path.join(work, "b", "tools", "evbus"), tmp)
            os.replace(tmp, binary)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"{COMMIT}: built into {binary}")
        return binary


class Env(evbtest.DaemonScratch):
    def __init__(self):
        super().__init__("compat_", "evbc_", short=60, suffix="")


def run(argv, timeout=60, **kw):
    return evbtest.run(argv, timeout * SLOW, **kw)


CATS = ["show", "booking", "seat"]


def events(n, start, tag):
    return "".join(json.dumps({"stream": f"{CATS[i % 3]}-{i % 5}", "type": "Changed",
                               "payload": {"n": i, "by": tag}}) + "\n"
                   for i in range(start, start + n))


def wait_line(p, text, what, timeout=20):
    evbtest.wait_for(what, lambda: any(text in l for l in list(p.err)) or
                     p.p.poll() is not None, timeout * SLOW)
    check(any(text in l for l in list(p.err)),
          f"{what}: {p.argv[0]} exited {p.p.returncode}: {p.stderr()[-2000:]}")


class Serve:
    def __init__(self, env, prog, d, tag):
        self.env, self.prog, self.d = env, prog, d
        self.pub, self.cu, self.cmd = env.ep(tag + "p"), env.ep(tag + "c"), env.ep(tag + "m")
        self.follow = f"{self.pub},{self.cu}"
        self.p = env.start([prog, "serve", "--store", d, "--pub", self.pub, "--catchup",
                            self.cu, "--cmd", self.cmd,
                            *(["--heartbeat-ms", "100"] if prog != EVBUS
                              else ["--heartbeat", "100ms"])],
                           f"serve {tag}")
        wait_line(self.p, "serving", f"serve ({tag})'s start line")

    def append(self, prog, n, start, tag):
        r = run([prog, "append", "--to", self.cmd, "--timeout", dur(prog, 10000, "ms")],
                input=events(n, start, tag), timeout=120)
        check(r.returncode == 0, f"{prog} append --to: {r.returncode} {r.stderr[-1500:]}")

    def stop(self):
        self.p.p.terminate()
        rc = self.p.p.wait(30 * SLOW)
        check(rc == 0, f"serve exit {rc}: {self.p.stderr()[-1500:]}")


def make_log(prog, d, n):
    r = run([prog, "append", "--store", d, "--create", "--service", "compat"],
            input=events(n, 0, "history"), timeout=120)
    check(r.returncode == 0, f"{prog} append --store: {r.returncode} {r.stderr[-1500:]}")


def cat_ids(d):
    r = run([EVBUS, "log", "cat", "--json", d], 120)
    check(r.returncode == 0, f"log cat {d}: {r.returncode} {r.stderr[-1500:]}")
    return [json.loads(l)["id"] for l in r.stdout.splitlines()]


def sniff(env, prog, srv, total, name):
    """A sniffer from the start that exits after total events."""
    out = env.path(name + ".jsonl")
    f = open(out, "w")
    p = subprocess.Popen([prog, "sniff", "--follow", srv.follow, "--from-start", "--json",
                          "--count", str(total)], stdout=f, stderr=subprocess.PIPE,
                         text=True)
    f.close()
    return p, out


def sniff_done(p, out, total, name):
    try:
        _, err = p.communicate(timeout=60 * SLOW)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        raise Fail(f"{name} did not print {total} events in time: {err[-1500:]}")
    check(p.returncode == 0, f"{name}: exit {p.returncode}: {err[-1500:]}")
    with open(out) as f:
        return [json.loads(l)["id"] for l in f]


def mirror(prog, srv, d, *extra):
    return run([prog, "mirror", "--follow", srv.follow, "--store", d, *extra,
                "--until-caught-up", "--timeout", dur(prog, int(60 * SLOW), "s")], 90)


def same(what, got, want, ordered=False):
    check(len(got) == len(set(got)), f"{what}: an event twice")
    check(set(got) == set(want),
          f"{what}: {len(set(want) - set(got))} events missing, "
          f"{len(set(got) - set(want))} foreign")
    if ordered:
        check(got == want, f"{what}: not in the log's order")


def old_serve_new_readers(env, old):
    d = env.path("oldlog")
    n_hist, n_live = 2500, 60
    make_log(old, d, n_hist)
    srv = Serve(env, old, d, "o")
    total = n_hist + 2 * n_live
    p, out = sniff(env, EVBUS, srv, total, "new sniff")
    srv.append(old, n_live, n_hist, "old-append")  # while it catches up
    srv.append(EVBUS, n_live, n_hist + n_live, "new-append")  # new client, old socket
    got = sniff_done(p, out, total, "new sniff on old serve")
    r = mirror(EVBUS, srv, env.path("newmirror"))
    check(r.returncode == 0, f"new mirror on old serve: {r.returncode} {r.stderr[-1500:]}")
    r = mirror(EVBUS, srv, env.path("newmirror-lo"), "--log-order")
    check(r.returncode == 0,
          f"new mirror --log-order on old serve: {r.returncode} {r.stderr[-1500:]}")
    srv.stop()
    want = cat_ids(d)
    check(len(want) == total, f"old log holds {len(want)} events, want {total}")
    same("new sniff on old serve", got, want, ordered=True)
    same("new mirror on old serve", cat_ids(env.path("newmirror")), want)
    same("new mirror --log-order on old serve", cat_ids(env.path("newmirror-lo")), want,
         ordered=True)
    log(f"old serve: new sniff, mirror and mirror --log-order got all {total} events "
        "once; old and new append --to both served")


def new_serve_old_readers(env, old):
    d = env.path("newlog")
    n_hist, n_live = 2500, 60
    make_log(EVBUS, d, n_hist)
    srv = Serve(env, EVBUS, d, "n")
    total = n_hist + n_live
    p, out = sniff(env, old, srv, total, "old sniff")
    srv.append(old, n_live, n_hist, "old-append")  # old client, new socket
    got = sniff_done(p, out, total, "old sniff on new serve")
    r = mirror(old, srv, env.path("oldmirror"))
    check(r.returncode == 0, f"old mirror on new serve: {r.returncode} {r.stderr[-1500:]}")
    srv.stop()
    want = cat_ids(d)
    check(len(want) == total, f"new log holds {len(want)} events, want {total}")
    same("old sniff on new serve", got, want)
    same("old mirror on new serve", cat_ids(env.path("oldmirror")), want)
    log(f"new serve: old sniff and old mirror got all {total} events once; "
        "old append --to served")


def main():
    env = Env()
    ok = False
    try:
        old = old_evbus()
        r = run([old, "--version"], 10)
        check(r.returncode == 0, f"{old} --version: {r.returncode} {r.stderr}")
        log(f"old: {r.stdout.strip()} ({COMMIT}); new: {run([EVBUS, '--version']).stdout.strip()}")
        old_serve_new_readers(env, old)
        new_serve_old_readers(env, old)
        ok = True
    except Fail as e:
        log(f"FAIL: {e}")
    finally:
        env.cleanup(ok, log)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
