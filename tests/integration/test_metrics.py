#!/usr/bin/env python3
"""`--http`: /metrics and /status.json, scraped by a real Prometheus.

    test_metrics.py EVBUS

`evbus serve` (the publisher) and `evbus mirror` (a follower that refuses
events of type Bad, so its feed stalls on one) run with --http on
127.0.0.1, port 0. A Prometheus of its own (Debian's package; its own
config, data directory and port; the package's service is not used) scrapes
both every 250 ms. Checks:
  - promtool check metrics passes on both outputs; /status.json is what
    `evbus status --json` says; an unknown path is 404.
  - appends go on while the mirror's feed is stalled on the Bad event:
    through Prometheus' query API the feed's lag rises above 250 events, its
    lag in seconds above 0 (the stalled event's age), and its state is
    stalled; after `evbus feed skip` past the Bad event, lag is
    0 and the state live again.
  - a service (evbus-reservation --http): two commands, one rejected,
    show in evbus_commands_total by outcome and in the duration histogram;
    promtool passes on its output too.
  - serve stopped: evbus_publisher_up of the mirror's publisher goes to 0
    within two heartbeat intervals, plus the 500 ms between renderings (and
    500 ms of slack); the delay is printed.
Exit 77 (skipped) when prometheus is not installed, a failure under CI=true.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import Fail, check, wait_for  # noqa: E402
import evbtest  # noqa: E402

EVBUS = sys.argv[1]
log = evbtest.logger("metrics")


def run(argv, timeout=60, **kw):
    return evbtest.run([EVBUS, *argv], timeout, **kw)


def get(url, timeout=5):
    """(status, body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""  # not listening (yet, or any more)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_port(proc, what):
    """The port a program says it listens on ("http on ... (port N)")."""
    seen = []

    def line():
        ln = proc.stderr.readline()
        check(ln != "", f"{what} exited before saying its HTTP port: {''.join(seen)}")
        seen.append(ln)
        if "http on" in ln and "(port " in ln:
            return int(ln.split("(port ")[1].split(")")[0])
        return None
    port = wait_for(f"{what}'s HTTP port", line, timeout=20)
    # Keep reading, so that a full pipe never blocks the program.
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return port


def sample(text, name):
    """The value of the first sample of name in a /metrics text."""
    for ln in text.splitlines():
        if ln.startswith(name + "{") or ln.startswith(name + " "):
            return float(ln.rsplit(" ", 1)[1])
    return None


def lines(n, start=0, type_="Added"):
    return "".join(json.dumps({"stream": f"show-{i % 5}", "type": type_,
                               "payload": {"i": i}}) + "\n" for i in range(start, start + n))


def main():
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        log("prometheus is not installed (tools/setup.sh --test installs it)")
        return 1 if os.environ.get("CI") == "true" else 77
    base = evbtest.scratch_dir("metrics_", short=60)
    procs = []
    ok = False
    t0 = time.monotonic()
    try:
        pub, cu = "ipc://" + os.path.join(base, "p"), "ipc://" + os.path.join(base, "c")
        scmd, mcmd = "ipc://" + os.path.join(base, "s"), "ipc://" + os.path.join(base, "m")
        srv = subprocess.Popen([EVBUS, "serve", "--store", os.path.join(base, "log"),
                                "--create", "--service", "shows", "--pub", pub, "--catchup",
                                cu, "--cmd", scmd, "--http", "127.0.0.1:0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(srv)
        sport = http_port(srv, "serve")
        mir = subprocess.Popen([EVBUS, "mirror", "--follow", f"{pub},{cu}", "--store",
                                os.path.join(base, "mirror"), "--cmd", mcmd, "--http",
                                "127.0.0.1:0", "--refuse-type", "Bad"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(mir)
        mport = http_port(mir, "mirror")
        murl, surl = f"http://127.0.0.1:{mport}", f"http://127.0.0.1:{sport}"

        # The documents themselves.
        wait_for("both endpoints to serve", lambda: get(surl + "/metrics")[0] == 200 and
                 get(murl + "/metrics")[0] == 200)
        for url in (surl, murl):
            st, body = get(url + "/metrics")
            r = subprocess.run(["promtool", "check", "metrics"], input=body, text=True,
                               capture_output=True, timeout=30)
            check(r.returncode == 0, f"promtool check metrics {url}: {r.stdout} {r.stderr}")
            check(get(url + "/nothing")[0] == 404, f"{url}/nothing is not a 404")
        st, body = get(surl + "/status.json")
        r = run(["status", "--json", scmd])
        check(st == 200 and json.loads(body)["log_id"] == json.loads(r.stdout)["log_id"],
              f"/status.json {st} {body[:200]} vs evbus status {r.stdout[:200]}")

        # Prometheus, scraping both.
        pdir = os.path.join(base, "prom")
        os.makedirs(pdir)
        pport = free_port()
        with open(os.path.join(pdir, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\n"
                    "scrape_configs:\n  - job_name: evbus\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{sport}', '127.0.0.1:{mport}']\n")
        prom = subprocess.Popen(["prometheus", "--config.file",
                                 os.path.join(pdir, "prometheus.yml"),
                                 "--storage.tsdb.path", os.path.join(pdir, "data"),
                                 "--web.listen-address", f"127.0.0.1:{pport}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(prom)
        purl = f"http://127.0.0.1:{pport}"
        wait_for("prometheus to be ready", lambda: get(purl + "/-/ready")[0] == 200
                 if prom.poll() is None else check(False, "prometheus exited"))

        def q(expr):
            st, body = get(purl + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
            if st != 200:
                return None
            res = json.loads(body)["data"]["result"]
            return float(res[0]["value"][1]) if res else None

        wait_for("prometheus to scrape both targets",
                 lambda: q('sum(up{job="evbus"})') == 2)

        # A stall while the publisher goes on.
        r = run(["append", "--to", scmd], input=lines(200))
        check(r.returncode == 0, f"append: {r.returncode} {r.stderr[-300:]}")
        r = run(["append", "--to", scmd], input=lines(1, 200, "Bad"))
        check(r.returncode == 0, f"append Bad: {r.returncode} {r.stderr}")
        bad = int(r.stdout.split("appended seq ")[1].split()[0])
        r = run(["append", "--to", scmd], input=lines(300, 201))
        check(r.returncode == 0, f"append: {r.returncode} {r.stderr[-300:]}")
        sel = 'category="show"'
        wait_for("lag > 250 and state stalled in prometheus",
                 lambda: (q(f"evbus_feed_lag_events{{{sel}}}") or 0) > 250 and
                 q(f'evbus_feed_state{{{sel},state="stalled"}}') == 1)
        lag = q(f"evbus_feed_lag_events{{{sel}}}")
        # The stalled event was seen: its age is the lag in seconds, > 0.
        lag_s = wait_for("lag in seconds > 0", lambda: (lambda v: v if v and v > 0 else None)(
            q(f"evbus_feed_lag_seconds{{{sel}}}")))
        r = run(["feed", "skip", mcmd, "show", str(bad)])
        check(r.returncode == 0, f"feed skip: {r.returncode} {r.stderr}")
        wait_for("lag 0 and state live in prometheus",
                 lambda: q(f"evbus_feed_lag_events{{{sel}}}") == 0 and
                 q(f'evbus_feed_state{{{sel},state="live"}}') == 1)
        check(q(f"evbus_feed_lag_seconds{{{sel}}}") == 0, "lag in seconds not 0 when live")
        check(q(f"evbus_feed_applied_events_total{{{sel}}}") == 500,
              "the mirror did not apply the 500 other events")
        check(q('evbus_publisher_up') == 1, "publisher not up while serving")

        # A service: its commands counted and timed.
        res = os.path.join(os.path.dirname(EVBUS), "..", "services", "evbus-reservation")
        rcmd = "ipc://" + os.path.join(base, "r")
        svc = subprocess.Popen([res, "--store", os.path.join(base, "res"), "--cmd", rcmd,
                                "--pub", "ipc://" + os.path.join(base, "rp"), "--catchup",
                                "ipc://" + os.path.join(base, "rc"), "--http", "127.0.0.1:0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(svc)
        rurl = f"http://127.0.0.1:{http_port(svc, 'evbus-reservation')}"
        r = run(["call", rcmd, "create_show", "show=opera", "capacity=40"])
        check(r.returncode == 0, f"create_show: {r.returncode} {r.stderr}")
        r = run(["call", rcmd, "create_show", "show=opera", "capacity=40"])
        check(r.returncode == 5, f"create_show again (rejected): {r.returncode} {r.stderr}")

        def counted():
            body = get(rurl + "/metrics")[1]
            return body if 'outcome="rejected"} 1' in body else None
        body = wait_for("the service's metrics to count both commands", counted)
        r = subprocess.run(["promtool", "check", "metrics"], input=body, text=True,
                           capture_output=True, timeout=30)
        check(r.returncode == 0, f"promtool check metrics (service): {r.stdout} {r.stderr}")
        check('evbus_commands_total{service="reservation",outcome="ok"} 1' in body and
              'evbus_command_duration_seconds_count{service="reservation",'
              'command="create_show"} 2' in body, f"service metrics: {body[-1500:]}")

        # The publisher stops: down within two heartbeats (and a scrape).
        srv.terminate()
        srv.wait(timeout=30)
        t_stop = time.monotonic()
        wait_for("evbus_publisher_up 0",
                 lambda: sample(get(murl + "/metrics")[1], "evbus_publisher_up") == 0,
                 timeout=10)
        down_ms = (time.monotonic() - t_stop) * 1000
        # Two heartbeat intervals (2 x 500 ms) without one, seen at the next
        # rendering (every 500 ms), with slack for a busy machine.
        check(down_ms < 2 * 500 + 500 + 500, f"publisher down after {down_ms:.0f} ms")
        wait_for("prometheus to see the publisher down", lambda: q("evbus_publisher_up") == 0)
        log(f"promtool passes; lag rose to {lag:.0f} events ({lag_s:.2f} s) with the feed "
            f"stalled, back to 0 and "
            f"live after feed skip; publisher down {down_ms:.0f} ms after serve stopped")
        ok = True
    except Fail as e:
        print(f"[metrics] FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
        if ok:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"[metrics] kept {base}", file=sys.stderr)
    log(f"ok in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
