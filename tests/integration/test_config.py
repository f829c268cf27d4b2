#!/usr/bin/env python3
"""test_config.py: config files (services/README.md, "Config files").

usage: test_config.py EVBUS RESERVATION BOOKING SRC_DIR [BRIDGE]

Every rule of the grammar, through the programs that read config files:
the runtime's daemons (evbus-reservation), `evbus serve` and `evbus mirror`
(tools/common/cli.c), and evbus-bridge (argument parsing only: a bad file
stops it before it connects). Then the shipped examples
(services/*/NAME.conf, tools/cli/*-example.conf), with /var/lib/evbus and
/run/evbus rewritten to scratch directories: reservation + booking as a
pair, serve, mirror, and the bridge each start and answer `evbus status`.
Errors are checked by their exact first line, and no store may exist
after a refused start.
"""
import os
import signal
import subprocess
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evbtest  # noqa: E402

EVBUS, RES, BOOK, SRC = sys.argv[1:5]
BRIDGE = sys.argv[5] if len(sys.argv) > 5 else None
T = evbtest.Tally()
check = T.check


def run(argv, env=None):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("EVBUS_"):
            del e[k]
    e.update(env or {})
    return evbtest.run(argv, 20, env=e)


def first(r):
    return r.stderr.splitlines()[0] if r.stderr else ""


def write(path, text, crlf=False):
    with open(path, "w", newline="") as f:
        f.write(text.replace("\n", "\r\n") if crlf else text)
    return path


def refused(name, r, line, store=None):
    """r exited 2 and its first stderr line is exactly line; no store made."""
    ok = check(name, r.returncode == 2 and first(r) == line,
               f"exit {r.returncode}, stderr {r.stderr!r}, expected {line!r}")
    if store is not None:
        check(name + ": nothing created", not os.path.exists(store),
              f"{store} exists")
    return ok


def grammar_runtime(d):
    """The runtime's reader, through evbus-reservation."""
    store = os.path.join(d, "res")
    cmd = f"ipc://{d}/res.cmd"
    c = os.path.join(d, "r.conf")

    def conf(*lines, crlf=False):
        return write(c, f"store = {store}\ncmd = {cmd}\n" + "".join(x + "\n" for x in lines),
                     crlf)

    conf("# a comment", "", "   # an indented comment", "log_levle = debug")
    refused("unknown setting: program, FILE:LINE, suggestion", run([RES, "--config", c]),
            f"evbus-reservation: {c}:6: unknown setting 'log_levle' (did you mean "
            f"'log-level'?)", store)
    conf("zzzz = 1")
    refused("unknown setting, none close", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: unknown setting 'zzzz'", store)
    conf("config = /etc/x")
    refused("config cannot be set in a file", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: unknown setting 'config'", store)
    conf("log-level")
    refused("a line without '='", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: expected 'name = value', got 'log-level'", store)
    conf("sync = every # durable", "sync = none")
    refused("a setting twice", run([RES, "--config", c]),
            f"evbus-reservation: {c}:4: 'sync' is already set on line 3 (only a repeatable "
            "setting may be given twice)", store)
    conf("log-level =")
    refused("an empty value", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: --log-level: no value (write \"\" for an empty one)",
            store)
    conf("log-level = # only a comment")
    refused("a value that is only a comment", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: --log-level: no value (write \"\" for an empty one)",
            store)
    conf("log-level = verbose # the level")
    refused("a bad value: comment cut, FILE:LINE --name", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: --log-level: 'verbose' is not debug, info, warn or "
            "error", store)
    conf("log-level = a#b")
    refused("'#' inside a word is kept", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: --log-level: 'a#b' is not debug, info, warn or error",
            store)
    conf('log-level = "a \\"q\\" \\\\ #x"  # comment')
    refused("double quotes: escapes, '#' inside kept", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: --log-level: 'a \"q\" \\ #x' is not debug, info, "
            "warn or error", store)
    conf('log-level = "tab\\there"')
    r = run([RES, "--config", c])
    check("double quotes: \\t is a tab", r.returncode == 2 and "'tab\there'" in r.stderr,
          r.stderr)
    conf("log-level = 'a \\\" # b'")
    refused("single quotes: literal", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: --log-level: 'a \\\" # b' is not debug, info, warn "
            "or error", store)
    conf('log-level = "debug" x')
    refused("text after the closing quote", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: --log-level: text after the closing quote", store)
    conf('log-level = "debug')
    refused("an unterminated quote", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: --log-level: no closing '\"'", store)
    conf('log-level = "\\q"')
    r = run([RES, "--config", c])
    check("an unknown escape", r.returncode == 2 and
          first(r).startswith(f"evbus-reservation: {c}:3: --log-level: unknown escape"),
          r.stderr)
    conf("log-level = " + "x" * 5000)
    refused("a line too long", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: line longer than 4096 bytes", store)
    conf("rebuild-views = perhaps")
    refused("a bad boolean", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: --rebuild-views: 'perhaps' is not true or false",
            store)
    conf("log-level = verbose", crlf=True)
    refused("CRLF: the CR is dropped", run([RES, "--config", c]),
            f"evbus-reservation: {c}:3: --log-level: 'verbose' is not debug, info, warn or "
            "error", store)
    missing = os.path.join(d, "missing.conf")
    refused("a file that cannot be read", run([RES, "--config", missing]),
            f"evbus-reservation: --config: cannot read {missing}: No such file or directory")
    refused("a directory", run([RES, "--config", d]),
            f"evbus-reservation: --config: cannot read {d}: Is a directory")
    # Where a value comes from: command line > environment > file. The
    # check at the end names --http's value (not loopback with CURVE on).
    conf("cert = c", "allow = a", "http = 10.0.0.1:1  # the file's")
    msg = ("evbus-reservation: --http {} is not a loopback address while CURVE is on: HTTP "
           "is neither encrypted nor authenticated; add --http-public if that is meant "
           "(try 'evbus-reservation --help')")
    refused("the file's value", run([RES, "--config", c]), msg.format("10.0.0.1:1"), store)
    refused("the environment beats the file",
            run([RES, "--config", c], {"EVBUS_HTTP": "10.0.0.2:1"}), msg.format("10.0.0.2:1"),
            store)
    refused("the command line beats both",
            run([RES, "--config", c, "--http", "10.0.0.3:1"], {"EVBUS_HTTP": "10.0.0.2:1"}),
            msg.format("10.0.0.3:1"), store)
    refused("EVBUS_CONFIG names the file", run([RES], {"EVBUS_CONFIG": c}),
            msg.format("10.0.0.1:1"), store)


def grammar_cli(d):
    """evbus serve and evbus mirror (tools/common/cli.c), and the bridge."""
    store = os.path.join(d, "srv")
    c = os.path.join(d, "s.conf")
    base = (f"store = {store} # the store\ncreate = yes\nservice = 'demo'\n"
            f"pub = \"ipc://{d}/p\"\ncatchup = ipc://{d}/c\n")
    write(c, base + "stroe = x\n")
    refused("serve: unknown setting", run([EVBUS, "serve", "--config", c]),
            f"evbus serve: {c}:6: unknown setting 'stroe' (did you mean 'store'?)", store)
    write(c, base + "sync = never\n")
    refused("serve: a value checked after parsing names its line",
            run([EVBUS, "serve", "--config", c]),
            f"evbus serve: {c}:6: --sync: expected none, every or group, got 'never'", store)
    refused("serve: the command line beats the file (its value, no line)",
            run([EVBUS, "serve", "--config", c, "--sync", "bogus"]),
            "evbus serve: --sync: expected none, every or group, got 'bogus'", store)
    write(c, base + "heartbeat = 5\n")
    r = run([EVBUS, "serve", "--config", c])
    check("serve: a bad duration names its line", r.returncode == 2 and
          first(r).startswith(f"evbus serve: {c}:6: --heartbeat 5: give a unit"), r.stderr)
    write(c, base + "create = maybe\n")
    refused("serve: a flag given twice", run([EVBUS, "serve", "--config", c]),
            f"evbus serve: {c}:6: 'create' is already set on line 2 (only a repeatable "
            "setting may be given twice)", store)
    write(c, base.replace("create = yes", "create = off"))
    r = run([EVBUS, "serve", "--config", c])
    check("serve: create = off is off", r.returncode == 2 and
          "--service only names a new log" in r.stderr, r.stderr)
    check("serve: nothing created", not os.path.exists(store))
    # mirror: lists come whole from the strongest source.
    m = os.path.join(d, "m.conf")
    mstore = os.path.join(d, "mir")
    write(m, f"store = {mstore}\nfollow = fileval1\nfollow = a,b\ncategory = x\n")
    r = run([EVBUS, "mirror", "--config", m])
    check("mirror: a file's bad follow names its lines",
          r.returncode == 2 and first(r).startswith(f"evbus mirror: {m}:2,3: --follow") and
          "fileval1" in r.stderr, r.stderr)
    r = run([EVBUS, "mirror", "--config", m, "--follow", "cmdval"])
    check("mirror: --follow replaces the file's lines",
          r.returncode == 2 and "cmdval" in first(r) and "fileval1" not in r.stderr and
          f"{m}:" not in r.stderr, r.stderr)
    check("mirror: nothing created", not os.path.exists(mstore))
    write(m, f"store = {mstore}\nfollow = a,b\nlog-order = yes\ncategory = x\n")
    r = run([EVBUS, "mirror", "--config", m])
    check("mirror: file values checked together",
          r.returncode == 2 and "--category" in r.stderr and "--log-order" in r.stderr,
          r.stderr)
    write(m, f"store = {mstore}\nfollow = a,b\nlog-orde = yes\n")
    refused("mirror: unknown setting", run([EVBUS, "mirror", "--config", m]),
            f"evbus mirror: {m}:3: unknown setting 'log-orde' (did you mean 'log-order'?)",
            mstore)
    r = run([EVBUS, "mirror", "--config", m], {"EVBUS_STORE": "/nonexistent"})
    check("mirror reads no EVBUS_NAME variables", r.returncode == 2 and
          "log-orde" in r.stderr, r.stderr)
    if BRIDGE:
        b = os.path.join(d, "b.conf")
        write(b, "follow = a,b\nfollow = c,d  # two\nreplicas = 'x'\n")
        refused("bridge: a bad value names FILE:LINE --name", run([BRIDGE, "--config", b]),
                f"evbus-bridge: {b}:3: --replicas: expected a non-negative integer, got 'x'")
        write(b, "follow = a,b\nnats_url = nats://x\n")
        refused("bridge: unknown setting", run([BRIDGE, "--config", b]),
                f"evbus-bridge: {b}:2: unknown setting 'nats_url'")
        write(b, "follow = a,b\nreplicas = 9 # too many\n")
        refused("bridge: a value checked after parsing names its line",
                run([BRIDGE, "--config", b]), f"evbus-bridge: {b}:2: --replicas 9: want 1..5")
        refused("bridge: the environment beats the file",
                run([BRIDGE, "--config", b], {"EVBUS_REPLICAS": "7"}),
                "evbus-bridge: --replicas 7: want 1..5")
        refused("bridge: the command line beats both",
                run([BRIDGE, "--config", b, "--replicas", "6"], {"EVBUS_REPLICAS": "7"}),
                "evbus-bridge: --replicas 6: want 1..5")


class Running:
    """Programs started for the examples; all stopped at the end."""

    def __init__(self, d):
        self.d = d
        self.procs = []

    def start(self, name, argv):
        err = open(os.path.join(self.d, name + ".err"), "w")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err)
        self.procs.append((name, p, err))
        return p

    def stderr(self, name):
        with open(os.path.join(self.d, name + ".err")) as f:
            return f.read()

    def answers(self, name, p, ep):
        """p is running and `evbus status ep` answers it (polled, deadline)."""
        def ok():
            if p.poll() is not None:
                return "exited"
            return run([EVBUS, "status", ep, "--timeout", "1s"]).returncode == 0 and "yes"
        try:
            v = evbtest.wait_for(f"{name} to answer", ok, 20)
        except evbtest.Fail as e:
            v = str(e)
        return check(f"example {name}: starts and answers status", v == "yes",
                     f"{v}: {self.stderr(name)}")

    def stop_all(self):
        for name, p, err in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p, err in self.procs:
            try:
                rc = p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
            err.close()
            check(f"example {name}: SIGTERM stops it cleanly", rc == 0,
                  f"exit {rc}: {self.stderr(name)}")


def examples(d):
    ipc = tempfile.mkdtemp(prefix="evbcf")  # ipc paths are short
    lib = os.path.join(d, "lib")
    # What the units' StateDirectory= and RuntimeDirectory= make before they
    # start: the programs write only inside them.
    for n in ("reservation", "booking", "serve-example", "mirror-example", "bridge"):
        os.makedirs(os.path.join(lib, n))
        os.makedirs(os.path.join(ipc, n))

    def local(src, name):
        with open(os.path.join(SRC, src)) as f:
            text = f.read()
        text = text.replace("/var/lib/evbus/", lib + "/").replace("ipc:///run/evbus/",
                                                                  f"ipc://{ipc}/")
        return write(os.path.join(d, name), text)

    run_ = Running(d)
    try:
        rc = local("services/reservation/reservation.conf", "reservation.conf")
        bc = local("services/booking/booking.conf", "booking.conf")
        res = run_.start("reservation", [RES, "--config", rc])
        book = run_.start("booking", [BOOK, "--config", bc])
        run_.answers("reservation", res, f"ipc://{ipc}/reservation/cmd")
        run_.answers("booking", book, f"ipc://{ipc}/booking/cmd")
        check("example reservation: log and views inside its state directory",
              os.path.isdir(os.path.join(lib, "reservation", "log")) and
              os.path.isdir(os.path.join(lib, "reservation", "views")),
              os.listdir(os.path.join(lib, "reservation")))
        # The pair works: a show, a booking, confirmed through both logs.
        r = run([EVBUS, "call", f"ipc://{ipc}/reservation/cmd", "create_show", "show=s1",
                 "capacity:=10"])
        check("example pair: create_show", r.returncode == 0, r.stderr)
        r = run([EVBUS, "call", f"ipc://{ipc}/booking/cmd", "book", "show=s1", "seats:=2",
                 "customer=c1", "booking=b1"])
        check("example pair: book", r.returncode == 0, r.stderr)

        def confirmed():
            q = run([EVBUS, "call", f"ipc://{ipc}/booking/cmd", "booking", "booking=b1"])
            return q.returncode == 0 and "confirmed" in q.stdout
        try:
            evbtest.wait_for("booking b1 confirmed", confirmed, 20)
            check("example pair: the booking is confirmed (each follows the other)", True)
        except evbtest.Fail as e:
            check("example pair: the booking is confirmed (each follows the other)", False,
                  f"{e}: {run_.stderr('booking')}")
        sc = local("tools/cli/serve-example.conf", "serve.conf")
        srv = run_.start("serve", [EVBUS, "serve", "--config", sc])
        run_.answers("serve", srv, f"ipc://{ipc}/serve-example/cmd")
        mc = local("tools/cli/mirror-example.conf", "mirror.conf")
        mir = run_.start("mirror", [EVBUS, "mirror", "--config", mc])
        run_.answers("mirror", mir, f"ipc://{ipc}/mirror-example/cmd")
        if BRIDGE:
            # Parsing only (it would wait for NATS): the whole file is read
            # and applied when the first error is one of the checks that run
            # after every setting is in.
            bc2 = local("services/bridge/bridge.conf", "bridge.conf")
            refused("example bridge: the file parses",
                    run([BRIDGE, "--config", bc2, "--nats-user", "u"]),
                    "evbus-bridge: --nats-user and --nats-password go together")
    finally:
        run_.stop_all()
        shutil.rmtree(ipc, ignore_errors=True)


def body(d):
    grammar_runtime(d)
    grammar_cli(d)
    examples(d)


sys.exit(T.main("evbcfg", body, short=60))
