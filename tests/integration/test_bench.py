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
- bad flags exit 2 naming the flag.
"""
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

        for argv, flag in ((["--scale", "--quick"], "--scale"),
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
