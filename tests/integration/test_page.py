#!/usr/bin/python3
"""The live bus page (`--http`, GET /) in a real browser.

    /usr/bin/python3 test_page.py BUILD_DIR [SCREENSHOT.png]

Debian's /usr/bin/python3 runs it: it needs Debian's python3-websocket to
drive Debian's chromium (headless, --no-sandbox, a user-data-dir of its own,
never a downloaded browser) over the DevTools protocol; --dump-dom would show
only the page as loaded, this reads the live DOM while the bus moves.

evbus-reservation (--http, no --http-events) and evbus-booking (--http
--http-events) run as the demo runs them, each following the other. Checks:
  - reservation's /status.json has no "events" and its page says they are
    hidden: payloads stay off without --http-events;
  - a booking made during the test shows on booking's page (its events
    table, from /status.json polled each second): awaited with a 15 s
    deadline, the delay printed;
  - reservation SIGKILLed: booking's page shows its feed of reservation as
    "publisher-lost"; reservation restarted: the feed's history on the page
    holds, after the kill, live, publisher-lost, catching-up, live in that
    order, and the feed is live again;
  - a screenshot of the page is saved (SCREENSHOT.png, default
    page.png in the current directory) and its path printed.
Exit 77 (skipped) when chromium or python3-websocket is missing, a failure
under CI=true.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import check, wait_for  # noqa: E402
import evbtest  # noqa: E402

log = evbtest.logger("page")
BUILD = sys.argv[1]
SHOT = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "page.png")
EVBUS = os.path.join(BUILD, "tools", "evbus")
RES = os.path.join(BUILD, "services", "evbus-reservation")
BK = os.path.join(BUILD, "services", "evbus-booking")
CHROMIUM = "/usr/bin/chromium"


class Cdp:
    """A DevTools connection to one page: send(method, **params) -> result."""

    def __init__(self, ws_url):
        import websocket
        self.ws = websocket.create_connection(ws_url, timeout=20, suppress_origin=True)
        self.next = 0

    def send(self, method, **params):
        self.next += 1
        mid = self.next
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:  # events in between are not ours
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                check("error" not in msg, f"{method}: {msg.get('error')}")
                return msg["result"]

    def eval(self, expr):
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True)
        check("exceptionDetails" not in r, f"page script failed: {expr}: {r}")
        return r["result"].get("value")

    def probe(self, expr):
        """expr's value, or None while it throws (the page still loading)."""
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True)
        return None if "exceptionDetails" in r else r["result"].get("value")

    def close(self):
        self.ws.close()


def http_port(logfile, what):
    """The port a service logged ("http on ... (port N)")."""
    def find():
        with open(logfile) as f:
            for ln in f:
                if "http on" in ln and "(port " in ln:
                    return int(ln.split("(port ")[1].split(")")[0])
        return None
    return wait_for(f"{what}'s HTTP port in {logfile}", find, timeout=20)


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def main():
    try:
        import websocket  # noqa: F401
    except ImportError:
        websocket = None
    if not os.access(CHROMIUM, os.X_OK) or websocket is None:
        log("chromium or python3-websocket is missing (tools/setup.sh --test installs "
            "them)")
        return 1 if os.environ.get("CI") == "true" else 77
    base = evbtest.scratch_dir("page_", short=60)
    procs = {}
    browser = None
    cdp = None
    ok = False
    ep = lambda n: "ipc://" + os.path.join(base, n)  # noqa: E731
    res_follow, bk_follow = f"{ep('r.pub')},{ep('r.cu')}", f"{ep('b.pub')},{ep('b.cu')}"

    def start(name):
        lf = os.path.join(base, name + ".log")
        if name == "reservation":
            argv = [RES, "--store", os.path.join(base, "res"), "--pub", ep("r.pub"),
                    "--catchup", ep("r.cu"), "--cmd", ep("r.cmd"), "--follow", bk_follow,
                    "--http", "127.0.0.1:0"]
        else:
            argv = [BK, "--store", os.path.join(base, "bk"), "--pub", ep("b.pub"),
                    "--catchup", ep("b.cu"), "--cmd", ep("b.cmd"), "--follow", res_follow,
                    "--http", "127.0.0.1:0", "--http-events", "--hold-timeout", "5s"]
        with open(lf, "w") as f:  # a restart starts a fresh log: its port is new
            procs[name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=f)
        return http_port(lf, name)

    def call(cmd_ep, *args):
        r = evbtest.run([EVBUS, "call", cmd_ep, *args, "--json", "--timeout", "3000ms"], 30)
        evbtest.expect(r, 0, f"call {' '.join(args)}")
        return json.loads(r.stdout)

    try:
        rport = start("reservation")
        bport = start("booking")
        log(f"reservation on http://127.0.0.1:{rport}/, booking on http://127.0.0.1:{bport}/")
        call(ep("r.cmd"), "create_show", "show=opera", "capacity=50")

        # Without --http-events no payload goes out.
        rs = json.loads(get(f"http://127.0.0.1:{rport}/status.json"))
        check("events" not in rs, "reservation without --http-events shows events")
        check("<html" in get(f"http://127.0.0.1:{rport}/"), "reservation's / is no page")

        udd = os.path.join(base, "chromium")
        browser = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--user-data-dir=" + udd, "--remote-debugging-port=0",
             "--remote-allow-origins=*", "--window-size=1280,1400", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(base, "chromium.log"), "w"))

        def devtools_port():
            try:
                with open(os.path.join(udd, "DevToolsActivePort")) as f:
                    return int(f.readline())
            except (OSError, ValueError):
                return None
        dport = wait_for("chromium's DevToolsActivePort", devtools_port, timeout=30)

        def page_target():
            try:
                ts = json.loads(get(f"http://127.0.0.1:{dport}/json/list"))
            except OSError:
                return None
            return next((t for t in ts if t.get("type") == "page"), None)
        target = wait_for("chromium's page target", page_target, timeout=20)
        cdp = Cdp(target["webSocketDebuggerUrl"])
        cdp.send("Page.enable")

        # Reservation's page: events hidden.
        cdp.send("Page.navigate", url=f"http://127.0.0.1:{rport}/")
        wait_for("reservation's page to say events are hidden", lambda: cdp.probe(
            f"location.port == '{rport}' && document.title.startsWith('reservation') && "
            "document.getElementById('events').textContent.includes('--http-events')"),
            timeout=15)

        cdp.send("Page.navigate", url=f"http://127.0.0.1:{bport}/")
        wait_for("booking's page to show its feed of reservation live", lambda: cdp.probe(
            f"location.port == '{bport}' && document.title.startsWith('booking') && "
            "!!document.querySelector('#feeds tr[data-state=\"live\"]')"), timeout=15)

        # A booking made now appears on the page.
        bid = "page-%d" % (time.time() * 1000)
        t0 = time.monotonic()
        call(ep("b.cmd"), "book", "show=opera", "seats=2", "customer=ann", "booking=" + bid)
        wait_for(f"booking {bid} on the page", lambda: cdp.probe(
            "[...document.querySelectorAll('#events tr')].some("
            f"r => r.textContent.includes({json.dumps(bid)}))"), timeout=15)
        log(f"booking {bid} appeared on the page {time.monotonic() - t0:.2f} s after the "
            "call was sent")

        # The followed service killed and restarted: the feed's history.
        hist_js = ("[...document.querySelectorAll('#feeds ol[data-history] li')]"
                   ".map(li => [li.dataset.what, li.querySelector('time').textContent])")
        before = len(cdp.eval(hist_js))
        procs["reservation"].send_signal(signal.SIGKILL)
        procs["reservation"].wait(10)
        t_kill = time.monotonic()
        wait_for("the page to show reservation lost", lambda: cdp.probe(
            "!!document.querySelector('#feeds tr[data-state=\"publisher-lost\"]')"),
            timeout=15)
        log(f"publisher lost shown {time.monotonic() - t_kill:.2f} s after SIGKILL")
        start("reservation")

        def sequence():
            whats = [w for w, _ in cdp.probe(hist_js) or []]
            # The ring keeps the last 16: count back from the end if it wrapped.
            after = whats[max(0, before - 1):] if len(whats) < 16 else whats
            want, i = ["live", "publisher-lost", "catching-up", "live"], 0
            for w in after:
                if i < len(want) and w == want[i]:
                    i += 1
            live = cdp.probe("!!document.querySelector('#feeds tr[data-state=\"live\"]')")
            return after if i == len(want) and live else None
        got = wait_for("history live, publisher-lost, catching-up, live on the page",
                       sequence, timeout=30)
        log("history after the kill: " + ", ".join(got))
        shot = cdp.send("Page.captureScreenshot", format="png")
        with open(SHOT, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        check(os.path.getsize(SHOT) > 10000, f"{SHOT}: suspiciously small")
        log(f"screenshot: {SHOT}")
        ok = True
        return 0
    finally:
        if cdp is not None:
            cdp.close()
        for p in list(procs.values()) + ([browser] if browser else []):
            if p.poll() is None:
                p.terminate()
        for p in list(procs.values()) + ([browser] if browser else []):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if not ok:
            for n in ("reservation", "booking"):
                lf = os.path.join(base, n + ".log")
                if os.path.exists(lf):
                    log(f"{n} log tail:\n" + "".join(open(lf).readlines()[-15:]))
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    evbtest.run_main("page", main)
