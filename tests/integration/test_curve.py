#!/usr/bin/env python3
"""CURVE with the real programs: `evbus cert new`, `evbus serve --cert
--allow`, `evbus call` and `evbus sniff` with and without an allowed key.

    test_curve.py EVBUS

- `evbus cert new` writes NAME (public) and NAME_secret (mode 0600), never
  overwrites, prints the public key, which `evbus cert show` prints again
  from either file; the secret key is printed nowhere.
- serve with --cert/--allow: a call with an allowed key works; one with a
  key not in the allow-list exits 8 at once with "allow-list" in the
  message (not after --timeout); a plain call exits 8 ("requires CURVE");
  serve logs the refusal.
- sniff with an allowed key prints the events; with a refused key it prints
  nothing and says why on stderr.
- the allow-list is re-read without a restart: the refused key's
  certificate is copied in and the same call works.
Every wait polls a condition with a deadline. ipc endpoints only.
"""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import Fail, check, expect, wait_for  # noqa: E402
import evbtest  # noqa: E402

EVBUS = sys.argv[1]
log = evbtest.logger("curve")


def run(argv, timeout=60):
    return evbtest.run([EVBUS, *argv], timeout, stdin=subprocess.DEVNULL)


def main():
    base = evbtest.scratch_dir("curve")
    keys = os.path.join(base, "keys")
    allow = os.path.join(base, "allow")
    os.mkdir(keys)
    os.mkdir(allow)
    serve = None
    try:
        # ---- certificates ----
        pubkeys = {}
        for name in ("server", "alice", "bob"):
            r = expect(run(["cert", "new", name, "--dir", keys]), 0, f"cert new {name}")
            m = re.search(r"public key (\S{40})", r.stdout)
            check(m, f"cert new prints the public key: {r.stdout!r}")
            pubkeys[name] = m.group(1)
            sec = os.path.join(keys, name + "_secret")
            mode = stat.S_IMODE(os.stat(sec).st_mode)
            check(mode == 0o600, f"{sec}: mode {mode:o}, expected 600")
            with open(sec) as f:
                text = f.read()
            m = re.search(r'secret-key = "(.{40})"', text)
            check(m, f"{sec} holds a secret key")
            check(m.group(1) not in r.stdout + r.stderr, "cert new printed the secret")
            for f in (sec, os.path.join(keys, name)):
                s = expect(run(["cert", "show", f]), 0, f"cert show {f}")
                check(s.stdout.strip() == pubkeys[name], f"cert show {f}: {s.stdout!r}")
                check(m.group(1) not in s.stdout + s.stderr, "cert show printed the secret")
            with open(os.path.join(keys, name)) as f:
                check("secret-key" not in f.read(), "the public file holds no secret")
        expect(run(["cert", "new", "alice", "--dir", keys]), 2, "cert new over an existing one")
        expect(run(["cert", "new", "../evil", "--dir", keys]), 2, "cert new with a bad name")
        # --json is JSON whatever the directory is called.
        odd = os.path.join(base, 'a "quoted" \\dir')
        os.mkdir(odd)
        r = expect(run(["cert", "new", "carol", "--dir", odd, "--json"]), 0,
                   "cert new --json in an odd directory")
        try:
            j = json.loads(r.stdout)
        except ValueError as e:
            raise Fail(f"cert new --json is not JSON ({e}): {r.stdout!r}")
        check(j["public"] == os.path.join(odd, "carol") and
              j["secret"] == os.path.join(odd, "carol_secret"),
              f"cert new --json paths: {j}")
        shutil.copy(os.path.join(keys, "alice"), allow)
        log("certificates: ok")

        # ---- serve with CURVE ----
        store = os.path.join(base, "log")
        pub_ep = f"ipc://{base}/pub.sock"
        cu_ep = f"ipc://{base}/cu.sock"
        cmd_ep = f"ipc://{base}/cmd.sock"
        serve_err = open(os.path.join(base, "serve.err"), "w+")
        serve = subprocess.Popen(
            [EVBUS, "serve", "--store", store, "--create", "--service", "shows",
             "--pub", pub_ep, "--catchup", cu_ep, "--cmd", cmd_ep,
             "--cert", os.path.join(keys, "server_secret"), "--allow", allow],
            stdout=subprocess.DEVNULL, stderr=serve_err, stdin=subprocess.DEVNULL)
        server_pub = os.path.join(keys, "server")

        def curve_call(who, *words, timeout_ms=3000):
            return run(["call", cmd_ep, *words, "--timeout", f"{timeout_ms}ms",
                        "--cert", os.path.join(keys, who + "_secret"),
                        "--server-key", server_pub])

        wait_for("serve answers alice",
                 lambda: curve_call("alice", "status").returncode == 0)
        for i in range(5):
            expect(curve_call("alice", "append", "stream=show-1", "type=Added",
                              f"payload:={{\"n\":{i}}}"), 0, "append as alice")
        log("allowed call: ok")

        t0 = time.monotonic()
        r = expect(curve_call("bob", "status", timeout_ms=20000), 8, "call as bob")
        check(time.monotonic() - t0 < 10, "bob is told at once, not after --timeout")
        check("allow-list" in r.stderr and "EVB_EAUTH" in r.stderr,
              f"bob's error says why: {r.stderr!r}")
        r = expect(run(["call", cmd_ep, "status", "--timeout", "20000ms"]), 8, "plain call")
        check("requires CURVE" in r.stderr, f"plain call's error: {r.stderr!r}")
        r = expect(run(["call", cmd_ep, "status", "--cert",
                        os.path.join(keys, "alice_secret")]), 2, "--cert alone")
        r = expect(run(["status", cmd_ep, "--cert", os.path.join(keys, "alice_secret"),
                        "--server-key", pubkeys["server"]]), 0, "status with a key text")
        # append --to and feed take the same two flags.
        line = '{"stream": "show-2", "type": "Added", "payload": {"n": 1}}\n'
        r = subprocess.run([EVBUS, "append", "--to", cmd_ep, "--json",
                            "--cert", os.path.join(keys, "alice_secret"),
                            "--server-key", server_pub],
                           input=line, capture_output=True, text=True, timeout=60)
        check(r.returncode == 0 and json.loads(r.stdout.splitlines()[0]).get("seq") == 6,
              f"append --to as alice: {r.returncode} {r.stdout!r} {r.stderr!r}")
        r = subprocess.run([EVBUS, "append", "--to", cmd_ep, "--timeout", "20000ms",
                            "--cert", os.path.join(keys, "bob_secret"),
                            "--server-key", server_pub],
                           input=line, capture_output=True, text=True, timeout=60)
        check(r.returncode == 4 and "allow-list" in r.stderr,
              f"append --to as bob is refused: {r.returncode} {r.stderr!r}")

        def serve_log():
            serve_err.seek(0)
            return serve_err.read()
        wait_for("serve logs the refusal",
                 lambda: f"refused client {pubkeys['bob']}" in serve_log())
        log("refused and plain calls: ok")

        # ---- sniff ----
        def sniff(who):
            follow = f"{pub_ep},{cu_ep},{server_pub}"
            argv = ["sniff", "--follow", follow, "--from-start", "--json", "--timeout", "4s"]
            if who:
                argv += ["--cert", os.path.join(keys, who + "_secret")]
            else:
                argv = ["sniff", "--follow", f"{pub_ep},{cu_ep}", "--from-start",
                        "--json", "--timeout", "4s"]
            return run(argv)
        r = expect(sniff("alice"), 0, "sniff as alice")
        check(len(r.stdout.splitlines()) == 6, f"alice sees 6 events (5 calls, 1 append --to): {r.stdout!r}")
        r = expect(sniff("bob"), 1, "sniff as bob")
        check(r.stdout == "", f"bob sees nothing: {r.stdout!r}")
        check("allow-list" in r.stderr, f"bob's sniff says why: {r.stderr!r}")
        r = expect(sniff(None), 1, "plain sniff")
        check(r.stdout == "", f"a plain sniffer sees nothing: {r.stdout!r}")
        check("requires CURVE" in r.stderr, f"plain sniff says why: {r.stderr!r}")
        r = expect(run(["sniff", "--follow", f"{pub_ep},{cu_ep},{server_pub}",
                        "--timeout", "1s"]), 2, "a server key without --cert")
        log("sniff: ok")

        # ---- the allow-list is re-read without a restart ----
        shutil.copy(os.path.join(keys, "bob"), allow)
        expect(curve_call("bob", "status"), 0, "bob, once allowed")
        r = expect(sniff("bob"), 0, "sniff as bob, once allowed")
        check(len(r.stdout.splitlines()) == 6, f"bob sees 6 events: {r.stdout!r}")
        check(serve.poll() is None, "serve kept running")
        log("allow-list reload: ok")

        # No secret key in anything serve printed.
        for name in ("server", "alice", "bob"):
            with open(os.path.join(keys, name + "_secret")) as f:
                secret = re.search(r'secret-key = "(.{40})"', f.read()).group(1)
            check(secret not in serve_log(), f"{name}'s secret key in serve's log")
        serve.send_signal(signal.SIGTERM)
        check(serve.wait(timeout=30) == 0, "serve stops cleanly")
        serve = None
    finally:
        if serve is not None:
            serve.kill()
            serve.wait()
        shutil.rmtree(base, ignore_errors=True)
    log("OK")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print(f"[curve] FAIL: {e}", file=sys.stderr)
        sys.exit(1)
