"""evbtest: what the Python integration tests share.

Imported by test_*.py in this directory (each puts its own directory first
on sys.path). It holds no test of its own: scratch directories under
EVB_TEST_TMP and the ipc:// endpoints in them, a check that raises Fail, a
named check that counts (Tally), running a program to completion, polling a
condition with a deadline, children whose output lines are read by threads,
and the start/stop bookkeeping of `evbus` children whose stderr goes to a
file. No sleep here synchronises anything: every wait polls with a deadline.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

TMP = os.environ.get("EVB_TEST_TMP") or tempfile.gettempdir()


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def logger(tag):
    """A log(msg) that prints "[tag] msg" on stdout at once."""
    def log(msg):
        print(f"[{tag}] {msg}", flush=True)
    return log


def run(argv, timeout=60, **kw):
    """argv run to completion, its output captured as text."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def expect(r, code, what):
    """r (a completed run) when it exited with code; Fail naming what otherwise."""
    check(r.returncode == code,
          f"{what}: exit {r.returncode}, expected {code}\nstdout: {r.stdout}\n"
          f"stderr: {r.stderr}")
    return r


def run_main(tag, main):
    """Exit with main()'s code; a Fail prints "[tag] FAIL: ..." and exits 1."""
    try:
        sys.exit(main())
    except Fail as e:
        print(f"[{tag}] FAIL: {e}", file=sys.stderr)
        sys.exit(1)


def wait_for(what, fn, timeout=30):
    """Call fn until it returns a true value; return it. Fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)  # poll interval, not a synchronisation
    raise Fail(f"timed out after {timeout}s waiting for {what}")


def wchan(pid):
    """What process pid waits in ("anon_pipe_read", "pipe_write", ...), or ""."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read()
    except OSError:
        return ""


def jlines(text):
    """Every non-empty line as JSON; raises on a line that is not JSON."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---- scratch directories ----

def scratch_dir(prefix, short=None):
    """A fresh directory under EVB_TEST_TMP (made when missing), else under
    the system's temporary directory; there too when short is given and
    EVB_TEST_TMP is not shorter than short (ipc:// paths are limited to about
    100 bytes). The caller removes it."""
    base = os.environ.get("EVB_TEST_TMP") or None
    if base and short is not None and len(base) >= short:
        base = None
    if base:
        os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=base)


class Scratch:
    """A run's directory under TMP and the directory of its ipc:// endpoints:
    the same one, unless its path is `short` characters or longer (ipc paths
    are limited to ~107 bytes), then a fresh one under /tmp."""

    def __init__(self, prefix, ipc_prefix, short=70, suffix=".sock"):
        self.dir = scratch_dir(prefix)
        self.ipcdir = (self.dir if len(self.dir) < short
                       else tempfile.mkdtemp(prefix=ipc_prefix))
        self.suffix = suffix

    def ep(self, name):
        return f"ipc://{self.ipcdir}/{name}{self.suffix}"

    def path(self, name):
        return os.path.join(self.dir, name)

    def remove(self, ok, log):
        """Remove both directories after a pass; keep them (and say so) after
        a failure."""
        if ok:
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.ipcdir != self.dir:
                shutil.rmtree(self.ipcdir, ignore_errors=True)
        else:
            log(f"kept {self.dir}")


# ---- children ----

class Proc:
    """A child whose stdout and stderr lines are read by two threads: each
    stdout line goes to self._out_line (then None at the end), each stderr
    line to self.err. A subclass sets up what _out_line needs before calling
    this constructor."""

    def __init__(self, argv, stdin=False, env=None, name=None):
        self.name = name or os.path.basename(argv[0])
        self.argv = argv
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  text=True, errors="replace",
                                  env=None if env is None else {**os.environ, **env})
        self.err = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.p.stdout, self._out_line, True),
                             daemon=True),
            threading.Thread(target=self._read, args=(self.p.stderr, self.err.append, False),
                             daemon=True)]
        for t in self.readers:
            t.start()

    @staticmethod
    def _read(f, put, end):
        for line in f:
            put(line.rstrip("\n"))
        if end:
            put(None)

    def _out_line(self, line):
        raise NotImplementedError

    def stderr(self):
        return "\n".join(self.err)

    def join(self, timeout):
        # The child is gone; its last lines may still be in the pipes.
        for t in self.readers:
            t.join(timeout=timeout)



class Daemon(Proc):
    """A child whose stdout is not read (its stderr lines are, in err)."""

    def _out_line(self, line):
        pass


class DaemonScratch(Scratch):
    """A Scratch that also starts Daemons and kills what is left of them at
    cleanup (then removes the directories as Scratch.remove does)."""

    def __init__(self, prefix, ipc_prefix, short=70, suffix=".sock"):
        super().__init__(prefix, ipc_prefix, short, suffix)
        self.procs = []

    def start(self, argv, name):
        p = Daemon(argv, name=name)
        self.procs.append(p)
        return p

    def cleanup(self, ok, log):
        for p in self.procs:
            if p.p.poll() is None:
                p.p.kill()
                p.p.wait()
        self.remove(ok, log)

class Procs:
    """`evbus` children started with stdout discarded and stderr in
    BASE/NAME.err, stopped by term() or all killed by kill_all(). A stopped
    (SIGSTOP) child is continued first, so that it can act on the signal."""

    def __init__(self, evbus, base):
        self.evbus = evbus
        self.base = base
        self.procs = []

    def start(self, argv, name):
        errf = open(os.path.join(self.base, f"{name}.err"), "w")
        p = subprocess.Popen([self.evbus, *argv], stdout=subprocess.DEVNULL, stderr=errf,
                             stdin=subprocess.DEVNULL)
        p.name, p.errpath = name, errf.name
        errf.close()
        self.procs.append(p)
        return p

    @staticmethod
    def stderr(p):
        with open(p.errpath) as f:
            return f.read()

    def term(self, p, timeout=30):
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            raise Fail(f"{p.name} did not stop within {timeout}s of SIGTERM")

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()


def procs_main(tag, evbus, prefix, ipc_prefix, steps):
    """Run steps(procs, ep) in a fresh Scratch with a Procs; on Fail print it
    and each child's stderr. Returns the exit code (0 when all passed)."""
    log = logger(tag)
    scratch = Scratch(prefix, ipc_prefix)
    procs = Procs(evbus, scratch.dir)
    ok = False
    t0 = time.monotonic()
    try:
        for step in steps:
            step(procs, scratch.ep)
        ok = True
    except Fail as e:
        print(f"[{tag}] FAIL: {e}", file=sys.stderr)
        for p in procs.procs:
            print(f"--- {p.name} stderr:\n{procs.stderr(p)[-3000:]}", file=sys.stderr)
    finally:
        procs.kill_all()
        scratch.remove(ok, log)
    log(f"{'ok' if ok else 'FAILED'} in {time.monotonic() - t0:.1f}s")
    return 0 if ok else 1


# ---- named checks that go on after a failure ----

class Tally:
    """check() prints "ok NAME" or "FAIL NAME: detail" and counts; the test
    goes on. main() runs body(dir) in a scratch directory, prints the counts
    and returns the exit code: 0 when something passed and nothing failed."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}" + (f": {detail}" if detail else ""))
        return cond

    def main(self, prefix, body, short=None):
        tmp = scratch_dir(prefix, short)
        try:
            body(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 and self.passed > 0 else 1


def filter_cases():
    """The filter combinations sniff and `log cat` share (one matcher,
    tools/cli/filter.c): (flags, predicate over an event as --json prints
    it). Both tests check that exactly the matching events come out."""
    def where(e, k, v):
        return e["payload"].get(k) == v

    return [
        (["--type", "Added"], lambda e: e["type"] == "Added"),
        (["--type", "Added", "--type", "Removed"], lambda e: e["type"] in ("Added", "Removed")),
        (["--stream", "show-*"], lambda e: e["stream"].startswith("show-")),
        (["--stream", "show*-[12]"], lambda e: e["stream"].startswith("show") and
         e["stream"][-2:] in ("-1", "-2")),
        (["--where", "n=7"], lambda e: where(e, "n", 7)),
        (["--where", "name=x3"], lambda e: where(e, "name", "x3")),
        (["--where", "even=true", "--where", "name=x2"],
         lambda e: where(e, "even", True) and where(e, "name", "x2")),
        (["--where", "f=2.5"], lambda e: where(e, "f", 2.5)),
        (["--where", "n=7.0"], lambda e: where(e, "n", 7)),
        (["--where", "missing=1"], lambda e: False),
        (["--category", "booking", "--type", "Changed"],
         lambda e: e["category"] == "booking" and e["type"] == "Changed"),
    ]


def help_section(text, title):
    """The lines of a --help block that starts with `title:` ("Options",
    "Commands", "Verbs", "Exit codes"), up to a blank line."""
    out, on = [], False
    for line in text.splitlines():
        if line.strip() == title + ":":
            on = True
        elif on and not line.strip():
            break
        elif on:
            out.append(line)
    return out


def help_names(text, title):
    """The names of a "Commands:" or "Verbs:" list of a --help: the first
    word of each line indented by two (deeper lines continue a summary)."""
    return [m.group(1) for line in help_section(text, title)
            if (m := re.match(r"^  (\S+)", line))]
