#!/usr/bin/env python3
"""test_version.py: --version on every program.

usage: test_version.py VERSION EVBUS DAEMON...

VERSION is the project's (CMake's PROJECT_VERSION). Each program answers
--version with one line "NAME VERSION" on stdout, nothing on stderr, exit
0, whatever else the command line holds (a daemon needs no --store for
it), and its --help lists --version. evbus answers at the top level only:
`evbus log state --version V` keeps its own flag, and a subcommand without
such a flag refuses --version as any unknown option (exit 2).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evbtest  # noqa: E402

VERSION, EVBUS = sys.argv[1:3]
DAEMONS = sys.argv[3:]
TALLY = evbtest.Tally()
check = TALLY.check


def answers(argv, name):
    r = evbtest.run(argv, 30)
    want = f"{name} {VERSION}\n"
    check(f"{' '.join([name] + argv[1:])}: '{want.strip()}', exit 0, quiet stderr",
          r.returncode == 0 and r.stdout == want and r.stderr == "",
          f"exit {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr!r}")


def tests(tmp):
    check("VERSION looks like X.Y.Z", len(VERSION.split(".")) == 3, VERSION)
    answers([EVBUS, "--version"], "evbus")
    r = evbtest.run([EVBUS, "--help"], 30)
    check("evbus --help lists --version", "--version" in r.stdout, r.stdout)

    # log state's own --version V (a value flag) is untouched.
    r = evbtest.run([EVBUS, "log", "state", os.path.join(tmp, "none"), "s", "--version"], 30)
    check("evbus log state ... --version still wants its value (exit 2)",
          r.returncode == 2 and "--version needs a value" in r.stderr, r.stderr)
    r = evbtest.run([EVBUS, "sniff", "--version"], 30)
    check("evbus sniff --version: unknown option, exit 2",
          r.returncode == 2 and "unknown option '--version'" in r.stderr,
          f"exit {r.returncode}: {r.stderr}")

    check("daemons given", len(DAEMONS) >= 2, DAEMONS)
    for d in DAEMONS:
        name = os.path.basename(d)
        answers([d, "--version"], name)
        # Before the checks of the settings: no --store needed.
        answers([d, "--http-public", "--version"], name)
        r = evbtest.run([d, "--help"], 30)
        check(f"{name} --help lists --version",
              r.returncode == 0 and any(line.lstrip().startswith("--version")
                                        for line in r.stdout.splitlines()), r.stdout)
        r = evbtest.run([d, "--versio"], 30)
        check(f"{name} --versio: refused, exit 2", r.returncode == 2,
              f"exit {r.returncode}: {r.stdout} {r.stderr}")


if __name__ == "__main__":
    sys.exit(TALLY.main("version.", tests))
