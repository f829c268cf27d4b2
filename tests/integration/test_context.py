#!/usr/bin/env python3
"""Saved contexts: `evbus context add|list|show|rm` and `--context NAME`.

    test_context.py EVBUS

Each step runs with its own XDG_CONFIG_HOME (and HOME) under the scratch
directory, so the user's own contexts are never read or written.

file     add/list/show/rm; an existing name is refused without --force and
         replaced with it; bad names and values are usage errors (exit 2)
         that leave the file as it was; the file is mode 0600 in a 0700
         directory, replaced whole (a new inode, no temporary file left);
         eight concurrent adds all land (the lock); a hand-broken file is
         reported with its path and line.
serve    against a running `evbus serve --cmd`: `status --context X`, `-C X`
         and EVBUS_CONTEXT=X reach it; an explicit CMD_EP wins over the
         context, --context wins over EVBUS_CONTEXT; a context's endpoint is
         really used (one that names nothing fails, naming it); an unknown
         context is exit 2 naming it, the file and the known names; call,
         feed, append, sniff and mirror take their endpoints from it; @NAME
         and --service NAME say which one they use when a context has that
         name.
curve    a context with --cert, --server-key and a keyed --follow against a
         serve with CURVE: status, append and sniff get in with the
         context's certificate; an explicit --cert (not allowed) or CMD_EP
         (plain) wins over it.
No sleep is used to wait for something: every wait polls a condition with a
deadline. EVB_TEST_TMP is the scratch directory.
"""
import json
import os
import shutil
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import check, expect, wait_for  # noqa: E402
import evbtest  # noqa: E402

EVBUS = os.path.abspath(sys.argv[1])
log = evbtest.logger("context")


def env_for(base, **extra):
    env = dict(os.environ)
    env.pop("EVBUS_CONTEXT", None)
    env["XDG_CONFIG_HOME"] = os.path.join(base, "cfg")
    env["HOME"] = os.path.join(base, "home")
    env.update(extra)
    return env


def runner(base):
    def run(*argv, env=None, input=None, timeout=60, cwd=None):
        return subprocess.run([EVBUS, *argv], capture_output=True, text=True,
                              timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              env=env or env_for(base), cwd=cwd)
    return run


def read(path):
    with open(path, "rb") as f:
        return f.read()


def file_test(procs, ep):
    base = os.path.join(procs.base, "files")
    os.makedirs(base)
    run = runner(base)
    cfgdir = os.path.join(base, "cfg", "evbus")
    path = os.path.join(cfgdir, "contexts")
    pub, cu, cmd = ep("pub"), ep("cu"), ep("cmd")

    r = expect(run("context", "list"), 0, "list with no file")
    check(r.stdout == "" and "no contexts saved in " + path in r.stderr,
          f"list with no file: {r.stdout!r} {r.stderr!r}")
    r = expect(run("context", "add", "demo", "--follow", f"{pub},{cu}", "--cmd", cmd), 0,
               "add demo")
    check(f"saved context demo in {path}" in r.stdout, f"add said {r.stdout!r}")
    st = os.stat(path)
    check(stat.S_IMODE(st.st_mode) == 0o600, f"file mode {oct(st.st_mode)}, want 0600")
    check(stat.S_IMODE(os.stat(cfgdir).st_mode) == 0o700, "directory mode is not 0700")
    text = read(path).decode()
    check(f"[demo]\nfollow = {pub},{cu}\ncmd = {cmd}\n" in text, f"file holds {text!r}")

    # Refused without --force, and the file is untouched.
    before = read(path)
    r = expect(run("context", "add", "demo", "--cmd", ep("x")), 1, "add demo again")
    check(f"context demo already exists in {path} (--force replaces it)" in r.stderr,
          f"refusal said {r.stderr!r}")
    check(read(path) == before, "a refused add changed the file")

    # Bad names and values: exit 2, file untouched.
    for name in ("bad name", "a/b", "x" * 65, "dé", "[x]"):
        r = expect(run("context", "add", name, "--cmd", cmd), 2, f"add {name!r}")
        check("not a context name" in r.stderr, f"add {name!r} said {r.stderr!r}")
    bad = [
        (["--follow", "foo"], "expected PUB_EP,CATCHUP_EP"),
        (["--cmd", "nope://x"], "not a usable endpoint"),
        (["--follow", f"{pub},{cu},SOMEKEY"], "a server key needs --cert"),
        (["--cmd", cmd, "--server-key", "K"], "--cert and --server-key go together"),
        (["--service", "x y"], "--service 'x y'"),
        (["--cert", os.path.join(base, "none")], "give at least one of"),
        (["--cmd", cmd, "--cert", os.path.join(base, "none")], "cannot read it"),
    ]
    for args, want in bad:
        r = expect(run("context", "add", "b", *args), 2, f"add b {args}")
        check(want in r.stderr, f"add b {args}: want {want!r} in {r.stderr!r}")
    check(read(path) == before, "a refused add changed the file")

    # --force replaces in place, through a new file (rename), none left over.
    ino = os.stat(path).st_ino
    r = expect(run("context", "add", "demo", "--force", "--cmd", ep("cmd2")), 0, "--force")
    check("replaced context demo" in r.stdout, f"--force said {r.stdout!r}")
    check(os.stat(path).st_ino != ino, "the file was rewritten in place, not replaced")
    check(os.listdir(cfgdir) == ["contexts"], f"left over: {os.listdir(cfgdir)}")
    r = expect(run("context", "show", "demo"), 0, "show demo")
    check(r.stdout == f"[demo]\ncmd = {ep('cmd2')}\n", f"show after --force: {r.stdout!r}")

    # Certificate files are saved as absolute paths; keys as given.
    with open(os.path.join(base, "me_secret"), "w") as f:
        f.write("not read by add\n")
    key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    expect(run("context", "add", "sec", "--cmd", cmd, "--cert", "me_secret",
               "--server-key", key, "--follow", f"{pub},{cu},{key}", cwd=base), 0, "add sec")
    r = expect(run("context", "show", "sec", "--json"), 0, "show sec --json")
    j = json.loads(r.stdout)
    check(j == {"name": "sec", "follow": [f"{pub},{cu},{key}"], "cmd": cmd,
                "cert": os.path.join(os.path.realpath(base), "me_secret"),
                "server_key": key, "service": [], "file": path}, f"show --json: {j}")

    # list, text and JSON; EVBUS_CONTEXT marks the current one.
    expect(run("context", "add", "svc", "--service", "booking"), 0, "add svc")
    r = expect(run("context", "list", env=env_for(base, EVBUS_CONTEXT="sec")), 0, "list")
    rows = r.stdout.splitlines()
    check([l.split()[0:2] for l in rows] == [["demo", "cmd"], ["*", "sec"], ["svc", "cmd"]],
          f"list: {rows}")
    j = json.loads(expect(run("context", "list", "--json"), 0, "list --json").stdout)
    check(j["file"] == path and j["current"] is None and
          [c["name"] for c in j["contexts"]] == ["demo", "sec", "svc"] and
          j["contexts"][2]["service"] == ["booking"], f"list --json: {j}")

    # show/rm of an unknown name: 2, with the known ones.
    for verb in ("show", "rm"):
        r = expect(run("context", verb, "nope"), 2, f"{verb} nope")
        check(f"no context nope in {path} (known: demo, sec, svc)" in r.stderr,
              f"{verb} nope said {r.stderr!r}")
    r = expect(run("context", "rm", "sec"), 0, "rm sec")
    check(f"removed context sec from {path}" in r.stdout, f"rm said {r.stdout!r}")
    text = read(path).decode()
    check("[sec]" not in text and "[demo]" in text and "[svc]" in text, f"after rm: {text!r}")
    expect(run("context", "rm", "sec"), 2, "rm sec again")
    check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "mode after rm is not 0600")

    # Concurrent adds: the lock keeps every one.
    ps = [subprocess.Popen([EVBUS, "context", "add", f"c{i}", "--cmd", cmd],
                           env=env_for(base), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True) for i in range(8)]
    for p in ps:
        _, err = p.communicate(timeout=60)
        check(p.returncode == 0, f"concurrent add: exit {p.returncode}: {err}")
    j = json.loads(expect(run("context", "list", "--json"), 0, "list --json").stdout)
    names = {c["name"] for c in j["contexts"]}
    check(names == {"demo", "svc"} | {f"c{i}" for i in range(8)}, f"after 8 adds: {names}")

    # A hand-broken file: named with its line, exit 4, by every reader.
    with open(path, "a") as f:
        f.write("[broken]\nfolow = a,b\n")
    nlines = read(path).decode().count("\n")
    for argv in (["context", "list"], ["status", "-C", "demo"]):
        r = expect(run(*argv), 4, f"{argv} on a broken file")
        check(f"{path}:{nlines}: unknown key 'folow'" in r.stderr, f"{argv}: {r.stderr!r}")
    log("add/list/show/rm, --force, bad names and values, mode 0600, atomic "
        "replace, concurrent adds, a broken file")


def serve_test(procs, ep):
    base = os.path.join(procs.base, "serve")
    os.makedirs(base)
    run = runner(base)
    path = os.path.join(base, "cfg", "evbus", "contexts")
    src, mir = os.path.join(base, "src"), os.path.join(base, "mirror")
    pub, cu, cmd = ep("spub"), ep("scu"), ep("scmd")
    srv = procs.start(["serve", "--store", src, "--create", "--service", "demo",
                       "--pub", pub, "--catchup", cu, "--cmd", cmd], "serve")

    def up():
        check(srv.poll() is None, f"serve exited: {procs.stderr(srv)}")
        return run("status", cmd).returncode == 0

    wait_for("serve to answer status", up)
    expect(run("context", "add", "demo", "--cmd", cmd, "--follow", f"{pub},{cu}"), 0,
           "add demo")
    other = ep("nobody")
    expect(run("context", "add", "other", "--cmd", other), 0, "add other")

    def status_service(r, what):
        expect(r, 0, what)
        return json.loads(r.stdout)["service"]

    # -t 20s: a loaded machine (ASan in CI) may take more than the default 3s.
    def status(*a, env=None):
        return run("status", "-t", "20s", *a, env=env)

    check(status_service(status("--context", "demo", "--json"), "--context") == "demo",
          "status --context demo")
    check(status_service(status("-C", "demo", "--json"), "-C") == "demo", "status -C demo")
    check(status_service(status("-Cdemo", "--json"), "-Cdemo") == "demo", "status -Cdemo")
    check(status_service(status("--json", env=env_for(base, EVBUS_CONTEXT="demo")),
                         "EVBUS_CONTEXT") == "demo", "EVBUS_CONTEXT=demo status")
    # The explicit endpoint wins over the context, --context over EVBUS_CONTEXT.
    check(status_service(status("-C", "other", "--json", cmd), "explicit CMD_EP")
          == "demo", "status -C other CMD_EP")
    check(status_service(status("-C", "demo", "--json",
                             env=env_for(base, EVBUS_CONTEXT="other")),
                         "--context over EVBUS_CONTEXT") == "demo", "-C over the env")
    # The context's endpoint is the one used: nobody listens on other's.
    r = run("status", "-C", "other")
    check(r.returncode == 4 and other in r.stderr, f"status -C other: {r.returncode} {r.stderr}")
    log("status --context/-C/EVBUS_CONTEXT; CMD_EP beats the context, -C the env")

    # Unknown: 2, naming the context, the file and the known ones.
    r = expect(run("status", "--context", "nope"), 2, "--context nope")
    check(f"evbus status: --context nope: no such context in {path} (known: demo, other)"
          in r.stderr, f"--context nope said {r.stderr!r}")
    r = expect(run("status", env=env_for(base, EVBUS_CONTEXT="nope")), 2, "EVBUS_CONTEXT=nope")
    check(f"evbus status: EVBUS_CONTEXT=nope: no such context in {path} (known: demo, "
          "other)" in r.stderr, f"EVBUS_CONTEXT=nope said {r.stderr!r}")
    # A stale EVBUS_CONTEXT does not get in the way of a command line that
    # names its endpoint: it is not read at all.
    check(status_service(status("--json", cmd, env=env_for(base, EVBUS_CONTEXT="nope")),
                         "CMD_EP with a stale EVBUS_CONTEXT") == "demo",
          "status CMD_EP with EVBUS_CONTEXT=nope")
    r = expect(run("status", "-C", "bad/name"), 2, "-C bad/name")
    check("not a context name" in r.stderr, f"-C bad/name said {r.stderr!r}")
    r = expect(run("status"), 2, "status with nothing")
    check("CMD_EP is required (or --context NAME)" in r.stderr, f"bare status: {r.stderr!r}")
    expect(run("context", "add", "pubonly", "--follow", f"{pub},{cu}"), 0, "add pubonly")
    r = expect(run("status", "-C", "pubonly"), 2, "status -C pubonly")
    check(f"context pubonly has no cmd endpoint (file {path}): give CMD_EP" in r.stderr,
          f"status -C pubonly said {r.stderr!r}")
    for argv in (["sniff", "-C", "other"], ["mirror", "-C", "other", "--store", mir]):
        r = expect(run(*argv), 2, " ".join(argv))
        check("context other has no follow" in r.stderr and path in r.stderr,
              f"{argv} said {r.stderr!r}")
    log("unknown contexts and missing endpoints: exit 2, named")

    # The other commands.
    r = expect(run("call", "-t", "20s", "-C", "demo", "status", "--json"), 0, "call -C demo status")
    check(json.loads(r.stdout)["service"] == "demo", f"call: {r.stdout}")
    line = json.dumps({"stream": "s-1", "type": "T", "payload": {"a": 1}}) + "\n"
    r = expect(run("append", "-t", "20s", "-C", "demo", input=line), 0, "append -C demo")
    check("line 1: appended seq 1" in r.stdout, f"append -C: {r.stdout!r}")
    r = run("append", "-C", "demo", "--store", os.path.join(base, "local"), input=line)
    check(r.returncode == 3 and "local" in r.stderr,
          f"append -C with --store must open the local log: {r.returncode} {r.stderr}")
    r = expect(run("feed", "retry", "-t", "20s", "-C", "demo", "somecat"), 1, "feed retry -C demo")
    check(f"{cmd} refused" in r.stderr, f"feed retry -C: {r.stderr!r}")
    r = expect(run("sniff", "-C", "demo", "--from-start", "--count", "1", "--json",
                   timeout=30), 0, "sniff -C demo")
    ev = json.loads(r.stdout.splitlines()[0])
    check(ev["stream"] == "s-1" and ev["publisher"] == f"{pub},{cu}", f"sniff -C: {ev}")
    expect(run("mirror", "-C", "demo", "--store", mir, "--until-caught-up", timeout=30), 0,
           "mirror -C demo")
    r = expect(run("log", "cat", "--json", mir), 0, "log cat of the mirror")
    check([json.loads(l)["stream"] for l in r.stdout.splitlines()] == ["s-1"],
          f"mirror copy: {r.stdout!r}")
    log("call, append, feed, sniff, mirror take the context's endpoints")

    # A context and a beacon-found service of the same name: the command says
    # which it used (lo cannot beacon, so nothing waits for one).
    note = ("using {what}, the service found by beacon, not the saved context demo "
            f"(-C demo, file {path})")
    r = run("call", "@demo", "status", "--beacon-iface", "lo")
    check(note.format(what="@demo") in r.stderr, f"call @demo: {r.stderr!r}")
    r = run("sniff", "--service", "demo", "--beacon-iface", "lo", "--count", "1")
    check(note.format(what="--service demo") in r.stderr, f"sniff --service: {r.stderr!r}")
    r = run("call", "@other2", "status", "--beacon-iface", "lo")
    check("not the saved context" not in r.stderr, f"call @other2: {r.stderr!r}")
    log("@NAME / --service NAME with a context of that name: said on stderr")
    check(procs.term(srv) == 0, f"serve exit: {procs.stderr(srv)}")


def curve_test(procs, ep):
    base = os.path.join(procs.base, "curve")
    keys, allow = os.path.join(base, "keys"), os.path.join(base, "allow")
    os.makedirs(keys)
    os.makedirs(allow)
    run = runner(base)
    for name in ("server", "alice", "bob"):
        expect(run("cert", "new", name, "--dir", keys), 0, f"cert new {name}")
    shutil.copy(os.path.join(keys, "alice"), allow)
    pub, cu, cmd = ep("kpub"), ep("kcu"), ep("kcmd")
    srv = procs.start(["serve", "--store", os.path.join(base, "log"), "--create",
                       "--service", "shows", "--pub", pub, "--catchup", cu, "--cmd", cmd,
                       "--cert", os.path.join(keys, "server_secret"), "--allow", allow],
                      "kserve")
    server = os.path.join(keys, "server")
    expect(run("context", "add", "sec", "--cmd", cmd, "--follow", f"{pub},{cu},{server}",
               "--cert", os.path.join(keys, "alice_secret"), "--server-key", server), 0,
           "add sec")

    def up():
        check(srv.poll() is None, f"serve exited: {procs.stderr(srv)}")
        return run("status", "-C", "sec").returncode == 0

    wait_for("serve to answer status -C sec (CURVE from the context)", up)
    line = json.dumps({"stream": "k-1", "type": "T"}) + "\n"
    r = expect(run("append", "-t", "20s", "-C", "sec", input=line), 0, "append -C sec")
    # An explicit --cert wins over the context's: bob is not allowed.
    r = run("status", "-C", "sec", "--cert", os.path.join(keys, "bob_secret"))
    check(r.returncode != 0 and "allow-list" in r.stderr,
          f"status -C sec --cert bob: {r.returncode} {r.stderr!r}")
    # An explicit endpoint takes none of the context's CURVE settings.
    r = run("status", "-C", "sec", cmd)
    check(r.returncode != 0 and "CURVE" in r.stderr,
          f"status -C sec CMD_EP (plain): {r.returncode} {r.stderr!r}")
    # sniff: a keyed follow value brings the context's --cert along.
    r = expect(run("sniff", "-C", "sec", "--from-start", "--count", "1", "--json",
                   timeout=30), 0, "sniff -C sec")
    check(json.loads(r.stdout.splitlines()[0])["stream"] == "k-1", f"sniff -C sec: {r.stdout}")
    log("CURVE: the context's cert and keys; an explicit --cert or CMD_EP wins")
    check(procs.term(srv) == 0, f"serve exit: {procs.stderr(srv)}")


def main():
    return evbtest.procs_main("context", EVBUS, "ctx_", "evbc_",
                              [file_test, serve_test, curve_test])


if __name__ == "__main__":
    sys.exit(main())
