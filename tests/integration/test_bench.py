#!/usr/bin/env python3
"""`evbus bench` checks what it prints, on tiny logs (figures are not asserted:
performance is read from the bench's output, never timed in a test).

    test_bench.py EVBUS

- `--json` prints one object a line with name, unit, ours, baseline, ratio
  and events for the store cases, `append_b1000_ids` among them (ids the
  caller supplies), and for `catchup` the publisher's peak RssAnon and
  RssFile apart from its VmHWM;
- `--scale --sizes A,B` runs every case at both sizes (JSON lines name them)
  and, in text, ends with the ratio curve: one row per case, a ratio per
  size, and the last over the first;
- the work directory is removed afterwards;
- `--case booking --to RES_CMD,BK_CMD` loads two services started here (as
  an operator runs them): two runs against one deployment each get their
  own run tag, every booking of both is confirmed (the booking log holds
  exactly 2 events a booking, each run's shows have all their seats
  reserved), the services keep running; `--rate` paces the load, so the run
  can't end before its last booking is due;
- `--case soak` books and cancels again (a fixed set of shows): every seat
  ends free, and its lines carry the RssAnon figures;
- bad flags exit 2 naming the flag.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import check, expect, jlines  # noqa: E402
import evbtest  # noqa: E402

EVBUS = sys.argv[1]
log = evbtest.logger("bench")
STORE_CASES = ["append_b1000", "append_indexed_b1000", "append_b1000_ids", "read_range",
               "read_category"]


def bench(work, *args, timeout=300):
    return evbtest.run([EVBUS, "bench", "--dir", work, *args], timeout)


def call(ep, cmd, args=None):
    argv = [EVBUS, "call", ep, cmd, "--json", "--timeout", "5000ms"]
    if args is not None:
        argv += ["--payload", json.dumps(args)]
    r = expect(evbtest.run(argv, 30), 0, f"call {cmd}")
    return json.loads(r.stdout)


def case_to(work):
    """The booking case against services that run on their own."""
    env = evbtest.DaemonScratch("bench-to-", "evbbt_")
    ok = False
    try:
        sdir = os.path.join(os.path.dirname(os.path.abspath(EVBUS)), "..", "services")
        ep = {n: env.ep(n) for n in ("res.pub", "res.cu", "res.cmd", "bk.pub", "bk.cu",
                                     "bk.cmd")}
        res = env.start([os.path.join(sdir, "evbus-reservation"), "--store",
                         env.path("res"), "--pub", ep["res.pub"], "--catchup", ep["res.cu"],
                         "--cmd", ep["res.cmd"], "--follow",
                         ep["bk.pub"] + "," + ep["bk.cu"]], "reservation")
        bk = env.start([os.path.join(sdir, "evbus-booking"), "--store", env.path("bk"),
                        "--pub", ep["bk.pub"], "--catchup", ep["bk.cu"], "--cmd", ep["bk.cmd"],
                        "--follow", ep["res.pub"] + "," + ep["res.cu"],
                        "--hold-timeout", "10m"], "booking")
        to = ep["res.cmd"] + "," + ep["bk.cmd"]
        runs = []
        for extra in ([], ["--rate", "100"]):
            r = expect(bench(work, "--case", "booking", "--to", to, "--events", "2500",
                             "--json", *extra), 0, f"bench --to {' '.join(extra)}")
            lines = jlines(r.stdout)
            check([x["name"] for x in lines] == ["booking_e2e_vs_roundtrip",
                                                 "booking_e2e_vs_append", "booking_p99",
                                                 "booking_p50"], f"--to lines: {lines}")
            first = lines[0]
            check(first["events"] == 50 and first["run_tag"] != "" and
                  "rss_anon_mb" not in first and "running services" in first["placement"],
                  f"--to: first line {first}")
            runs.append(first)
        check(runs[0]["run_tag"] != runs[1]["run_tag"], f"one run tag twice: {runs}")
        check(runs[1]["rate"] == 100 and runs[1]["e2e_s"] >= 49 / 100,
              f"--rate 100: 50 bookings done in {runs[1]['e2e_s']} s")
        check(res.p.poll() is None and bk.p.poll() is None,
              f"a service stopped: {res.stderr()[-500:]} {bk.stderr()[-500:]}")
        head = call(ep["bk.cmd"], "status")["head"]
        check(head == 2 * 100, f"the booking log holds {head} events, want 2 a booking")
        for run in runs:
            seats = sum(call(ep["res.cmd"], "show", {"show": f"{run['run_tag']}s{i}"})
                        ["reserved"] for i in range(run["shows"]))
            check(seats == 50, f"run {run['run_tag']}: {seats} seats reserved of 50")
        log(f"--to: two runs ({runs[0]['ours']:.0f} and {runs[1]['ours']:.0f} bookings/s, "
            f"the second paced at 100/s), every booking confirmed")
        ok = True
    finally:
        env.cleanup(ok, log)


def main():
    work = evbtest.scratch_dir("bench-")
    try:
        r = expect(bench(work, "--events", "3000", "--json", "--case",
                         ",".join(STORE_CASES + ["catchup"])), 0, "bench --json")
        lines = jlines(r.stdout)
        names = [x["name"] for x in lines]
        check(names == STORE_CASES + ["catchup"], f"cases printed: {names}")
        for x in lines:
            for k in ("name", "unit", "ours", "baseline", "ratio", "events"):
                check(k in x, f"{x['name']}: no {k} in {x}")
            check(x["ours"] > 0 and x["baseline"] > 0 and x["ratio"] > 0,
                  f"{x['name']}: a figure is not positive: {x}")
            check(abs(x["ratio"] - x["ours"] / x["baseline"]) < 0.002 + 0.001 * x["ratio"],
                  f"{x['name']}: ratio is not ours / baseline: {x}")
        check(all(x["events"] == 3000 for x in lines if x["name"] != "read_category"),
              f"events: {[x['events'] for x in lines]}")
        mem = lines[-1].get("peak_rss_kb", {})
        check(mem.get("pub_anon", -1) > 0 and mem.get("pub_file", -1) >= 0,
              f"catchup: publisher RssAnon/RssFile peaks missing: {mem}")
        check(mem["pub_anon"] <= mem["pub"] and mem["pub_file"] <= mem["pub"],
              f"catchup: a sampled peak above the publisher's VmHWM: {mem}")
        check(os.listdir(work) == [], f"work directory left behind: {os.listdir(work)}")
        log(f"--json: {len(lines)} lines; catchup publisher memory {mem}")

        r = expect(bench(work, "--scale", "--sizes", "1500,3000", "--json", "--case",
                         "append_b1000_ids,read_range"), 0, "bench --scale --json")
        got = [(x["name"], x["events"]) for x in jlines(r.stdout)]
        check(got == [("append_b1000_ids", 1500), ("read_range", 1500),
                      ("append_b1000_ids", 3000), ("read_range", 3000)],
              f"--scale lines: {got}")
        r = expect(bench(work, "--scale", "--sizes", "1500,3000", "--case",
                         "append_b1000,read_range"), 0, "bench --scale")
        tail = r.stdout[r.stdout.index("ratio curve"):].splitlines()
        check("1,500" in tail[0] and "3,000" in tail[0], f"curve header: {tail[0]!r}")
        rows = {line.split()[0]: line.split()[1:] for line in tail[1:] if line.strip()}
        check(sorted(rows) == ["append_b1000", "read_range"], f"curve rows: {rows}")
        for name, cells in rows.items():
            a, b, last = (float(c) for c in cells)
            check(abs(last - b / a) < 0.01 + 0.01 * last,
                  f"{name}: last/first {last} is not {b} / {a}")
        check(os.listdir(work) == [], f"work directory left behind: {os.listdir(work)}")
        log(f"--scale: curve {rows}")

        case_to(work)
        check(os.listdir(work) == [], f"work directory left behind: {os.listdir(work)}")

        # The soak case on a tiny scale: every booking is cancelled again, so
        # the bench's own check (exit 1 otherwise) finds every seat free.
        r = expect(bench(work, "--case", "soak", "--events", "10000", "--json"), 0,
                   "bench --case soak")
        lines = jlines(r.stdout)
        check([x["name"] for x in lines] == ["soak_e2e_vs_roundtrip", "soak_e2e_vs_append",
                                             "soak_p99", "soak_p50"], f"soak lines: {lines}")
        first = lines[0]
        check(first["events"] == 200 and first["shows"] == 100 and
              "rss_slope_mb_per_100k" in first and lines[1]["appends_per_booking"] == 6,
              f"soak: first lines {lines[:2]}")
        log(f"soak: {first['ours']:.0f} bookings/s booked and cancelled, RssAnon "
            f"{first['rss_anon_mb']}")

        for argv, flag in ((["--scale", "--quick"], "--scale"),
                           (["--to", "ipc:///a,ipc:///b"], "--to"),
                           (["--case", "booking", "--to", "ipc:///a"], "--to"),
                           (["--case", "booking", "--rate", "fast"], "--rate"),
                           (["--sizes", "100"], "--sizes"),
                           (["--scale", "--sizes", "300,200"], "--sizes"),
                           (["--case", "append_b7"], "--case")):
            r = expect(bench(work, *argv), 2, f"bench {' '.join(argv)}")
            check(flag in r.stderr, f"bench {' '.join(argv)}: {flag} not named: {r.stderr}")
        log("bad flags: exit 2, named")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    evbtest.run_main("bench", main)
