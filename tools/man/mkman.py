#!/usr/bin/env python3
"""mkman.py: a program's man page, made by help2man from its own --help.

usage: mkman.py --help2man PATH --out FILE PROGRAM

The page says what --help and --version say, nothing written by hand but
the one-line NAME description and SEE ALSO (below), so the two cannot
disagree: the build runs this after every change of the program
(tools/man/CMakeLists.txt) and tests/integration/test_man.py checks it.

A program whose --help has a "Commands:" list (evbus) gets a COMMANDS
section: one subsection per command with that command's --help, and for
a command with "Verbs:" one subsection per verb with the verb's --help
("evbus log cat"), each rendered by help2man like the page itself, its
headings ("Options:", "Exit codes:") turned into bold lines so that they
stay inside their subsection.

The date on the page is help2man's: this month, or SOURCE_DATE_EPOCH's.
Output is written to FILE only when complete (FILE.tmp, then renamed).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

# NAME lines: what the program is (help2man's -n).
DESCRIPTIONS = {
    "evbus": "inspect, serve, mirror, watch and call evbus event logs and services",
    "evbus-reservation": "evbus service: seat availability per show (holds, confirms, releases)",
    "evbus-booking": "evbus service: bookings as sagas over evbus-reservation",
    "evbus-bridge": "export evbus service logs into NATS JetStream, exactly once",
}
SEE_ALSO = ["evbus", "evbus-reservation", "evbus-booking", "evbus-bridge"]


def help_of(argv):
    r = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, LC_ALL="C.UTF-8", NO_COLOR="1"))
    if r.returncode != 0:
        sys.exit(f"mkman: {' '.join(argv)} --help: exit {r.returncode}: {r.stderr}")
    return r.stdout


def names_under(text, title):
    """The first words of the lines indented by two under "title:"."""
    out, on = [], False
    for line in text.splitlines():
        if line.strip() == title + ":":
            on = True
        elif on and not line.strip():
            break
        elif on and (m := re.match(r"^  (\S+)", line)):
            out.append(m.group(1))
    return out


def help2man(h2m, program, help_option, name, include=None):
    argv = [h2m, "--no-info", "--locale", "C.UTF-8", "--name", name, "--help-option", help_option,
            "--version-option", "--version"]
    if include is not None:
        argv += ["--include", include]
    r = subprocess.run(argv + [program], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, LC_ALL="C.UTF-8", NO_COLOR="1"))
    if r.returncode != 0 or not r.stdout.startswith(".\\\""):
        sys.exit(f"mkman: help2man {help_option} {program}: exit {r.returncode}: "
                 f"{r.stderr}")
    return r.stdout


def quote(s):
    return '"' + s.replace('"', '\\(dq') + '"'


def subsection(h2m, program, words):
    """The roff of `PROGRAM WORDS --help` as one .SS of the COMMANDS section."""
    page = help2man(h2m, program, " ".join(words + ["--help"]), "-")
    lines = page.splitlines()
    start = next(i for i, line in enumerate(lines) if line == ".SH SYNOPSIS")
    out = [".SS " + quote(" ".join(["evbus"] + words))]
    for line in lines[start + 1:]:
        if line.startswith(".SH DESCRIPTION"):
            out.append(".PP")
            continue
        if m := re.match(r"^\.S[HS] (.*)$", line):
            title = m.group(1).strip('"')
            if title.isupper():  # help2man's "OPTIONS", "EXAMPLES": as the help wrote them
                title = title.capitalize() + ":"
            out += [".PP", ".B " + quote(title)]
            continue
        if line.startswith(".B evbus") and len(out) == 1:
            # The synopsis: "evbus log cat" in bold, its arguments after.
            out += [".PP", line]
            continue
        # help2man's --include reads a line "[NAME]" or "/REGEX/" as a
        # section of its own: make sure no text line looks like one.
        if line.startswith(("[", "/")):
            line = "\\&" + line
        out.append(line)
    return out


def commands_include(h2m, program, top_help):
    commands = names_under(top_help, "Commands")
    if not commands:
        sys.exit(f"mkman: {program} --help: no commands under 'Commands:'")
    out = ["[COMMANDS]",
           "Each command's and verb's --help, as `" + os.path.basename(program) +
           " COMMAND [VERB] --help` prints it."]
    for cmd in commands:
        out += subsection(h2m, program, [cmd])
        for verb in names_under(help_of([program, cmd]), "Verbs"):
            out += subsection(h2m, program, [cmd, verb])
    return out


def main():
    ap = argparse.ArgumentParser(description="a man page from --help with help2man")
    ap.add_argument("--help2man", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("program")
    a = ap.parse_args()
    program = os.path.abspath(a.program)
    name = os.path.basename(program)
    top = help_of([program])

    inc = []
    if "\nCommands:\n" in top:
        inc += commands_include(a.help2man, program, top)
    others = [p for p in SEE_ALSO if p != name]
    inc += ["[SEE ALSO]", ",\n".join(f".BR {p} (1)" for p in others)]
    out_dir = os.path.dirname(os.path.abspath(a.out))
    with tempfile.NamedTemporaryFile("w", suffix=".h2m", dir=out_dir, delete=False) as f:
        f.write("\n".join(inc) + "\n")
        inc_path = f.name
    try:
        page = help2man(a.help2man, program, "--help",
                        DESCRIPTIONS.get(name, f"manual page for {name}"), inc_path)
    finally:
        os.unlink(inc_path)
    with open(a.out + ".tmp", "w") as f:
        f.write(page)
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
