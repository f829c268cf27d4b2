#!/usr/bin/env python3
"""test_cli.py: the `evbus log` commands against real logs.

usage: test_cli.py EVBUS CRASH_APPENDER DAMAGE

Logs are made by crash_appender (--count N: it appends N batches and exits;
its report lines say what it appended), broken by `damage` (which edits the
LevelDB directory directly). --json output is parsed with the json module.
Checks: info/cat/verify agree with what was appended; cat's filters (--type,
--stream, --where, with --category), --from -N and aligned text rows on a
log made with `evbus append -q` (and its summary line); exit codes 0 (clean),
1 (verify found damage, naming the sequence), 2 (bad flag), 3 (missing
directory, directory that is not a log). A log held open by a running
process is read as it is (a snapshot), exit 0.
"""
import json
import os
import re
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import jlines  # noqa: E402
import evbtest  # noqa: E402

EVBUS, APPENDER, DAMAGE = sys.argv[1:4]
TIMEOUT = 60
TALLY = evbtest.Tally()
check = TALLY.check


def run(*args):
    return evbtest.run(list(args), TIMEOUT, stdin=subprocess.DEVNULL)


def evbus(*args):
    return run(EVBUS, *args)


def make_log(path, count, seed):
    """Run the appender to completion; return its reports as tuples
    (first_seq, last_seq, stream, first_version, [ids])."""
    p = run(APPENDER, "--dir", path, "--count", str(count), "--seed", str(seed),
            "--sync", "none")
    if p.returncode != 0:
        raise SystemExit(f"crash_appender failed ({p.returncode}): {p.stderr}")
    reps = []
    for line in p.stdout.splitlines():
        f = line.split()
        reps.append((int(f[0]), int(f[1]), f[2], int(f[3]), f[4:]))
    return reps


def expected_events(reps):
    """seq -> (stream, version, id) from the appender's reports."""
    ev = {}
    for first, last, stream, ver, ids in reps:
        for i, eid in enumerate(ids):
            ev[first + i] = (stream, ver + i, eid)
    return ev


def main():
    return TALLY.main("cli.", tests)


LONG = "show-" + "L" * 55  # a 60-character stream id
TIME_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


def mixed_lines(n):
    """n events over three categories with payload fields to filter on (as
    test_sniff.py's), then one on a 60-character stream; JSON lines."""
    out = []
    for i in range(n):
        c = ("show", "booking", "showtime")[i % 3]
        out.append(json.dumps({
            "stream": f"{c}-{i % 7}", "type": ("Added", "Changed", "Removed")[i % 4 % 3],
            "id": f"{i + 1:032x}",
            "payload": {"n": i, "name": f"x{i % 5}", "even": i % 2 == 0,
                        "f": (i % 4) + 0.5}}))
    out.append(json.dumps({"stream": LONG, "type": "Added", "payload": {"n": n}}))
    return out


def append_quiet(tmp):
    """append -q: one summary line for people, errors still on stderr.
    Returns the log it made (31 events) for the filter tests."""
    d = os.path.join(tmp, "mixed")
    lines = mixed_lines(30)
    p = evbtest.run([EVBUS, "append", "--store", d, "--create", "--service", "demo", "-q"],
                    TIMEOUT, input="\n".join(lines) + "\n")
    check("append -q: exit 0, one summary line naming count, seqs and log",
          p.returncode == 0 and p.stdout == f"appended 31 events (seq 1..31) to {d}\n"
          and p.stderr == "", f"{p.returncode} {p.stdout!r} {p.stderr!r}")
    again = lines[:2] + ['{"stream": "show-1"}', lines[2]]
    p = evbtest.run([EVBUS, "append", "--store", d, "--quiet"], TIMEOUT,
                    input="\n".join(again) + "\n")
    check("append --quiet: retries counted, a bad line on stderr only, exit 1",
          p.returncode == 1 and
          p.stdout == f"appended 0 events to {d}; 3 already stored (duplicate ids)\n"
          and "line 3: field \"type\" is missing" in p.stderr
          and "1 of 4 lines failed" in p.stderr, f"{p.returncode} {p.stdout!r} {p.stderr!r}")
    p = evbtest.run([EVBUS, "append", "--store", d, "-q", "--json"], TIMEOUT, input="")
    check("append -q --json: usage error naming both",
          p.returncode == 2 and "--quiet and --json" in p.stderr, f"{p.returncode} {p.stderr}")
    p = evbtest.run([EVBUS, "append", "--store", d], TIMEOUT,
                    input='{"stream": "show-1", "type": "Added"}\n')
    check("append without -q: still a line per event",
          p.returncode == 0 and p.stdout.startswith("line 1: appended seq 32 show-1 "),
          f"{p.returncode} {p.stdout!r}")
    return d


def cat_filters(d):
    """log cat --type/--stream/--where, alone and with --category: exactly
    sniff's meaning (test_sniff.py's filter cases), every filter must hold."""
    every = jlines(evbus("log", "cat", d, "--json").stdout)

    def where(e, k, v):
        return e["payload"].get(k) == v

    cases = evbtest.filter_cases() + [
        (["--stream", "show-1"], lambda e: e["stream"] == "show-1"),
        (["--category", "show", "--stream", "show*"], lambda e: e["category"] == "show"),
        (["--category", "showtime", "--stream", "*-[0-3]", "--where", "even=true"],
         lambda e: e["category"] == "showtime" and e["stream"][-1] in "0123"
         and where(e, "even", True)),
        (["--category", "booking", "--stream", "show-1"], lambda e: False),
        (["--category", "show", "--stream", "show-1", "--type", "Added"],
         lambda e: e["stream"] == "show-1" and e["type"] == "Added"),
    ]
    meant_empty = {"--where missing=1", "--category booking --stream show-1"}
    for a, f in cases:
        p = evbus("log", "cat", d, "--json", *a)
        want = [e["seq"] for e in every if f(e)]
        check(f"cat {' '.join(a)}: the log has events it selects (or is meant to have none)",
              bool(want) != (" ".join(a) in meant_empty), f"want {want}")
        got = [e["seq"] for e in jlines(p.stdout)] if p.returncode == 0 else None
        check(f"cat {' '.join(a)}: exactly the matching events", got == want,
              f"exit {p.returncode}, got {got}, want {want}; {p.stderr}")
    check("cat filters: the cases select something", any(f(e) for _, f in cases[:3]
                                                         for e in every))
    for a, needle in ((["--where", "noequals"], "--where 'noequals'"),
                      (["--where", "=x"], "--where '=x'"),
                      (["--type", "bad type"], "--type 'bad type'")):
        p = evbus("log", "cat", d, *a)
        check(f"cat {' '.join(a)}: exit 2 naming it", p.returncode == 2 and needle in p.stderr,
              f"{p.returncode} {p.stderr}")


def cat_from_last(d):
    """log cat --from -N: the last N events (filters apply to those), as two
    words or one; N beyond the head is everything; -0, - and -x are refused."""
    every = jlines(evbus("log", "cat", d, "--json").stdout)
    head = every[-1]["seq"]
    seqs = [e["seq"] for e in every]
    for a, want in (
            (["--from", "-5"], seqs[-5:]),
            (["--from=-5"], seqs[-5:]),
            (["--from", "-1"], [head]),
            (["--from", f"-{head}"], seqs),
            (["--from", "-1000"], seqs),
            (["--from", "-6", "--type", "Added"],
             [e["seq"] for e in every[-6:] if e["type"] == "Added"]),
            (["--from", "-9", "--category", "booking"],
             [e["seq"] for e in every[-9:] if e["category"] == "booking"]),
            (["--from", "-5", "--to", str(head - 2)], seqs[-5:-2]),
            (["--from", "-4", "--limit", "2"], seqs[-4:-2]),
            (["--stream", "show-1", "--from", "-2"],
             [e["seq"] for e in every if e["stream"] == "show-1"][-2:])):
        p = evbus("log", "cat", d, "--json", *a)
        got = [e["seq"] for e in jlines(p.stdout)] if p.returncode == 0 else None
        check(f"cat {' '.join(a)}: {want}", got == want, f"exit {p.returncode}, got {got}; "
              f"{p.stderr}")
    for a in (["--from", "-0"], ["--from=-0"], ["--from", "-"], ["--from", "-x"],
              ["--from", "-5", "--to", "1"]):
        p = evbus("log", "cat", d, *a)
        check(f"cat {' '.join(a)}: exit 2 naming --from",
              p.returncode == 2 and p.stdout == "" and "--from" in p.stderr
              and p.stderr.startswith("evbus log cat: "), f"{p.returncode} {p.stderr}")
    p = evbus("log", "cat", d, "--from", "-0")
    check("cat --from -0: says what -N means",
          "--from -0: expected -N with N at least 1 (the last N events)" in p.stderr, p.stderr)


def cat_rows(d):
    """Text rows: the time as RFC 3339 UTC (as --json's ts), and a
    60-character stream id cut in the middle keeps every column aligned;
    --json keeps it whole."""
    p = evbus("log", "cat", d, "--color", "never")
    rows = p.stdout.splitlines()
    check("cat text: exit 0, a header and a row per event",
          p.returncode == 0 and len(rows) == 33 and rows[0].split()[:2] == ["SEQ", "TS"],
          f"{p.returncode} {rows[:2]} {p.stderr}")
    every = jlines(evbus("log", "cat", d, "--json").stdout)
    ts = {e["seq"]: e["ts"] for e in every}
    bad = [r for r in rows[1:] if not re.match(rf"^ *\d+  {TIME_RE}  ", r)
           or r.split()[1] != ts.get(int(r.split()[0]))]
    check("cat text: time column is --json's ts (date, time, zone)", not bad, bad[:3])
    hdr = rows[0]
    cols = {name: hdr.index(name) for name in ("TS", "STREAM", "VER", "TYPE", "PAYLOAD")}
    long_rows = [r for r in rows if "…" in r]
    check("cat text: the 60-character stream is cut in the middle with an ellipsis",
          len(long_rows) == 1 and LONG not in p.stdout and
          re.search(r"show-L+…L+ ", long_rows[0]) is not None, long_rows)
    misaligned = [r for r in rows[1:]
                  if r[cols["TYPE"]:].split()[0] not in ("Added", "Changed", "Removed")
                  or not r[cols["PAYLOAD"]:].startswith("{")
                  or r[cols["STREAM"] - 2:cols["STREAM"]] != "  "
                  or not r[:cols["VER"] + 3].rstrip()[-1:].isdigit()]
    check("cat text: every row aligned with the header (long stream id included)",
          rows[1:] and not misaligned, misaligned[:3])
    check("cat --json: the long stream id whole", LONG in (e["stream"] for e in every))


def short_flags(d):
    """One table of short flags for every command: -j --json, -n --limit,
    bundled (-jn3) or with the value apart or attached; a letter a command
    does not take is refused by name; help shows the pairs."""
    want = evbus("log", "cat", d, "--json", "--limit", "3").stdout
    for a in (["-j", "-n", "3"], ["-jn3"], ["-j", "-n3"], ["-jn", "3"]):
        p = evbus("log", "cat", d, *a)
        check(f"cat {' '.join(a)} = --json --limit 3", p.returncode == 0 and p.stdout == want
              and len(jlines(p.stdout)) == 3, f"{p.returncode} {p.stderr}")
    p = evbus("log", "cat", d, "-x")
    check("cat -x: exit 2, unknown option '-x'",
          p.returncode == 2 and "unknown option '-x'" in p.stderr, p.stderr)
    p = evbus("log", "cat", d, "-jx")
    check("cat -jx: exit 2 naming -x in -jx",
          p.returncode == 2 and "unknown option '-x' in '-jx'" in p.stderr, p.stderr)
    p = evbus("log", "cat", d, "-q")
    check("cat -q: a command without --quiet refuses -q",
          p.returncode == 2 and "unknown option '-q'" in p.stderr, p.stderr)
    p = evbus("log", "cat", d, "-n")
    check("cat -n without a value: exit 2 naming --limit",
          p.returncode == 2 and "-n (--limit) needs a value" in p.stderr, p.stderr)
    for argv, pairs in ((["sniff"], ("-f, --follow", "-c, --count", "-j, --json",
                                     "-t, --timeout", "-C, --context")),
                        (["log", "cat"], ("-j, --json", "-n, --limit")),
                        (["append"], ("-q, --quiet", "-j, --json", "-C, --context"))):
        h = evbus(*argv, "--help").stdout
        missing = [x for x in pairs if x not in h]
        check(f"{' '.join(argv)} --help shows the short forms", not missing, missing)


def tests(tmp):
    log = os.path.join(tmp, "log")
    reps = make_log(log, 40, 7)
    want = expected_events(reps)
    head = max(want)
    check("appender made a log", head >= 40 and sorted(want) == list(range(1, head + 1)))

    # ---- info ----
    p = evbus("log", "info", log, "--json")
    check("info --json exits 0", p.returncode == 0, p.stderr)
    try:
        info = json.loads(p.stdout)
    except ValueError as e:
        info = {}
        check("info --json is one JSON object", False, f"{e}: {p.stdout!r}")
    check("info: head", info.get("head") == head, f"{info.get('head')} != {head}")
    check("info: service", info.get("service") == "crash", info.get("service"))
    check("info: log_id is 32 hex", re.fullmatch(r"[0-9a-f]{32}", str(info.get("log_id"))))
    cats = {c["name"]: c for c in info.get("categories", [])}
    want_cats = {}
    for seq, (stream, _, _) in want.items():
        c = stream.split("-")[0]
        n, h = want_cats.get(c, (0, 0))
        want_cats[c] = (n + 1, max(h, seq))
    check("info: categories, counts and heads",
          {k: (v["count"], v["head"]) for k, v in cats.items()} == want_cats,
          f"{cats} vs {want_cats}")
    p = evbus("log", "info", log)
    check("info (text) exits 0 and names the service",
          p.returncode == 0 and "crash" in p.stdout, p.stderr)

    # ---- cat ----
    p = evbus("log", "cat", log, "--json")
    check("cat --json exits 0", p.returncode == 0, p.stderr)
    evs = jlines(p.stdout)
    check("cat: every event in order", [e["seq"] for e in evs] == list(range(1, head + 1)))
    got = {e["seq"]: (e["stream"], e["version"], e["id"]) for e in evs}
    check("cat: stream, version, id as appended", got == want)
    check("cat: category derived from stream",
          all(e["category"] == e["stream"].split("-")[0] for e in evs))
    check("cat: payload decoded", all(isinstance(e.get("payload"), dict)
                                      and "i" in e["payload"] for e in evs))

    show1 = sorted((v, s) for s, (st, v, _) in want.items() if st == "show-1")
    p = evbus("log", "cat", log, "--stream", "show-1", "--json")
    evs = jlines(p.stdout) if p.returncode == 0 else []
    check("cat --stream: versions 1..n of that stream",
          p.returncode == 0 and [(e["version"], e["seq"]) for e in evs] == show1
          and [v for v, _ in show1] == list(range(1, len(show1) + 1)),
          p.stderr)
    bk = sorted(s for s, (st, _, _) in want.items() if st.startswith("booking-"))
    p = evbus("log", "cat", log, "--category", "booking", "--json")
    evs = jlines(p.stdout) if p.returncode == 0 else []
    check("cat --category: that category in log order",
          p.returncode == 0 and [e["seq"] for e in evs] == bk, p.stderr)
    p = evbus("log", "cat", log, "--from", "3", "--to", "7", "--json")
    evs = jlines(p.stdout) if p.returncode == 0 else []
    check("cat --from 3 --to 7", [e["seq"] for e in evs] == [3, 4, 5, 6, 7], p.stderr)

    # ---- append -q; cat's filters, --from -N and rows ----
    p = evbus("log", "cat", "--help")
    check("cat --help: the filters, --from -N and the row layout",
          p.returncode == 0 and all(n in p.stdout for n in (
              "[--from N|-N]", "--type T", "--stream GLOB", "--where FIELD=VALUE",
              "the last N events", "cut in the middle")), p.stdout)
    p = evbus("append", "--help")
    check("append --help: -q, --quiet and its summary line",
          p.returncode == 0 and "-q, --quiet" in p.stdout and "appended 1,234 events" in p.stdout,
          p.stdout)
    mixed = append_quiet(tmp)
    cat_filters(mixed)
    cat_from_last(mixed)
    cat_rows(mixed)
    short_flags(mixed)

    # ---- verify, clean ----
    p = evbus("log", "verify", log, "--json")
    out = jlines(p.stdout) if p.stdout else []
    check("verify on a clean log exits 0", p.returncode == 0, p.stdout + p.stderr)
    check("verify --json: summary ok, 0 problems",
          bool(out) and out[-1].get("ok") is True and out[-1].get("problems") == 0
          and out[-1].get("head") == head, out)

    # ---- tail: the last events; -f takes endpoints, not DIR ----
    p = evbus("log", "tail", log, "--json")
    evs = jlines(p.stdout) if p.returncode == 0 else []
    check("tail DIR: the last 10 events, exit 0",
          [e["seq"] for e in evs] == list(range(head - 9, head + 1)), p.stderr)
    p = evbus("log", "tail", log, "-n", "3", "--json")
    evs = jlines(p.stdout) if p.returncode == 0 else []
    check("tail -n 3", [e["seq"] for e in evs] == [head - 2, head - 1, head], p.stderr)
    p = evbus("log", "tail", "-f", log)
    check("tail -f DIR: exit 2, saying -f takes the publisher's endpoints",
          p.returncode == 2 and "PUB_EP,CATCHUP_EP" in p.stderr, f"{p.returncode} {p.stderr}")
    p = evbus("log", "tail", "--help")
    check("tail --help explains -f and tail -f",
          p.returncode == 0 and "-f, --follow" in p.stdout and "tail -f" in p.stdout
          and p.stdout.count("Exit codes:") == 1, p.stdout)

    # ---- usage and open errors ----
    p = evbus("log", "info", log, "--no-such-flag")
    check("bad flag exits 2", p.returncode == 2, f"{p.returncode} {p.stderr}")
    p = evbus("log", "cat", log, "--limt", "1")
    check("a misspelt flag is named with the nearest one",
          p.returncode == 2 and "unknown option '--limt' (did you mean --limit?)" in p.stderr,
          f"{p.returncode} {p.stderr}")
    p = evbus("log", "cat", log, "--cat", "x")
    check("a flag's beginning suggests the flag",
          p.returncode == 2 and "(did you mean --category?)" in p.stderr, p.stderr)
    p = evbus("log", "info", log, "--no-such-flag")
    check("no suggestion when nothing is near", "did you mean" not in p.stderr, p.stderr)
    p = evbus("log", "frobnicate", log)
    check("unknown verb exits 2", p.returncode == 2, f"{p.returncode}")
    missing = os.path.join(tmp, "does-not-exist")
    for verb in ("info", "cat", "verify", "tail"):
        p = evbus("log", verb, missing)
        check(f"{verb} on a missing dir exits 3", p.returncode == 3,
              f"{p.returncode} {p.stderr}")
    check("missing dir was not created", not os.path.exists(missing))
    empty = os.path.join(tmp, "empty")
    os.mkdir(empty)
    p = evbus("log", "info", empty)
    check("info on an empty dir exits 3", p.returncode == 3, f"{p.returncode} {p.stderr}")
    check("empty dir left empty", os.listdir(empty) == [], os.listdir(empty))
    notlog = os.path.join(tmp, "notlog")
    os.mkdir(notlog)
    with open(os.path.join(notlog, "README"), "w") as f:
        f.write("not a log\n")
    p = evbus("log", "verify", notlog)
    check("verify on a dir that is not a log exits 3", p.returncode == 3,
          f"{p.returncode} {p.stderr}")

    # ---- held open by a running process ----
    held = subprocess.Popen([APPENDER, "--dir", log, "--count", "1", "--hold",
                             "--sync", "none"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    seen = b""
    try:
        # Await "holding" on the pipe with a deadline (no sleeps).
        fd = held.stdout.fileno()
        deadline = time.monotonic() + TIMEOUT
        while b"holding\n" not in seen:
            left = deadline - time.monotonic()
            r, _, _ = select.select([fd], [], [], max(left, 0))
            if not r:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
        if check("appender holds the log open", b"holding\n" in seen, seen):
            # Readers see the log as it is, beside its writer (a snapshot).
            for verb in ("info", "verify"):
                p = evbus("log", verb, log)
                check(f"{verb} on a log in use reads it (exit 0)", p.returncode == 0,
                      f"{p.returncode} {p.stderr}")
            held_head = int(seen.split()[1]) if seen[:1].isdigit() else -1
            p = evbus("log", "info", log, "--json")
            check("info on a log in use shows the holder's append", p.returncode == 0 and
                  json.loads(p.stdout).get("head") == held_head > head, p.stdout + p.stderr)
    finally:
        held.stdin.close()
        try:
            rc = held.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            held.kill()
            rc = held.wait()
        held.stdout.close()
    check("holding appender ended cleanly", rc == 0, f"exit {rc}")
    new_head = int(seen.split()[1]) if seen[:1].isdigit() else -1
    p = evbus("log", "info", log, "--json")
    check("log usable after the holder closed it; its append is there",
          p.returncode == 0 and json.loads(p.stdout).get("head") == new_head > head,
          p.stdout + p.stderr)

    # ---- damage: verify must find it and name the sequence ----
    for mode, seq in (("delete", 5), ("garbage", 3)):
        d = os.path.join(tmp, f"dmg-{mode}")
        r = make_log(d, 20, 11)
        n = r[-1][1]
        p = evbus("log", "verify", d)
        check(f"{mode}: clean before damage", p.returncode == 0, p.stdout + p.stderr)
        p = run(DAMAGE, d, mode, str(seq))
        check(f"{mode}: damage seq {seq}", p.returncode == 0, p.stderr)
        p = evbus("log", "verify", d)
        check(f"{mode}: verify exits 1", p.returncode == 1,
              f"{p.returncode} {p.stdout} {p.stderr}")
        check(f"{mode}: verify names seq {seq}",
              re.search(rf"(?<![0-9]){seq}(?![0-9])", p.stdout) is not None, p.stdout)
        p = evbus("log", "verify", d, "--json")
        out = jlines(p.stdout) if p.stdout else []
        probs = [o["problem"] for o in out if "problem" in o]
        check(f"{mode}: verify --json exits 1 with problems and ok=false",
              p.returncode == 1 and probs and out[-1].get("ok") is False
              and out[-1].get("problems", 0) >= 1 and out[-1].get("head") in (n, n - 1),
              out)
        check(f"{mode}: a --json problem names seq {seq}",
              any(re.search(rf"(?<![0-9]){seq}(?![0-9])", t) for t in probs), probs)
        if mode == "garbage":
            p = evbus("log", "cat", d, "--json")
            check("garbage: cat does not pass the damaged record silently",
                  p.returncode != 0, f"{p.returncode}")

    # ---- a run of events that do not decode: one line for the run, and one
    # per index kind for the entries into it, not one each ----
    d = os.path.join(tmp, "dmg-run")
    make_log(d, 20, 11)
    for seq in range(4, 12):
        p = run(DAMAGE, d, "garbage", str(seq))
        check(f"garbage run: damage seq {seq}", p.returncode == 0, p.stderr)
    p = evbus("log", "verify", d)
    probs = [x for x in p.stdout.splitlines() if x.startswith("problem:")]
    check("garbage run: verify exits 1, one line for events 4..11, few lines",
          p.returncode == 1 and
          sum("events 4..11 do not decode (8 events" in x for x in probs) == 1 and
          not any("event 5 does not decode" in x for x in probs) and len(probs) <= 6,
          f"{p.returncode} {probs}")


if __name__ == "__main__":
    sys.exit(main())
