#!/usr/bin/env python3
"""test_completion.py: bash completion (tools/completion/evbus) of evbus and
the daemons, run in a real bash.

usage: test_completion.py SCRIPT EVBUS DAEMON...

Each case sources SCRIPT in `bash --norc` (no bash-completion package
needed), sets COMP_WORDS and COMP_CWORD as readline would for the words
typed, calls the function that `complete -p` names for the program, and
reads COMPREPLY. The programs are named by their paths, as the script
runs the program being completed. The candidates are compared with what
the programs' --help lists (commands, verbs, flags), and with scratch
files and directories for values that are paths. Saved contexts live in a
scratch XDG_CONFIG_HOME.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evbtest  # noqa: E402

SCRIPT, EVBUS = sys.argv[1:3]
DAEMONS = sys.argv[3:]
TALLY = evbtest.Tally()
check = TALLY.check

FLAG_LINE = re.compile(r"^\s+(?:-\w,\s+)?--([a-z0-9][a-z0-9-]*)")

DRIVER = r'''
source "$1" || exit 3
shift
# complete -p names the function bound to the program's base name.
f=$(complete -p "${1##*/}" 2>/dev/null | sed -nE 's/.*-F ([^ ]+) .*/\1/p')
[[ -n $f ]] || { echo "no completion for ${1##*/}" >&2; exit 4; }
COMP_WORDS=("$@")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
"$f" "${1##*/}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
'''


def complete(env, *words):
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", DRIVER, "driver", SCRIPT]
                       + list(words), capture_output=True, text=True, timeout=60, env=env)
    evbtest.check(r.returncode == 0, f"completing {words}: exit {r.returncode}: {r.stderr}")
    return sorted(w for w in r.stdout.split("\n") if w)


def help_of(argv):
    return evbtest.run(argv + ["--help"], 30).stdout


def names(text, title):
    return sorted(evbtest.help_names(text, title))


def flags(text):
    return sorted("--" + m.group(1) for line in evbtest.help_section(text, "Options")
                  if (m := FLAG_LINE.match(line)))


def tests(tmp):
    env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(tmp, "config"), NO_COLOR="1")
    for d in ("logs/orders", "logs/seats", "logfile-dir"):
        os.makedirs(os.path.join(tmp, d))
    for f in ("logs/notes.txt", "cert_secret"):
        open(os.path.join(tmp, f), "w").close()
    p = os.path.join(tmp, "")
    E = EVBUS

    commands = names(help_of([E]), "Commands")
    check("commands: evbus <TAB> is evbus --help's list",
          complete(env, E, "") == commands and len(commands) >= 10, commands)
    got = complete(env, E, "s")
    check("commands: evbus s<TAB>", got == sorted(c for c in commands if c.startswith("s"))
          and "sniff" in got, got)
    check("evbus --v<TAB>: --version", complete(env, E, "--v") == ["--version"])

    verbs = names(help_of([E, "log"]), "Verbs")
    got = complete(env, E, "log", "")
    check("verbs: evbus log <TAB> is evbus log --help's list",
          got == verbs and "cat" in got and "tail" in got, got)
    check("verbs: evbus context r<TAB>", complete(env, E, "context", "r") == ["rm"])

    sniff = flags(help_of([E, "sniff"]))
    got = complete(env, E, "sniff", "--")
    check("flags: evbus sniff --<TAB> is every flag of its --help",
          got == sniff and "--follow" in got and "--from-start" in got, got)
    got = complete(env, E, "sniff", "--fr")
    check("flags: evbus sniff --fr<TAB>", got == ["--from", "--from-start"], got)
    got = complete(env, E, "log", "cat", p + "logs", "--")
    check("flags of a verb: evbus log cat DIR --<TAB>",
          got == flags(help_of([E, "log", "cat"])) and "--where" in got, got)

    # Values: directories for DIR, files for FILE, words for WHEN/POLICY.
    dirs = sorted([p + "logfile-dir", p + "logs"])
    got = complete(env, E, "serve", "--store", p + "log")
    check("value DIR: evbus serve --store <TAB> gives directories only", got == dirs, got)
    got = complete(env, E, "log", "cat", p + "logs/")
    check("argument DIR: evbus log cat <TAB> gives directories only",
          got == [p + "logs/orders", p + "logs/seats"], got)
    got = complete(env, E, "log", "tail", "-f", "x,y", p + "logs/o")
    check("argument after -f VALUE: evbus log tail -f EP DIR<TAB>",
          got == [p + "logs/orders"], got)
    got = complete(env, E, "log", "cat", p + "logs", p)
    check("no second argument of log cat", got == [], got)
    got = complete(env, E, "serve", "--cert", p + "c")
    check("value FILE: evbus serve --cert <TAB> gives files", got == [p + "cert_secret"], got)
    got = complete(env, E, "status", "--server-key", p + "logs/")
    check("value KEY|FILE: files", p + "logs/notes.txt" in got, got)
    got = complete(env, E, "sniff", "--color", "")
    check("value WHEN: auto always never", got == ["always", "auto", "never"], got)
    got = complete(env, E, "sniff", "--color=n")
    check("value of --flag=: --color=n<TAB>", got == ["--color=never"], got)
    got = complete(env, E, "mirror", "--sync", "")
    check("value POLICY: none every group", got == ["every", "group", "none"], got)
    got = complete(env, E, "sniff", "--count", "")
    check("value N: nothing to offer", got == [], got)

    # Saved contexts for -C/--context and for context show/rm.
    for n in ("prod", "staging"):
        evbtest.expect(evbtest.run([E, "context", "add", n, "--cmd", "tcp://127.0.0.1:5"],
                                   30, env=env), 0, f"context add {n}")
    check("value NAME of -C: the saved contexts",
          complete(env, E, "status", "-C", "") == ["prod", "staging"])
    check("value NAME of --context=: the saved contexts",
          complete(env, E, "sniff", "--context=s") == ["--context=staging"])
    check("argument NAME of context rm: the saved contexts",
          complete(env, E, "context", "rm", "p") == ["prod"])

    check("daemons given", len(DAEMONS) >= 2, DAEMONS)
    for d in DAEMONS:
        name = os.path.basename(d)
        want = flags(help_of([d]))
        got = complete(env, d, "--")
        check(f"{name} --<TAB>: every flag of its --help",
              got == want and "--version" in got and len(got) > 10, got)
        got = complete(env, d, "--store", p + "log")
        want = dirs if "--store" in want else []
        check(f"{name} --store <TAB>: directories (when it has --store)", got == want, got)
    if any(os.path.basename(d).endswith(("reservation", "booking")) for d in DAEMONS):
        d = next(d for d in DAEMONS if os.path.basename(d).endswith("booking")
                 or os.path.basename(d).endswith("reservation"))
        got = complete(env, d, "--log-level", "")
        check("a service's --log-level <TAB>", got == ["debug", "error", "info", "warn"], got)
    for d in DAEMONS:
        if os.path.basename(d) == "evbus-bridge":
            got = complete(env, d, "--storage", "")
            check("evbus-bridge --storage <TAB>: file memory", got == ["file", "memory"], got)


if __name__ == "__main__":
    sys.exit(TALLY.main("completion.", tests))
