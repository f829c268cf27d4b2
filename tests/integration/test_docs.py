#!/usr/bin/env python3
"""test_docs.py: the flags in --help and in the READMEs agree.

usage: test_docs.py EVBUS SRC_DIR DAEMON...

Everything is discovered, nothing listed here, so new commands, verbs and
flags are checked as they land:
- commands from `evbus --help` ("Commands:"), verbs from each `evbus CMD
  --help` ("Verbs:"), flags from each help's option lines (`-X, --name` or
  `--name` at the start of a line, under "Options:"; --help itself aside);
- daemons (evbus-reservation, evbus-booking, evbus-bridge...) from argv,
  flags from their --help the same way.

Where a program's flags are written:
- `evbus CMD`: the section of tools/README.md whose `##` heading names
  `evbus CMD` (with its ### and #### subsections, up to the next `##`);
- a daemon: services/README.md's shared part (everything before the first
  `## evbus-` heading: the runtime's flags), plus the daemon's own `## NAME`
  section there, plus services/NAME-WITHOUT-evbus-/README.md when it exists
  (evbus-bridge: services/bridge/README.md).

Checks, each listing every mismatch it found:
1. every flag of a command's (or any of its verbs') --help is written in
   its section; every flag of a daemon's --help in its text;
2. the reverse: every `--flag` written in a section exists. The rule for
   flags of other programs mentioned in passing: a code span (or a line of
   a code block) that begins with `evbus CMD [VERB]` or `evbus-NAME` holds
   flags of that program and is checked against its --help; one that begins
   with another program's name (a lowercase word that is not a verb of the
   section's command: nats, curl, cmake...) is not ours and is skipped; any
   other `--flag` (in prose, a table, a span such as `--from N`) belongs to
   the section's own command (one of its verbs, for a command with verbs; a
   span beginning with a verb name, `cat DIR --json`, to that verb). In
   services/README.md's shared part a flag must exist in at least one daemon.
   In README.md only the spans that begin with `evbus ...` are checked (its
   prose talks about many programs).
3. `evbus --help`'s line for `log` names every verb of `evbus log --help`.
4. exit codes: every help (command, verb, daemon built on cli.c) has one
   "Exit codes:" list, with 0 and 2; codes 5 to 8 only in `evbus call`'s
   (and the full list, 0 to 8, in `evbus --help`).
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evbtest  # noqa: E402

EVBUS, SRC = sys.argv[1:3]
DAEMONS = sys.argv[3:]
TALLY = evbtest.Tally()
check = TALLY.check

FLAG_LINE = re.compile(r"^\s+(?:-\w,\s+)?--([a-z0-9][a-z0-9-]*)")
FLAG_ANY = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")
SKIP_FLAGS = {"help", "version"}


def help_of(argv):
    r = evbtest.run(argv + ["--help"], 30)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} --help: exit {r.returncode}: {r.stderr}")
    return r.stdout


help_section = evbtest.help_section


def exit_codes(text):
    """(number of "Exit codes:" lists, the codes of the first)."""
    n = sum(1 for line in text.splitlines() if line.strip() == "Exit codes:")
    codes = {int(m.group(1)) for line in help_section(text, "Exit codes")
             if (m := re.match(r"^  (\d)  ", line))}
    return n, codes


def help_flags(text):
    return {m.group(1) for line in help_section(text, "Options")
            if (m := FLAG_LINE.match(line))} - SKIP_FLAGS


def names_in(lines):
    """The names of a "Commands:" or "Verbs:" list: the first word of each
    line indented by two (deeper lines continue a summary)."""
    return [m.group(1) for line in lines if (m := re.match(r"^  (\S+)", line))]


def code_spans(text):
    """(piece, is_code): each line of a code block, each `inline span` (it
    may run over a line break) and the prose between them. A piece holding
    several commands (`a; b`, `a && b`, `a | b`) is split into them."""
    pieces, in_block, para = [], False, []

    def flush():
        parts = " ".join(para).split("`")
        for i, p in enumerate(parts):
            pieces.append((p, i % 2 == 1))
        para.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            flush()
            in_block = not in_block
        elif in_block:
            pieces.append((line.strip().lstrip("$ "), True))
        elif not line.strip():
            flush()
        else:
            para.append(line)
    flush()
    out = []
    for p, is_code in pieces:
        if is_code:
            out += [(c.strip(), True) for c in re.split(r";|&&|\|", p)]
        else:
            out.append((p, False))
    return out


def owner(span, own, verbs, programs):
    """Who the flags of a code span belong to: a key of programs, `own`, or
    None (another program's)."""
    words = span.split()
    if not words:
        return own
    w = words[0]
    if w == "evbus" and len(words) > 1:
        key = "evbus " + words[1]
        if len(words) > 2 and key + " " + words[2] in programs:
            return key + " " + words[2]
        return key if key in programs else None
    if w in programs:
        return w
    if w.startswith("evbus-"):
        return "evbus-*"  # a daemon named in general (evbus-SERVICE)
    if w in verbs:
        return own + " " + w
    if re.match(r"^[a-z./][a-z0-9_./-]*$", w) and not w.startswith("--"):
        return None
    return own


def split_sections(md, level_re):
    """[(heading, text)] for each heading matching level_re."""
    out, cur, buf = [], None, []
    for line in md.splitlines():
        if re.match(r"^##\s", line):
            if cur is not None:
                out.append((cur, "\n".join(buf)))
            cur, buf = (line if level_re.match(line) else None), []
            continue
        buf.append(line)
    if cur is not None:
        out.append((cur, "\n".join(buf)))
    return out


def read(path):
    with open(os.path.join(SRC, path)) as f:
        return f.read()


def tests(_tmp):
    top = help_of([EVBUS])
    commands = names_in(help_section(top, "Commands"))
    check("evbus --help lists commands", len(commands) >= 5, commands)
    programs = {}      # "evbus log cat" / "evbus-booking" -> set of flags
    verbs_of = {}      # "evbus log" -> [verbs]
    codes = {}         # "evbus log cat" -> (number of lists, {codes})
    for c in commands:
        key = "evbus " + c
        text = help_of([EVBUS, c])
        verbs = names_in(help_section(text, "Verbs"))
        verbs_of[key] = verbs
        programs[key] = help_flags(text)
        codes[key] = exit_codes(text)
        for v in verbs:
            vtext = help_of([EVBUS, c, v])
            programs[key + " " + v] = help_flags(vtext)
            codes[key + " " + v] = exit_codes(vtext)

    # 4. one exit-code list per help, with the codes that apply.
    n, top_codes = exit_codes(top)
    check("evbus --help lists every exit code once", n == 1 and top_codes == set(range(9)),
          f"{n} lists, codes {sorted(top_codes)}")
    bad = [f"{k}: {n} lists, codes {sorted(cs)}" for k, (n, cs) in codes.items()
           if n != 1 or not {0, 2} <= cs or (cs & {5, 6, 7, 8} and k != "evbus call")]
    check("each command's help has one exit-code list, 5-8 only in call's", not bad,
          "\n  " + "\n  ".join(bad))
    check("evbus call --help lists 5 to 8", {5, 6, 7, 8} <= codes["evbus call"][1],
          codes["evbus call"])
    for k in verbs_of:
        if verbs_of[k]:
            union = set().union(*(codes[k + " " + v][1] for v in verbs_of[k]))
            check(f"{k} --help lists its verbs' codes", codes[k][1] == union,
                  f"{sorted(codes[k][1])} != {sorted(union)}")
    for d in DAEMONS:
        text = help_of([d])
        programs[os.path.basename(d)] = help_flags(text)
        n, cs = exit_codes(text)
        check(f"{os.path.basename(d)} --help: at most one exit-code list, no 5-8",
              n <= 1 and not cs & {5, 6, 7, 8}, f"{n} lists, codes {sorted(cs)}")
    programs["evbus-*"] = set().union(*(programs[os.path.basename(d)] for d in DAEMONS))

    def flags_of(key):
        """A command's flags: its own and all its verbs'."""
        s = set(programs.get(key, set()))
        for v in verbs_of.get(key, []):
            s |= programs[key + " " + v]
        return s

    # 3. the log line of evbus --help names every log verb.
    lines = top.splitlines()
    i = next((n for n, l in enumerate(lines) if l.startswith("  log ")), None)
    log_line = ""
    if i is not None:
        log_line = lines[i]
        for l in lines[i + 1:]:
            if not l.startswith("    "):
                break
            log_line += " " + l.strip()
    missing = [v for v in verbs_of.get("evbus log", []) if not re.search(
        r"\b" + re.escape(v) + r"\b", log_line.split(None, 1)[-1])]
    check("evbus --help's log line names every log verb",
          verbs_of.get("evbus log") and not missing, f"missing {missing}: {log_line!r}")

    # 1 and 2 for the evbus commands, against tools/README.md.
    sections = {}
    for head, text in split_sections(read("tools/README.md"), re.compile(r"^##\s+`evbus ")):
        m = re.match(r"^##\s+`evbus ([a-z]+)", head)
        sections.setdefault("evbus " + m.group(1), []).append(text)
    undocumented, unknown, foreign = [], [], []

    def reverse(text, own, own_flags, where):
        for span, is_code in code_spans(text):
            who = owner(span, own, verbs_of.get(own, []), programs) if is_code else own
            if who is None:
                continue
            if who == "":
                continue  # README.md's prose: only quoted commands are checked
            have = own_flags if who == own and own_flags is not None else flags_of(who)
            for f in FLAG_ANY.findall(span):
                if f not in SKIP_FLAGS and f not in have:
                    (unknown if who == own else foreign).append(
                        f"{where}: --{f} ({who} has no such flag)")

    for c in commands:
        key = "evbus " + c
        text = "\n".join(sections.get(key, []))
        if not text:
            undocumented.append(f"{key}: no `## `{key}`` section in tools/README.md")
            continue
        written = set(FLAG_ANY.findall(text))
        progs = [key] + [key + " " + v for v in verbs_of[key]]
        for p in progs:
            for f in sorted(programs[p] - written):
                undocumented.append(f"{p} --{f}")
        reverse(text, key, None, f"tools/README.md `{key}`")

    # 1 and 2 for the daemons, against services/README.md (+ their own).
    svc = read("services/README.md")
    cut = re.search(r"^## evbus-", svc, re.M)
    shared = svc[:cut.start()] if cut else svc
    own_sections = dict(split_sections(svc, re.compile(r"^## evbus-")))
    daemon_names = [os.path.basename(d) for d in DAEMONS]
    for name in daemon_names:
        text = shared + "\n" + own_sections.get(f"## {name}", "")
        extra = os.path.join("services", name.replace("evbus-", ""), "README.md")
        own_text = own_sections.get(f"## {name}", "")
        if os.path.exists(os.path.join(SRC, extra)):
            own_text += "\n" + read(extra)
            text += "\n" + read(extra)
        written = set(FLAG_ANY.findall(text))
        for f in sorted(programs[name] - written):
            undocumented.append(f"{name} --{f} (not in services/README.md's shared part,"
                                f" its `## {name}` section nor {extra})")
        reverse(own_text, name, programs[name], f"{name}'s docs")
    reverse(shared, "evbus-*", programs["evbus-*"], "services/README.md (shared part)")

    # README.md: only what it quotes as `evbus CMD ... --flag` is checked.
    reverse(read("README.md"), "", set(), "README.md")

    check("every --help flag is in its README section", not undocumented,
          "\n  " + "\n  ".join(undocumented))
    check("every --flag in a README section is in that program's --help",
          not unknown, "\n  " + "\n  ".join(unknown))
    check("every `evbus CMD --flag` quoted in the READMEs exists", not foreign,
          "\n  " + "\n  ".join(foreign))


if __name__ == "__main__":
    sys.exit(TALLY.main("docs.", tests))
