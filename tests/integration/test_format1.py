#!/usr/bin/env python3
"""A log written by evbus 3c467a6 (store format 1: the indexes in the events'
LevelDB) opens, reads, verifies and takes appends with this build, as is:
no migration, no index directory made.

    test_format1.py EVBUS

fixtures/store-format1.tar.gz holds v1log/ (made by that build's `evbus append
--store`: run1.jsonl, 200 events, ids given for the first 50; then run2.jsonl,
20 more, left unindexed) and the two input files. The test works on a copy:
- `log info`: format 1, head 220, 200 indexed, the three categories' counts;
- `log cat` whole, by stream and by category: every event, in order, with
  the payloads of the input (the category read crosses from the index into
  the unindexed tail);
- `log verify` clean;
- appends: a line of run1 again is a duplicate (found through the format 1
  id index) at its first position; an expected version is checked against
  the stream index; new events follow at 221; everything still verifies,
  and the directory has no `index/`.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import check, expect, jlines  # noqa: E402
import evbtest  # noqa: E402

EVBUS = sys.argv[1]
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                       "store-format1.tar.gz")
log = evbtest.logger("format1")


def ev(*args, stdin=None, code=0, what=None):
    r = subprocess.run([EVBUS, *args], input=stdin, capture_output=True, text=True,
                       timeout=120)
    return expect(r, code, what or " ".join(args))


def cat(d, *flags):
    return jlines(ev("log", "cat", "--json", *flags, d).stdout)


def main():
    work = evbtest.scratch_dir("format1-")
    try:
        subprocess.run(["tar", "-xzf", FIXTURE, "-C", work], check=True)
        d = os.path.join(work, "v1log")
        inputs = []
        for name in ("run1.jsonl", "run2.jsonl"):
            with open(os.path.join(work, name)) as f:
                inputs += [json.loads(line) for line in f if line.strip()]
        check(len(inputs) == 220, f"fixture inputs: {len(inputs)} lines")

        info = json.loads(ev("log", "info", "--json", d).stdout)
        check(info["format"] == 1 and info["head"] == 220 and info["indexed"] == 200,
              f"log info: {info}")
        counts = {c["name"]: c["count"] for c in info["categories"]}
        want = {}
        for x in inputs:
            cat_name = x["stream"].split("-")[0]
            want[cat_name] = want.get(cat_name, 0) + 1
        check(counts == want, f"category counts {counts}, expected {want}")

        events = cat(d)
        check([e["seq"] for e in events] == list(range(1, 221)),
              f"log cat: seqs {[e['seq'] for e in events][:5]}... ({len(events)})")
        for e, x in zip(events, inputs):
            check(e["stream"] == x["stream"] and e["type"] == x["type"] and
                  e["payload"]["n"] == x["payload"]["n"],
                  f"event {e['seq']}: {e['stream']} {e['payload']} vs input {x}")
        check(all(events[i]["id"] == inputs[i]["id"] for i in range(50)),
              "the ids given in run1 are not the stored ones")

        for stream in ("show-1", "booking-7", "customer-2"):
            got = cat(d, "--stream", stream)
            exp = [i + 1 for i, x in enumerate(inputs) if x["stream"] == stream]
            check([e["seq"] for e in got] == exp and
                  [e["version"] for e in got] == list(range(1, len(exp) + 1)),
                  f"--stream {stream}: {[(e['seq'], e['version']) for e in got]}")
        for c in ("show", "booking", "customer"):
            got = cat(d, "--category", c)
            exp = [i + 1 for i, x in enumerate(inputs) if x["stream"].startswith(c + "-")]
            check([e["seq"] for e in got] == exp, f"--category {c}: {len(got)} events")
        ev("log", "verify", d)
        log("format 1 log: info, cat (whole, stream, category), verify as written")

        again = json.dumps(inputs[10]) + "\n"
        r = jlines(ev("append", "--store", d, "--json", stdin=again).stdout)
        check(r[0]["ok"] and r[0]["duplicate"] and r[0]["seq"] == 11,
              f"a run1 line again: {r}")
        show1 = sum(1 for x in inputs if x["stream"] == "show-1")
        stale = json.dumps({"stream": "show-1", "type": "SeatsAdded",
                            "expected_version": show1 - 1, "payload": {"n": -1}}) + "\n"
        r = jlines(ev("append", "--store", d, "--json", stdin=stale, code=1).stdout)
        check(not r[0]["ok"] and f"at {show1}" in r[0]["error"], f"stale version: {r}")
        new = "".join(json.dumps({"stream": "show-1", "type": "SeatsAdded",
                                  "expected_version": show1 + k,
                                  "payload": {"n": 220 + k}}) + "\n" for k in range(5))
        r = jlines(ev("append", "--store", d, "--json", stdin=new).stdout)
        check([(x["seq"], x["version"]) for x in r] ==
              [(221 + k, show1 + 1 + k) for k in range(5)], f"new appends: {r}")
        ev("log", "verify", d)
        info = json.loads(ev("log", "info", "--json", d).stdout)
        check(info["format"] == 1 and info["head"] == 225, f"log info after: {info}")
        check(not os.path.exists(os.path.join(d, "index")),
              "an index directory was made in a format 1 log")
        log("appends: duplicate found by id, version checked, 5 new events; verify clean")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    evbtest.run_main("format1", main)
