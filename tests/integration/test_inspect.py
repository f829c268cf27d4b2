#!/usr/bin/env python3
"""test_inspect.py: `evbus log export|import|state|checkpoints` and
`evbus log cat --since/--until/--color` against real logs and processes.

usage: test_inspect.py EVBUS CRASH_APPENDER

Logs are made by crash_appender (many streams, batches) and `evbus append`
(payloads of every msgpack kind JSON can express). Checkpoints come from a
real `evbus mirror` following a real `evbus serve`; the lock refusal is
checked while that serve holds the log. Every JSON line is parsed with the
json module. The main property: export, import into a new log, export again
gives a byte-identical file.
"""
import base64
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import jlines  # noqa: E402
import evbtest  # noqa: E402

EVBUS, APPENDER = sys.argv[1:3]
TIMEOUT = 120
TALLY = evbtest.Tally()
check = TALLY.check


def run(*args, stdin_text=None):
    return evbtest.run(list(args), TIMEOUT, input=stdin_text,
                       stdin=None if stdin_text is not None else subprocess.DEVNULL)


def evbus(*args, stdin_text=None):
    return run(EVBUS, *args, stdin_text=stdin_text)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def info(d):
    p = evbus("log", "info", d, "--json")
    return json.loads(p.stdout) if p.returncode == 0 else {}


ACCT = [
    {"owner": "ann", "balance": 10, "tags": ["a"]},
    {"balance": 25, "note": "caf\u00e9 \u2603"},
    {"balance": -5, "big": 18446744073709551615, "neg": -9223372036854775808},
    {"owner": "bob", "f": 0.1, "nested": {"x": [1, {"y": None}]}, "note": None},
]


def make_logs(tmp):
    log = os.path.join(tmp, "src")
    p = run(APPENDER, "--dir", log, "--count", "30", "--seed", "11", "--sync", "none")
    if p.returncode != 0:
        raise SystemExit(f"crash_appender failed ({p.returncode}): {p.stderr}")
    lines = []
    for i, payload in enumerate(ACCT):
        ev = {"stream": "acct-1", "type": f"Acct{i}", "payload": payload}
        if i == 1:
            ev["metadata"] = {"user": "u1", "n": 3}
            ev["correlation_id"] = "11" * 16
            ev["causation_id"] = "22" * 16
            ev["schema"] = 2
        lines.append(json.dumps(ev))
        lines.append(json.dumps({"stream": "other-9", "type": "Noise", "payload": {"i": i}}))
    p = evbus("append", "--store", log, "--sync", "none", stdin_text="\n".join(lines) + "\n")
    if p.returncode != 0:
        raise SystemExit(f"evbus append failed ({p.returncode}): {p.stderr}")
    return log


def test_export_import(tmp, src):
    head = info(src)["head"]
    e1 = os.path.join(tmp, "e1.jsonl")
    p = evbus("log", "export", src, "--out", e1)
    check("export --out exits 0", p.returncode == 0, p.stderr)
    check("export --out leaves no .part file", not os.path.exists(e1 + ".part"))
    text = read(e1).decode()
    rows = jlines(text)
    check("export: a header, then one line per event", len(rows) == head + 1,
          f"{len(rows)} lines for head {head}")
    hdr = rows[0]
    check("export header: version, service, formats",
          hdr == {"evbus_export": 1, "service": "crash", "store_format": 6, "envelope": 1},
          hdr)
    evs = rows[1:]
    check("export: seqs 1..head in order", [e["seq"] for e in evs] == list(range(1, head + 1)))
    cat = jlines(evbus("log", "cat", src, "--json").stdout)
    same = True
    for c, e in zip(cat, evs):
        c = dict(c)
        del c["log_id"]
        e = dict(e)
        raw = e.pop("raw")
        if c != e or not isinstance(raw, str):
            same = False
            print(f"  differs: {c} vs {e}")
            break
    check("export: each object is cat --json without log_id, plus raw",
          same and len(cat) == len(evs))
    log_id = bytes.fromhex(info(src)["log_id"])
    raws = [base64.b64decode(e["raw"], validate=True) for e in evs]
    check("export: raw is a 17-element array16 envelope",
          all(r[:3] == b"\xdc\x00\x11" for r in raws))
    check("export: raw carries no log id (zeroed)",
          all(log_id not in r and b"\xc4\x10" + b"\0" * 16 in r for r in raws))
    acct = [e for e in evs if e["stream"] == "acct-1"]
    check("export: metadata, ids, schema kept in the JSON",
          acct[1].get("metadata") == {"user": "u1", "n": 3}
          and acct[1]["correlation_id"] == "11" * 16 and acct[1]["schema"] == 2)
    p = evbus("log", "export", src)
    check("export to stdout equals the --out file", p.returncode == 0
          and p.stdout == text, p.stderr)

    # import into a new log, export again: the same bytes
    dst = os.path.join(tmp, "dst")
    p = evbus("log", "import", dst, "--in", e1, "--create")
    check("import --create exits 0", p.returncode == 0, p.stderr)
    check("import reports the count and seqs", f"{head} events, seq 1..{head}" in p.stdout,
          p.stdout)
    di = info(dst)
    check("imported log: same head and service, its own log id",
          di.get("head") == head and di.get("service") == "crash"
          and di.get("log_id") != info(src)["log_id"], di)
    e2 = os.path.join(tmp, "e2.jsonl")
    p = evbus("log", "export", dst, "--out", e2)
    check("export of the imported log exits 0", p.returncode == 0, p.stderr)
    check("export -> import -> export: byte-identical files", read(e1) == read(e2))
    p = evbus("log", "verify", dst)
    check("imported log verifies clean", p.returncode == 0, p.stdout + p.stderr)

    # in two parts, the second from stdin: the same result
    part = os.path.join(tmp, "part")
    a, b = os.path.join(tmp, "a.jsonl"), os.path.join(tmp, "b.jsonl")
    k = head // 2
    p1 = evbus("log", "export", src, "--to", str(k), "--out", a)
    p2 = evbus("log", "export", src, "--from", str(k + 1), "--out", b)
    check("export --to / --from exit 0", p1.returncode == 0 and p2.returncode == 0,
          p1.stderr + p2.stderr)
    check("export --from K: events K..head", [e["seq"] for e in jlines(read(b).decode())[1:]]
          == list(range(k + 1, head + 1)))
    p = evbus("log", "import", part, "--in", b, "--create")
    check("import of a file starting at K+1 into an empty log: exit 1",
          p.returncode == 1, p.stderr)
    check("... naming line 2 and field seq", "line 2" in p.stderr and "field seq" in p.stderr,
          p.stderr)
    check("... and nothing made", evbus("log", "info", part).returncode == 3)
    p1 = evbus("log", "import", part, "--in", a, "--create")
    p2 = evbus("log", "import", part, "--in", "-", stdin_text=read(b).decode())
    check("import in two parts (the second on stdin) exits 0",
          p1.returncode == 0 and p2.returncode == 0, p1.stderr + p2.stderr)
    check("two-part import exports identically",
          evbus("log", "export", part).stdout == text)
    p = evbus("log", "import", part, "--in", b)
    check("importing the same part again: exit 1, nothing written",
          p.returncode == 1 and info(part)["head"] == head, p.stderr)

    # --dry-run writes nothing
    dry = os.path.join(tmp, "dry")
    p = evbus("log", "import", dry, "--in", e1, "--create", "--dry-run")
    check("import --dry-run exits 0 and creates nothing",
          p.returncode == 0 and "would import" in p.stdout
          and evbus("log", "info", dry).returncode == 3, p.stdout + p.stderr)
    return e1, text


def test_bad_imports(tmp, e1, text):
    lines = text.splitlines()

    def attempt(name, bad_lines, want_line, want_field, create=True, target=None):
        f = os.path.join(tmp, f"bad-{name}.jsonl")
        with open(f, "w") as fh:
            fh.write("\n".join(bad_lines) + "\n")
        d = target or os.path.join(tmp, f"bad-{name}")
        before = info(d).get("head") if target else None
        args = ["log", "import", d, "--in", f] + (["--create"] if create else [])
        p = evbus(*args)
        check(f"bad import ({name}): exit 1", p.returncode == 1, f"{p.returncode} {p.stderr}")
        check(f"bad import ({name}): names line {want_line} and {want_field}",
              f"line {want_line}:" in p.stderr and want_field in p.stderr, p.stderr)
        if target:
            check(f"bad import ({name}): the log is unchanged", info(d).get("head") == before)
        else:
            check(f"bad import ({name}): nothing imported (no log made)",
                  evbus("log", "info", d).returncode == 3)

    n = len(lines)
    mid = n // 2
    # the corrupt line is late: earlier lines were fine and must not be written
    bad = list(lines)
    bad[mid] = bad[mid][: len(bad[mid]) // 2]
    attempt("truncated", bad, mid + 1, "not JSON")
    bad = list(lines)
    o = json.loads(bad[mid])
    o["raw"] = "!!notbase64"
    bad[mid] = json.dumps(o)
    attempt("raw-base64", bad, mid + 1, "field raw")
    bad = list(lines)
    o = json.loads(bad[mid])
    r = bytearray(base64.b64decode(o["raw"]))
    o["raw"] = base64.b64encode(bytes(r[:-3])).decode()
    bad[mid] = json.dumps(o)
    attempt("raw-truncated", bad, mid + 1, "field raw")
    bad = list(lines)
    o = json.loads(bad[mid])
    o["version"] += 1
    bad[mid] = json.dumps(o)
    attempt("version-disagrees", bad, mid + 1, "field version")
    bad = list(lines)
    o = json.loads(bad[mid])
    del o["raw"]
    bad[mid] = json.dumps(o)
    attempt("raw-missing", bad, mid + 1, "field raw: missing")
    bad = list(lines)
    del bad[mid]
    attempt("gap", bad, mid + 1, "field seq")
    bad = lines[: mid + 1] + [lines[mid]]
    attempt("repeated", bad, mid + 2, "field seq")
    bad = list(lines)
    bad[mid] = "[1,2]"
    attempt("not-object", bad, mid + 1, "expected an object")
    bad = list(lines)
    o = json.loads(bad[0])
    o["evbus_export"] = 99
    bad[0] = json.dumps(o)
    attempt("header-version", bad, 1, "evbus_export")
    # into an existing log that already holds these events
    existing = os.path.join(tmp, "dst")
    attempt("onto-existing", lines, 2, "field seq", create=False, target=existing)
    # an id twice (same seq renumbered): the visible seq must match raw, so
    # build a true duplicate by importing the first half, then the whole file
    # again after its header: seq 1 is refused against the log's head
    p = evbus("log", "import", os.path.join(tmp, "nolog"), "--in", e1)
    check("import into a missing log without --create: exit 3",
          p.returncode == 3 and "--create" in p.stderr, p.stderr)
    p = evbus("log", "import", os.path.join(tmp, "x"), "--in", os.path.join(tmp, "nofile"),
              "--create")
    check("import --in a missing file: exit 2 naming it",
          p.returncode == 2 and "nofile" in p.stderr, p.stderr)
    p = evbus("log", "import", os.path.join(tmp, "x"), "--in", e1, "--create",
              "--service", "Bad Name")
    check("import --service with a bad name: exit 2", p.returncode == 2, p.stderr)


def test_state(tmp, src):
    evs = jlines(evbus("log", "cat", src, "--stream", "acct-1", "--json").stdout)
    check("acct-1 has 4 versions", [e["version"] for e in evs] == [1, 2, 3, 4])

    def fold(n):
        st = {}
        for pl in ACCT[:n]:
            st.update(pl)
        return st

    def norm(st):
        """As the codec renders it: integers past +-(2^53-1) take {"$int": ...}."""
        return {k: ({"$int": str(v)} if isinstance(v, int) and not isinstance(v, bool)
                    and abs(v) > 2 ** 53 - 1 else v) for k, v in st.items()}

    p = evbus("log", "state", src, "acct-1", "--version", "2", "--json")
    check("state --version 2 exits 0", p.returncode == 0, p.stderr)
    o = json.loads(p.stdout) if p.returncode == 0 else {}
    check("state --version 2: version, latest, as_of",
          o.get("version") == 2 and o.get("latest") == 4 and o.get("as_of") == {"version": 2},
          o)
    check("state --version 2: the first two events",
          [e["version"] for e in o.get("events", [])] == [1, 2])
    check("state --version 2: payloads merged, last write wins",
          o.get("state") == norm(fold(2)), f"{o.get('state')} vs {fold(2)}")
    p = evbus("log", "state", src, "acct-1", "--json")
    o = json.loads(p.stdout) if p.returncode == 0 else {}
    check("state (latest): version 4, full fold",
          o.get("version") == 4 and o.get("state") == norm(fold(4)) and o.get("as_of") is None,
          o)
    check("state fold keeps first-seen key order",
          list(o.get("state", {}).keys()) == list(fold(4).keys()), list(o.get("state", {})))
    at = evs[2]["ts"]
    p = evbus("log", "state", src, "acct-1", "--at", at, "--json")
    o = json.loads(p.stdout) if p.returncode == 0 else {}
    check("state --at ts(v3): version 3", o.get("version") == 3
          and o.get("state") == norm(fold(3)) and o.get("as_of", {}).get("ts") == at,
          p.stdout + p.stderr)
    us = evs[2]["ts_us"] - 1
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // 1000000)) + \
        f".{us % 1000000:06d}Z"
    p = evbus("log", "state", src, "acct-1", "--at", t, "--json")
    o = json.loads(p.stdout) if p.returncode == 0 else {}
    check("state --at 1us before v3: version 2", o.get("version") == 2, p.stdout + p.stderr)
    p = evbus("log", "state", src, "acct-1", "--at", "2000-01-01T00:00:00Z", "--json")
    o = json.loads(p.stdout) if p.returncode == 0 else {}
    check("state --at before the first event: version 0, empty state",
          p.returncode == 0 and o.get("version") == 0 and o.get("state") == {}
          and o.get("events") == [], p.stdout + p.stderr)
    p = evbus("log", "state", src, "acct-1", "--version", "3")
    check("state (text): rows and the state line",
          p.returncode == 0 and "Acct2" in p.stdout and "Acct3" not in p.stdout
          and "state at version 3 (latest 4):" in p.stdout, p.stdout + p.stderr)
    st_line = p.stdout.strip().splitlines()[-1]
    check("state (text): the state is one JSON line", json.loads(st_line) == norm(fold(3)))
    p = evbus("log", "state", src, "acct-1", "--version", "9")
    check("state --version past the stream: exit 1", p.returncode == 1
          and "version 4" in p.stderr, p.stderr)
    p = evbus("log", "state", src, "nosuch-1")
    check("state of a stream with no events: exit 1", p.returncode == 1
          and "nosuch-1" in p.stderr, p.stderr)


def test_cat_filters(src):
    evs = jlines(evbus("log", "cat", src, "--json").stdout)
    ts = sorted(e["ts_us"] for e in evs)
    lo, hi = ts[len(ts) // 4], ts[3 * len(ts) // 4]
    fmt = {e["ts_us"]: e["ts"] for e in evs}
    p = evbus("log", "cat", src, "--json", "--since", fmt[lo], "--until", fmt[hi])
    got = [e["seq"] for e in jlines(p.stdout)]
    want = [e["seq"] for e in evs if lo <= e["ts_us"] <= hi]
    check("cat --since/--until: exactly the events in the window",
          p.returncode == 0 and got == want and 0 < len(got) < len(evs),
          f"{p.stderr} {got} vs {want}")
    p = evbus("log", "cat", src, "--since", fmt[hi], "--until", fmt[lo])
    check("cat --until before --since: exit 2", p.returncode == 2, p.stderr)
    p = evbus("log", "cat", src, "--since", "yesterday")
    check("cat --since garbage: exit 2 naming the flag",
          p.returncode == 2 and "--since" in p.stderr, p.stderr)
    p = evbus("log", "cat", src)
    check("cat piped: plain columns", p.returncode == 0 and "\x1b[" not in p.stdout
          and "acct-1" in p.stdout)
    p = evbus("log", "cat", src, "--color", "always")
    check("cat --color always: coloured", p.returncode == 0 and "\x1b[" in p.stdout)
    p = evbus("log", "cat", src, "--color", "always", "--json")
    check("cat --json is never coloured", p.returncode == 0 and "\x1b[" not in p.stdout
          and len(jlines(p.stdout)) == len(evs))
    p = evbus("log", "cat", src, "--color", "sometimes")
    check("cat --color bad value: exit 2", p.returncode == 2, p.stderr)


class Proc:
    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)

    def wait_stderr(self, word, deadline):
        buf = b""
        os.set_blocking(self.p.stderr.fileno(), False)
        while time.monotonic() < deadline:
            try:
                chunk = self.p.stderr.read()
            except BlockingIOError:
                chunk = None
            if chunk:
                buf += chunk
                if word in buf:
                    return True
            if self.p.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def test_served(tmp, src, e1):
    pub, cu = f"ipc://{tmp}/pub", f"ipc://{tmp}/cu"
    srv = Proc([EVBUS, "serve", "--store", src, "--pub", pub, "--catchup", cu,
                "--sync", "none"])
    try:
        ok = check("serve started", srv.wait_stderr(b"serving", time.monotonic() + 30))
        if not ok:
            return
        # Readers read a served log (a snapshot); only import, a writer, is
        # refused.
        for args in (["export", src], ["state", src, "acct-1"], ["checkpoints", src],
                     ["cat", src, "--since", "2000-01-01T00:00:00Z"]):
            p = evbus("log", *args)
            check(f"log {args[0]} on a served log: exit 0", p.returncode == 0,
                  f"{p.returncode} {p.stderr}")
        p = evbus("log", "import", src, "--in", e1)
        check("log import on a served log: exit 3, 'in use by another process'",
              p.returncode == 3 and "in use by another process" in p.stderr,
              f"{p.returncode} {p.stderr}")
        mir = os.path.join(tmp, "mirror")
        p = run(EVBUS, "mirror", "--follow", f"{pub},{cu}", "--store", mir,
                "--until-caught-up", "--timeout", "60s", "--sync", "none")
        check("mirror caught up", p.returncode == 0, p.stderr)
    finally:
        check("serve stopped cleanly", srv.stop() == 0)
    src_info = info(src)
    cats = {c["name"]: c["head"] for c in src_info["categories"]}
    p = evbus("log", "checkpoints", mir, "--json")
    rows = jlines(p.stdout) if p.returncode == 0 else []
    check("checkpoints --json exits 0", p.returncode == 0, p.stderr)
    # a caught-up feed has applied at least its category's last event (the
    # mirror may checkpoint a later source seq: nothing of the category there)
    check("checkpoints: one per category, consumer mirror, the source's log id, seq",
          sorted(r["category"] for r in rows) == sorted(cats)
          and all(r["consumer"] == "mirror" and r["source_log_id"] == src_info["log_id"]
                  and cats[r["category"]] <= r["seq"] <= src_info["head"] for r in rows),
          rows)
    p = evbus("log", "checkpoints", mir, "--consumer", "nobody", "--json")
    check("checkpoints --consumer nobody: nothing, exit 0", p.returncode == 0
          and p.stdout == "", p.stdout)
    p = evbus("log", "checkpoints", mir, "--consumer", "mirror")
    check("checkpoints (text): header and rows", p.returncode == 0
          and p.stdout.startswith("CONSUMER") and src_info["log_id"] in p.stdout
          and len(p.stdout.splitlines()) == len(cats) + 1, p.stdout)
    p = evbus("log", "checkpoints", src)
    check("checkpoints of a log without any: header only", p.returncode == 0
          and len(p.stdout.splitlines()) == 1, p.stdout)
    # copies (origin_log_id, origin_seq) round-trip too
    m1 = evbus("log", "export", mir)
    rows = jlines(m1.stdout)[1:] if m1.returncode == 0 else []
    check("mirror export: copies name their origin", rows and all(
        r.get("origin_log_id") == src_info["log_id"] and r.get("origin_seq", 0) > 0
        for r in rows), m1.stderr)
    mir2 = os.path.join(tmp, "mirror2")
    p = evbus("log", "import", mir2, "--in", "-", "--create", stdin_text=m1.stdout)
    m2 = evbus("log", "export", mir2)
    check("mirror: export -> import -> export identical (origins kept)",
          p.returncode == 0 and m2.returncode == 0 and m1.stdout == m2.stdout,
          p.stderr + m2.stderr)


def test_usage(tmp, src):
    missing = os.path.join(tmp, "missing")
    notlog = os.path.join(tmp, "notlog")
    os.makedirs(notlog)
    with open(os.path.join(notlog, "junk"), "w") as f:
        f.write("x")
    for verb in ("export", "import", "state", "checkpoints"):
        p = evbus("log", verb, "--help")
        check(f"{verb} --help: exit 0 with examples and exit codes",
              p.returncode == 0 and "Examples:" in p.stdout and "Exit codes:" in p.stdout)
        p = evbus("log", verb)
        check(f"{verb} without DIR: exit 2", p.returncode == 2, p.stderr)
        p = evbus("log", verb, src, "--bogus")
        check(f"{verb} --bogus: exit 2", p.returncode == 2 and "--bogus" in p.stderr)
    for args in (["export", missing], ["state", missing, "a-1"], ["checkpoints", missing]):
        p = evbus("log", *args)
        check(f"{args[0]} on a missing dir: exit 3 naming it",
              p.returncode == 3 and missing in p.stderr, p.stderr)
    for args in (["export", notlog], ["state", notlog, "a-1"], ["checkpoints", notlog]):
        p = evbus("log", *args)
        check(f"{args[0]} on a dir that is not a log: exit 3",
              p.returncode == 3 and notlog in p.stderr, p.stderr)
    for args, what in ((["export", src, "--to", "0"], "--to"),
                       (["export", src, "--from", "5", "--to", "2"], "--to"),
                       (["import", src], "--in"),
                       (["import", src, "--in", "x", "--service", "s"], "--service"),
                       (["state", src, "acct-1", "--version", "0"], "--version"),
                       (["state", src, "acct-1", "--version", "1", "--at",
                         "2026-01-01T00:00:00Z"], "--at"),
                       (["state", src, "acct-1", "--at", "noon"], "--at"),
                       (["state", src, "bad stream"], "STREAM")):
        p = evbus("log", *args)
        check(f"{' '.join(args[:1] + args[2:])}: exit 2 naming {what}",
              p.returncode == 2 and what in p.stderr, p.stderr)
    p = evbus("log", "--help")
    check("log --help lists the new verbs", p.returncode == 0 and all(
        v in p.stdout for v in ("export", "import", "state", "checkpoints")))


def tests(tmp):
    src = make_logs(tmp)
    e1, text = test_export_import(tmp, src)
    test_bad_imports(tmp, e1, text)
    test_state(tmp, src)
    test_cat_filters(src)
    test_usage(tmp, src)
    test_served(tmp, src, e1)


def main():
    # ipc:// paths are limited to ~100 bytes: keep the directory short
    return TALLY.main("insp.", tests, short=60)


if __name__ == "__main__":
    sys.exit(main())
