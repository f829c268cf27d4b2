#!/usr/bin/env python3
"""test_durations.py: every duration a person types has a unit.

usage: test_durations.py EVBUS RESERVATION BOOKING [BRIDGE]

Each duration flag of the evbus commands and of the daemons takes "500ms",
"3s", "2.5s", "2m", "1h30m", "1d". A bare number is refused (exit 2) with a
hint that names the unit the flag took before units, never reinterpreted;
flags whose names said "-ms" were renamed and say so. The same holds where
the daemons read their settings from the environment or a config file.
Units are accepted: a fraction of a second bounds a sniffer's wait.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evbtest  # noqa: E402

EVBUS, RESERVATION, BOOKING = sys.argv[1:4]
BRIDGE = sys.argv[4] if len(sys.argv) > 4 else None
TALLY = evbtest.Tally()
check = TALLY.check
NOBODY = "tcp://127.0.0.1:1"


def run(argv, env=None, timeout=30):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("EVBUS_"):
            del e[k]
    e.update(env or {})
    return evbtest.run(argv, timeout, env=e)


def refused(name, r, *says):
    check(f"{name}: exit 2", r.returncode == 2, f"{r.returncode} {r.stderr}")
    missing = [s for s in says if s not in r.stderr]
    check(f"{name}: the message says {says}", not missing, r.stderr)


def tests(tmp):
    follow = f"{NOBODY},{NOBODY}"
    ms = "(a bare number used to mean milliseconds)"
    s = "(a bare number used to mean seconds)"
    # The commands whose durations were milliseconds ...
    for argv in (["status", NOBODY], ["call", NOBODY, "status"],
                 ["append", "--to", NOBODY], ["feed", "retry", NOBODY, "show"]):
        refused(f"{argv[0]} --timeout 3000", run([EVBUS, *argv, "--timeout", "3000"]),
                "--timeout 3000: give a unit, e.g. 3000ms or 3s", ms)
    refused("call --timeout 2500", run([EVBUS, "call", NOBODY, "status", "--timeout", "2500"]),
            "e.g. 2500ms or 2.5s")
    refused("mirror --status-every 100",
            run([EVBUS, "mirror", "--follow", follow, "--store", os.path.join(tmp, "m"),
                 "--status-every", "100"]), "--status-every 100: give a unit", ms)
    check("a refused mirror made no log", not os.path.exists(os.path.join(tmp, "m")))
    # ... and those that were seconds.
    for argv in (["sniff", "--follow", follow],
                 ["mirror", "--follow", follow, "--store", os.path.join(tmp, "m"),
                  "--until-caught-up"],
                 ["peers"]):
        refused(f"{argv[0]} --timeout 5", run([EVBUS, *argv, "--timeout", "5"]),
                "--timeout 5: give a unit, e.g. 5s", s)
    refused("sniff --timeout 2.5 (a fraction, no unit)",
            run([EVBUS, "sniff", "--follow", follow, "--timeout", "2.5"]), "e.g. 2.5s", s)
    refused("serve --heartbeat-ms", run([EVBUS, "serve", "--heartbeat-ms", "200"]),
            "--heartbeat-ms was renamed --heartbeat, which takes a unit: --heartbeat 200ms")
    refused("serve --heartbeat 100", run([EVBUS, "serve", "--heartbeat", "100"]),
            "e.g. 100ms or 0.1s")
    refused("an unknown unit", run([EVBUS, "status", NOBODY, "--timeout", "5x"]),
            "--timeout: '5x': unknown unit 'x' (ms, s, m, h or d)")
    refused("finer than a millisecond", run([EVBUS, "status", NOBODY, "--timeout", "1.5ms"]),
            "finer than a millisecond")
    refused("zero", run([EVBUS, "status", NOBODY, "--timeout", "0s"]), "--timeout: expected")
    refused("short flag -t 3000", run([EVBUS, "status", NOBODY, "-t", "3000"]),
            "give a unit")

    # Units are taken: a sniffer of nobody ends after 1.5 s with exit 1
    # (nothing printed), not at once and not after 1.5 minutes or hours.
    t0 = time.monotonic()
    r = run([EVBUS, "sniff", "--follow", follow, "--json", "--timeout", "1.5s"])
    took = time.monotonic() - t0
    check("sniff --timeout 1.5s: exit 1, nothing printed", r.returncode == 1 and
          r.stdout == "", f"{r.returncode} {r.stderr}")
    check("sniff --timeout 1.5s waited the 1.5 s, not minutes", 1.4 <= took < 15,
          f"{took:.2f}s")
    # A mirror that cannot catch up gives up after its --timeout, and says
    # how long it waited the way the flag takes it.
    t0 = time.monotonic()
    r = run([EVBUS, "mirror", "--follow", follow, "--store", os.path.join(tmp, "mir"),
             "--service", "mir", "--until-caught-up", "--timeout", "1200ms"])
    took = time.monotonic() - t0
    check("mirror --until-caught-up --timeout 1200ms: exit 4 after 1.2 s, said as 1200ms",
          r.returncode == 4 and "not caught up after 1200ms" in r.stderr and
          1.1 <= took < 15, f"{r.returncode} {took:.2f}s {r.stderr}")

    # The daemons: flags, environment and config files alike.
    store = os.path.join(tmp, "svc")
    base = ["--store", store, "--cmd", "ipc://" + os.path.join(tmp, "cmd")]
    refused("reservation --command-ttl 60", run([RESERVATION, *base, "--command-ttl", "60"]),
            "--command-ttl 60: give a unit, e.g. 60s", s)
    refused("EVBUS_COMMAND_TTL=60", run([RESERVATION, *base], env={"EVBUS_COMMAND_TTL": "60"}),
            "EVBUS_COMMAND_TTL: --command-ttl 60: give a unit")
    conf = os.path.join(tmp, "res.conf")
    with open(conf, "w") as f:
        f.write("# a comment\ncommand-ttl = 90\n")
    refused("command-ttl = 90 in a config file", run([RESERVATION, *base, "--config", conf]),
            f"{conf}:2: --command-ttl 90: give a unit")
    refused("--command-ttl 1500ms", run([RESERVATION, *base, "--command-ttl", "1500ms"]),
            "not whole seconds")
    check("refused settings made no store", not os.path.exists(store))
    refused("booking --hold-timeout 5000", run([BOOKING, *base, "--hold-timeout", "5000"]),
            "--hold-timeout 5000: give a unit, e.g. 5000ms", ms)
    refused("booking --hold-timeout 2d", run([BOOKING, *base, "--hold-timeout", "2d"]),
            "want 1ms..1d")
    if BRIDGE:
        b = [BRIDGE, "--follow", follow]
        refused("bridge --ack-wait-ms", run([*b, "--ack-wait-ms", "2000"]),
                "--ack-wait-ms was renamed --ack-wait, which takes a unit: --ack-wait 2000ms")
        refused("bridge --dedup-window-ms", run([*b, "--dedup-window-ms=9000"]),
                "--dedup-window 9000ms")
        refused("bridge --ack-wait 2000", run([*b, "--ack-wait", "2000"]),
                "e.g. 2000ms or 2s")


if __name__ == "__main__":
    sys.exit(TALLY.main("durations.", tests))
