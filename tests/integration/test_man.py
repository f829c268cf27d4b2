#!/usr/bin/env python3
"""test_man.py: the built man pages say what the programs' --help says.

usage: test_man.py MKMAN HELP2MAN MANDIR EVBUS DAEMON...

MANDIR holds the pages the build made (NAME.1 and the installed NAME.1.gz)
for evbus and each daemon given. Checks:
1. each page is there, and NAME.1.gz holds the same bytes as NAME.1;
2. made again now from the programs (tools/man/mkman.py, the build's own
   recipe, into a scratch directory), each page is the same as the built
   one but for the date on its .TH line: a page never lags its program;
3. rendered by `man -l` (groff): evbus.1 has one subsection "evbus CMD" per
   command of `evbus --help` and "evbus CMD VERB" per verb of a command's
   "Verbs:", nothing else; in each, every flag of that help's "Options:"
   and every line of its text (spaces aside) is there; each daemon's page
   holds every flag and line of its --help;
4. every page renders without groff warnings.
"""
import gzip
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evbtest  # noqa: E402

MKMAN, HELP2MAN, MANDIR, EVBUS = sys.argv[1:5]
DAEMONS = sys.argv[5:]
TALLY = evbtest.Tally()
check = TALLY.check

FLAG_LINE = re.compile(r"^\s+(?:-\w,\s+)?--([a-z0-9][a-z0-9-]*)")
ENV = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="200", MANROFFOPT="-rHY=0", MAN_KEEP_FORMATTING="",
           NO_COLOR="1")


def help_of(argv):
    r = evbtest.run(argv + ["--help"], 30, env=ENV)
    evbtest.check(r.returncode == 0, f"{' '.join(argv)} --help: exit {r.returncode}")
    return r.stdout


def names_in(text, title):
    return evbtest.help_names(text, title)


def flags_in(text):
    return {m.group(1) for line in evbtest.help_section(text, "Options")
            if (m := FLAG_LINE.match(line))}


def squash(s):
    return " ".join(s.split())


def render(page):
    """The page as man shows it, plain text; (text, groff's warnings)."""
    r = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                       timeout=60, env=ENV)
    evbtest.check(r.returncode == 0, f"man -l {page}: exit {r.returncode}: {r.stderr}")
    return re.sub(r".\x08", "", r.stdout), r.stderr.strip()


def missing_lines(help_text, rendered, skip_first_word):
    """Lines of help_text whose words are not in rendered (spaces squashed).
    Option lines are cut into flag and text, which man sets apart. The
    usage line loses "Usage:" and, in a subsection, the program word."""
    flat = squash(rendered)
    out = []
    for line in help_text.splitlines():
        line = line.strip()
        if not line:
            continue
        pieces = [line]
        if re.match(r"^[A-Z][a-z ]+:$", line):  # a heading: help2man's OPTIONS, EXAMPLES
            pieces = [] if re.search(rf"^\s*{line[:-1]}:?\s*$", rendered, re.M | re.I) else [line]
        elif line.startswith("Usage: "):
            words = line.split()[1:]
            pieces = [" ".join(words[1:] if skip_first_word else words)]
        elif line.startswith("or: "):
            pieces = [" ".join(line.split()[2:])]
        elif m := re.match(r"^(-\w, )?(--\S+(?: \S+)?)\s{2,}(.*)$", line):
            pieces = [m.group(2), m.group(3)]
        elif m := re.match(r"^(\S+)\s{2,}(.*)$", line):  # "cat   print events", "0  ok"
            pieces = [m.group(1), m.group(2)]
        out += [p for p in pieces if p and squash(p) not in flat]
    return out


def tests(tmp):
    programs = [EVBUS] + DAEMONS
    check("evbus and at least two daemons given", len(DAEMONS) >= 2, DAEMONS)
    regen = os.path.join(tmp, "regen")
    os.mkdir(regen)
    for prog in programs:
        name = os.path.basename(prog)
        built = os.path.join(MANDIR, name + ".1")
        if not check(f"{name}.1 built", os.path.isfile(built), built):
            continue
        with open(built, "rb") as f:
            page = f.read()
        try:
            with gzip.open(built + ".gz", "rb") as f:
                gz = f.read()
        except OSError as e:
            gz = str(e).encode()
        check(f"{name}.1.gz holds {name}.1", gz == page)

        out = os.path.join(regen, name + ".1")
        r = evbtest.run([sys.executable, MKMAN, "--help2man", HELP2MAN, "--out", out, prog],
                        300, env=ENV)
        if check(f"{name}.1 made again", r.returncode == 0, r.stderr):
            with open(out, "rb") as f:
                again = f.read()
            th = re.compile(rb'^(\.TH "?\S+"? "1") "[^"]*"', re.M)
            check(f"{name}.1 made again is the built page (date aside)",
                  th.sub(rb"\1", again) == th.sub(rb"\1", page) and len(page) > 1000,
                  f"diff {built} {out}")

        text, warnings = render(built)
        check(f"man -l {name}.1: no groff warnings", warnings == "", warnings)
        if prog == EVBUS:
            check_evbus(text)
        else:
            h = help_of([prog])
            gone = sorted(flags_in(h) - set(re.findall(r"--([a-z0-9][a-z0-9-]*)", text)))
            check(f"{name}.1 has every flag of {name} --help ({len(flags_in(h))})",
                  not gone and len(flags_in(h)) > 10, gone)
            gone = missing_lines(h, text, False)
            check(f"{name}.1 has every line of {name} --help", not gone, gone)
            check(f"{name}.1 NAME and SEE ALSO",
                  re.search(rf"^NAME\n\s+{re.escape(name)} - \S", text, re.M) is not None and
                  "evbus(1)" in text, text[:300])


def check_evbus(text):
    top = help_of([EVBUS])
    commands = names_in(top, "Commands")
    check("evbus --help lists commands", len(commands) >= 10, commands)
    gone = missing_lines(top, text.split("\nCOMMANDS\n")[0], False)
    check("evbus.1 before COMMANDS has every line of evbus --help", not gone, gone)

    # The subsections: "   evbus ..." (man indents .SS headings by 3).
    subs, cur = {}, None
    for line in text.splitlines():
        if m := re.match(r"^   (evbus( [a-z-]+)+)\s*$", line):
            cur = m.group(1)
            subs[cur] = []
        elif re.match(r"^\S", line):
            cur = None
        elif cur is not None:
            subs[cur].append(line)
    want = []
    helps = {}
    for c in commands:
        helps[c] = help_of([EVBUS, c])
        want.append(c)
        for v in names_in(helps[c], "Verbs"):
            helps[f"{c} {v}"] = help_of([EVBUS, c, v])
            want.append(f"{c} {v}")
    check(f"evbus.1 has a subsection for each of {len(want)} commands and verbs, in order",
          list(subs) == [f"evbus {w}" for w in want],
          f"\n  page: {list(subs)}\n  help: {want}")
    nflags = 0
    for w in want:
        body = "\n".join(subs.get(f"evbus {w}", []))
        flags = flags_in(helps[w])
        nflags += len(flags)
        gone = sorted(flags - set(re.findall(r"--([a-z0-9][a-z0-9-]*)", body)))
        check(f"evbus.1 'evbus {w}': every flag of its --help ({len(flags)})",
              not gone and (flags or "Verbs:" in helps[w]), gone)
        gone = missing_lines(helps[w], body, True)
        check(f"evbus.1 'evbus {w}': every line of its --help", not gone, gone)
    check("flags seen in all", nflags > 100, nflags)


if __name__ == "__main__":
    if shutil.which("man") is None:
        print("man (man-db) is not installed: skipped")
        sys.exit(77)
    sys.exit(TALLY.main("man.", tests))
