#!/usr/bin/env python3
"""`evbus call` against a real `evbus serve --cmd` (and `evbus mirror --cmd`).

    test_call.py EVBUS

status, readable and --json; append with KEY=VALUE words typed by the rule
in `evbus call --help` (checked through the service's own validation and in
the stored event, read with `evbus log cat --json` once serve has stopped);
--payload merged under the words; the exit codes scripts rely on: 0 done,
2 usage, 5 rejected (a version conflict), 6 bad request (unknown command,
missing or mistyped field), 7 unreachable (nobody listening, a malformed
endpoint), with --json error objects; --retries sending the same cmd_id:
against nobody (every attempt announced, 7 at the end) and against a serve
that is stopped (SIGSTOP) until the first retry is announced, then resumed.
Every wait polls a condition with a deadline; no sleep synchronises.
EVB_TEST_TMP is the scratch directory; every run uses its own ipc paths.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import check, expect, wait_for  # noqa: E402
import evbtest  # noqa: E402

EVBUS = sys.argv[1]
log = evbtest.logger("call")


def run(argv, timeout=60):
    return evbtest.run([EVBUS, *argv], timeout, stdin=subprocess.DEVNULL)


def call(ep, *words, timeout=60):
    return run(["call", ep, *words], timeout=timeout)


def one_json(r, what):
    lines = r.stdout.splitlines()
    check(len(lines) == 1, f"{what}: --json printed {len(lines)} lines: {r.stdout!r}")
    return json.loads(lines[0])


def cat_json(d):
    r = expect(run(["log", "cat", "--json", d]), 0, f"log cat {d}")
    return [json.loads(l) for l in r.stdout.splitlines()]


def serve_test(procs, ep):
    d = os.path.join(procs.base, "log")
    pub, cu, cmd, mcmd = ep("pub"), ep("cu"), ep("cmd"), ep("mcmd")
    line = '{"stream":"show-1","type":"ShowAdded","payload":{"seats":100}}\n'
    r = subprocess.run([EVBUS, "append", "--store", d, "--create", "--service", "shows"],
                       input=line, capture_output=True, text=True, timeout=60)
    expect(r, 0, "append --store --create")
    serve = procs.start(["serve", "--store", d, "--pub", pub, "--catchup", cu,
                         "--cmd", cmd, "--heartbeat", "50ms"], "serve")
    wait_for("serve's command socket",
             lambda: call(cmd, "status", "--timeout", "500ms").returncode == 0)

    # status, readable: aligned `key: value` lines, nested values as JSON,
    # no colour off a terminal.
    r = expect(call(cmd, "status"), 0, "status")
    check("\x1b" not in r.stdout, f"colour off a terminal: {r.stdout!r}")
    rows = [l for l in r.stdout.splitlines() if l]
    kv = {}
    cols = set()
    for l in rows:
        m = re.match(r"^([a-z_]+):( +)(.*)$", l)
        check(m is not None, f"status line not `key: value`: {l!r}")
        kv[m.group(1)] = m.group(3)
        cols.add(len(m.group(1)) + 1 + len(m.group(2)))
    check(len(cols) == 1, f"values not aligned: {rows}")
    check(kv.get("service") == "shows" and kv.get("head") == "1", f"status: {kv}")
    cats = json.loads(kv["categories"])
    check(cats == [{"name": "show", "head": 1, "count": 1}], f"categories: {cats}")

    # status --json: exactly one object, the reply.
    st = one_json(expect(call(cmd, "status", "--json"), 0, "status --json"), "status")
    check(st["service"] == "shows" and st["head"] == 1, f"status --json: {st}")
    log("status: readable (aligned, nested as JSON) and --json")

    # append with typed words: schema=2 is an integer (accepted), the quoted
    # '"2"' a string (refused by the service: exit 6), expected_version=1 an
    # integer, =none a string; payload:= and metadata:= JSON values.
    payload = {"i": 123, "neg": -4, "f": 1.5, "b": True, "z": None, "s": "123",
               "o": {"k": [1, "x"]}, "big": 18446744073709551615}
    r = expect(call(cmd, "append", "stream=show-1", "type=SeatsChanged", "schema=2",
                    "expected_version=1", "payload:=" + json.dumps(payload),
                    "metadata:={\"who\":\"t\"}", "--json"), 0, "typed append")
    res = one_json(r, "typed append")
    check(res["seq"] == 2 and res["version"] == 2 and res["duplicate"] is False,
          f"typed append reply: {res}")
    r = expect(call(cmd, "append", "stream=show-1", "type=X", 'schema="2"'), 6,
               "quoted number is a string")
    check("schema" in r.stderr and "EVB_EINVAL" in r.stderr, r.stderr)
    r = expect(call(cmd, "append", "stream=show-3", "type=New", "expected_version=none"),
               0, "expected_version=none (a string)")
    check(re.search(r"^seq: +3$", r.stdout, re.M), f"readable append: {r.stdout!r}")
    # --payload merged under the words: the word `type=` wins.
    r = expect(call(cmd, "append", "type=Winner", "--payload",
                    '{"stream":"show-4","type":"Loser","payload":{"from":"payload"}}',
                    "--json"), 0, "--payload merge")
    check(one_json(r, "--payload")["stream"] == "show-4", r.stdout)
    log("append: typed words, quoted strings, JSON values, --payload merge")

    # Exit codes: 5 rejected (conflict), 6 bad request, --json error objects.
    r = expect(call(cmd, "append", "stream=show-1", "type=X", "expected_version=0"), 5,
               "version conflict")
    check(r.stderr.startswith("evbus call: EVB_ECONFLICT: "), r.stderr)
    r = expect(call(cmd, "frobnicate", "--json"), 6, "unknown command")
    e = one_json(r, "unknown command")
    check(e["error"] == "EVB_EINVAL" and "unknown command" in e["message"], f"{e}")
    check("evbus call: EVB_EINVAL: unknown command" in r.stderr, r.stderr)
    r = expect(call(cmd, "append", "type=X"), 6, "missing field")
    check('"stream"' in r.stderr, r.stderr)
    r = expect(call(cmd, "append", "stream=show-1", "type=X", "bogus=1"), 6,
               "unknown field")
    check("bogus" in r.stderr, r.stderr)
    log("exit codes 5 and 6, --json errors")

    # --retries against a serve that is stopped: no attempt gets through until
    # it resumes (once the first retry is announced); then the call succeeds.
    # Sending the same command again with the same ids is answered with the
    # first outcome (serve deduplicates appends by the event's id).
    evid = "0123456789abcdef0123456789abcdef"
    words = ["append", "stream=show-5", "type=Retried", f"id={evid}", "--id",
             "retry-test-1", "--retries", "60", "--timeout", "300ms", "--json"]
    serve.send_signal(signal.SIGSTOP)
    try:
        c = subprocess.Popen([EVBUS, "call", cmd, *words], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
        first = c.stderr.readline()  # blocks until announced (or the call ends)
        check("retrying with cmd_id retry-test-1 (attempt 2 of 61)" in first,
              f"first retry not announced: {first!r}")
    finally:
        serve.send_signal(signal.SIGCONT)
    out, err = c.communicate(timeout=60)
    check(c.returncode == 0, f"retried call: exit {c.returncode}: {first}{err}")
    check(all("retry-test-1" in l for l in (first + err).splitlines()
              if "retrying" in l), err)
    res = one_json(subprocess.CompletedProcess([], 0, out, err), "retried call")
    check(res["id"] == evid and res["duplicate"] is False, f"retried: {res}")
    again = one_json(expect(call(cmd, *words), 0, "same again"), "same again")
    check(again["seq"] == res["seq"] and again["duplicate"] is True, f"{again}")
    log(f"--retries: stopped serve, retried with the same cmd_id, seq {res['seq']}")

    # mirror --cmd accepts the cmd_id key too.
    mdir = os.path.join(procs.base, "mirror")
    mirror = procs.start(["mirror", "--follow", f"{pub},{cu}", "--store", mdir,
                          "--service", "mirror", "--cmd", mcmd], "mirror")
    wait_for("mirror's command socket",
             lambda: call(mcmd, "status", "--timeout", "500ms").returncode == 0)
    r = call(mcmd, "retry", "category=show")
    check(r.returncode in (4, 6) and "unknown field" not in r.stderr,
          f"mirror retry: exit {r.returncode}: {r.stderr}")
    check(procs.term(mirror) == 0, "mirror exit code")

    check(procs.term(serve) == 0, "serve exit code")
    evs = {e["seq"]: e for e in cat_json(d)}
    check(len(evs) == 5, f"expected 5 events, got {sorted(evs)}")
    p = evs[2]["payload"]
    check(p == payload or {**p, "big": payload["big"]} == payload,
          f"stored payload: {p}")
    check(type(p["i"]) is int and type(p["f"]) is float and p["b"] is True and
          p["z"] is None and p["s"] == "123", f"payload types: {p}")
    check(evs[2]["schema"] == 2 and evs[2]["metadata"] == {"who": "t"}, f"{evs[2]}")
    check(evs[4]["type"] == "Winner" and evs[4]["payload"] == {"from": "payload"},
          f"merged: {evs[4]}")
    check(evs[5]["id"] == evid and evs[5]["stream"] == "show-5", f"retried: {evs[5]}")
    log("stored events: payload types, schema, metadata, merged, retried once")


def unreachable_test(ep):
    nobody = ep("nobody")
    t0 = time.monotonic()
    r = expect(call(nobody, "status", "--timeout", "300ms"), 7, "nobody listening")
    check(time.monotonic() - t0 < 10, "unreachable took too long")
    check("EVB_ETIMEDOUT" in r.stderr and "nobody.sock" in r.stderr, r.stderr)
    r = expect(call(nobody, "status", "--timeout", "200ms", "--retries", "2", "--id", "X1",
                    "--json"), 7, "retries against nobody")
    check(r.stderr.count("retrying with cmd_id X1") == 2, r.stderr)
    e = one_json(r, "retries --json")
    check(e["error"] == "EVB_ETIMEDOUT" and "3 attempts" in e["message"], f"{e}")
    for bad in ("bogus://x", "tcp://127.0.0.1", "no-scheme"):
        r = expect(call(bad, "status", "--timeout", "300ms"), 7, f"bad endpoint {bad}")
        check("EVB_EUNREACHABLE" in r.stderr and bad in r.stderr, r.stderr)
    log("exit 7: nobody listening (fast), retries announced, malformed endpoints")


def usage_test(ep):
    cmd = ep("unused")
    for words in (["status", "--bogus"], ["append", "noequals"], ["append", "=1"],
                  ["append", "cmd_id=x"], ["append", "a=1", "a=2"],
                  ["append", "--payload", "[1]"], ["append", "--payload", "{bad"],
                  ["append", "--payload", '{"cmd_id":"x"}'],
                  ["append", "n=99999999999999999999999"], ["append", "j:={oops"],
                  ["status", "--timeout", "0ms"], ["status", "--id", "x" * 65],
                  ["status", "--retries", "1000"], ["x" * 33]):
        r = expect(call(cmd, *words), 2, f"usage {words}")
        check(r.stderr.startswith("evbus call: "), r.stderr)
    expect(run(["call", cmd]), 2, "missing COMMAND")
    r = expect(run(["call", "--help"]), 0, "--help")
    for s in ("KEY=VALUE", "KEY:=JSON", "--payload", "cmd_id", "--retries", "  5  ",
              "  6  ", "  7  "):
        check(s in r.stdout, f"--help lacks {s!r}")
    r = expect(run(["--help"]), 0, "evbus --help")
    check("call" in r.stdout and "  7  " in r.stdout, "evbus --help")
    log("exit 2: flags, words, --payload, reserved cmd_id; --help")


def main():
    return evbtest.procs_main("call", EVBUS, "call_", "evbc_", [
        lambda procs, ep: usage_test(ep),
        lambda procs, ep: unreachable_test(ep),
        serve_test])


if __name__ == "__main__":
    sys.exit(main())
