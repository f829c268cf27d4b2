#!/usr/bin/env python3
"""evbus-bridge against a real 3-node NATS JetStream cluster on loopback.

    test_bridge.py CASE EVBUS BRIDGE JS_CONSUME

CASE:
  faults   events appended through `evbus append --to` while the bridge and
           the NATS nodes are SIGKILLed at random, one at a time (a killed
           node is restarted and the next kill waits, with a deadline, until
           its /healthz says it is current again); the R3 stream must then
           hold every event of the log once, in log order, checked message
           by message (js_consume, libnats) against `evbus log cat --json`.
           EVB_BRIDGE_EVENTS events (default 20,000; by hand: 100,000).
  outage   every NATS node down for longer than the stream's duplicate
           window (1 s here), 10,000 events appended meanwhile, NATS back:
           nothing missing, nothing twice.
  two      two bridges started by mistake on one stream while events are
           appended: each event still once, in order.
  errors   usage errors name the flag (or the config file's line, or the
           environment); settings from a file and the environment in their
           order; --http; --json bodies; a log that went back behind the
           stream (a restored backup) and a stream that does not take the
           bridge's subjects stop the link with a reason that names them.

The cluster: own config files, data directories and loopback ports, an
account with JetStream and a user/password (the bridge logs in with
--nats-user/--nats-password); nodes are stopped by pid. Waits poll a
condition with a deadline; the only timed wait is the outage itself,
which must outlast the duplicate window.
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evbtest import Fail, check  # noqa: E402
import evbtest  # noqa: E402

CASE, EVBUS, BRIDGE, CONSUME = sys.argv[1:5]
SLOW = 3 if os.environ.get("EVB_SANITIZED") else 1
log = evbtest.logger(f"bridge_{CASE}")
USER, PASSWORD = "evb", "s3cret-pw"


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Node:
    def __init__(self, base, i, ports, routes):
        self.name = f"n{i}"
        self.client, self.cluster, self.http = ports
        self.dir = os.path.join(base, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(base, f"{self.name}.conf")
        with open(self.conf, "w") as f:
            f.write(f"""server_name: {self.name}
listen: 127.0.0.1:{self.client}
http: 127.0.0.1:{self.http}
jetstream {{ store_dir: "{self.dir}" }}
accounts {{ EVB {{ jetstream: enabled, users: [{{user: {USER}, password: {PASSWORD}}}] }} }}
cluster {{
  name: evbtest
  listen: 127.0.0.1:{self.cluster}
  routes: [{", ".join(f"nats-route://127.0.0.1:{r}" for r in routes)}]
}}
""")
        self.p = None
        self.logf = os.path.join(base, f"{self.name}.log")

    def start(self):
        self.p = subprocess.Popen(["nats-server", "-c", self.conf],
                                  stdout=open(self.logf, "a"), stderr=subprocess.STDOUT)

    def url(self):
        return f"nats://127.0.0.1:{self.client}"

    def kill(self, sig=signal.SIGKILL):
        if self.p and self.p.poll() is None:
            self.p.send_signal(sig)
            self.p.wait(30)

    def healthy(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz",
                                        timeout=2) as r:
                return json.loads(r.read()).get("status") == "ok"
        except Exception:
            return False


class Cluster:
    def __init__(self, base):
        ports = free_ports(9)
        triples = [ports[i * 3:i * 3 + 3] for i in range(3)]
        self.nodes = [Node(base, i + 1, triples[i],
                           [triples[j][1] for j in range(3) if j != i]) for i in range(3)]
        for n in self.nodes:
            n.start()
        self.wait_healthy(self.nodes, "the cluster to form")

    def wait_healthy(self, nodes, what, timeout=60):
        evbtest.wait_for(what, lambda: all(n.healthy() for n in nodes), timeout * SLOW)

    def urls(self):
        return ",".join(n.url() for n in self.nodes)

    def auth_url(self):
        n = self.nodes[0]
        return f"nats://{USER}:{PASSWORD}@127.0.0.1:{n.client}"

    def stop(self):
        for n in self.nodes:
            n.kill(signal.SIGTERM)


class Env(evbtest.DaemonScratch):
    def __init__(self):
        super().__init__(f"bridge_{CASE}_", "evbb_", short=60, suffix="")
        self.cluster = None

    def cleanup(self, ok):
        if self.cluster:
            for n in self.cluster.nodes:
                n.kill()
        super().cleanup(ok, log)


def run(argv, timeout=60, **kw):
    return evbtest.run(argv, timeout * SLOW, **kw)


def events(n, start):
    cats = ["show", "booking", "seat"]
    return "".join(json.dumps({"stream": f"{cats[i % 3]}-{i % 7}.v", "type": "Changed",
                               "payload": {"n": i}}) + "\n" for i in range(start, start + n))


class World:
    def __init__(self, env, n_hist, dedup_ms=120000):
        self.env = env
        env.cluster = self.cluster = Cluster(env.path("nats"))
        self.d = env.path("log")
        r = run([EVBUS, "append", "--store", self.d, "--create", "--service", "box.office"],
                input=events(n_hist, 0), timeout=120)
        check(r.returncode == 0, f"append --store: {r.stderr[-1000:]}")
        self.n = n_hist
        self.pub, self.cu, self.cmd = env.ep("p"), env.ep("c"), env.ep("m")
        self.bcmd = env.ep("b")
        self.serve = env.start([EVBUS, "serve", "--store", self.d, "--pub", self.pub,
                                "--catchup", self.cu, "--cmd", self.cmd, "--heartbeat",
                                "100ms"], "serve")
        evbtest.wait_for("serve's start line",
                         lambda: any("serving" in l for l in self.serve.err), 20 * SLOW)
        self.dedup_ms = dedup_ms
        self.http_port = free_ports(1)[0]
        self.bridge = None
        self.start_bridge()

    def start_bridge(self):
        self.bridge = self.env.start(
            [BRIDGE, "--follow", f"{self.pub},{self.cu}", "--nats", self.cluster.urls(),
             "--nats-user", USER, "--nats-password", PASSWORD, "--replicas", "3",
             "--dedup-window", f"{self.dedup_ms}ms", "--ack-wait", "2s",
             "--cmd", self.bcmd, "--http", f"127.0.0.1:{self.http_port}"], "bridge")

    def status(self):
        r = run([EVBUS, "status", self.bcmd, "--json", "--timeout", "2000ms"], 10)
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)["links"][0]
        except (ValueError, KeyError, IndexError):
            return None

    def append(self, n):
        r = run([EVBUS, "append", "--to", self.cmd, "--timeout", "10000ms"],
                input=events(n, self.n), timeout=300)
        check(r.returncode == 0, f"append --to: {r.returncode} {r.stderr[-1000:]}")
        self.n += n

    def wait_exported(self, timeout=120):
        def done():
            s = self.status()
            return s is not None and s["exported_seq"] >= self.n and s["state"] == "exporting"
        try:
            evbtest.wait_for(f"the bridge to export all {self.n} events", done, timeout * SLOW)
        except Fail:
            raise Fail(f"not exported: status {self.status()}; bridge stderr: "
                       f"{self.bridge.stderr()[-2000:]}")

    def check_stream(self):
        """The JetStream stream, message by message, against the log."""
        self.bridge.p.send_signal(signal.SIGTERM)
        check(self.bridge.p.wait(30 * SLOW) == 0,
              f"bridge exit {self.bridge.p.returncode}: {self.bridge.stderr()[-1500:]}")
        self.serve.p.send_signal(signal.SIGTERM)
        check(self.serve.p.wait(30 * SLOW) == 0, f"serve exit: {self.serve.stderr()[-1000:]}")
        r = run([CONSUME, self.cluster.auth_url(), "EVBUS_BOX_OFFICE"], 300)
        check(r.returncode == 0, f"js_consume: {r.returncode} {r.stderr[-1500:]}")
        got = [json.loads(l) for l in r.stdout.splitlines()]
        r = run([EVBUS, "log", "cat", "--json", self.d], 300)
        check(r.returncode == 0, f"log cat: {r.stderr[-1000:]}")
        want = [json.loads(l) for l in r.stdout.splitlines()]
        check(len(want) == self.n, f"the log holds {len(want)} events, want {self.n}")
        ids = [g["id"] for g in got]
        check(len(ids) == len(set(ids)),
              f"{len(ids) - len(set(ids))} events twice in the stream")
        for i, (g, w) in enumerate(zip(got, want)):
            check(g["id"] == w["id"] and g["seq"] == w["seq"] and g["js_seq"] == i + 1,
                  f"stream message {i + 1}: {g}, the log has seq {w['seq']} id {w['id']}")
        check(len(got) == len(want), f"the stream holds {len(got)} of {len(want)} events")
        sub = got[0]["subject"]
        check(sub.startswith("evbus.box%2Eoffice.") and "%2Ev" in sub,
              f"subject {sub}: want evbus.box%2Eoffice.CATEGORY.STREAM with '.' as %2E")
        return len(got)


def case_faults(env):
    total = int(os.environ.get("EVB_BRIDGE_EVENTS", "20000"))
    w = World(env, 2000)
    appender = subprocess.Popen(
        [EVBUS, "append", "--to", w.cmd, "--timeout", "20000ms"], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    live = total - 2000
    rnd = random.Random(int(os.environ.get("EVB_SEED", "7")))
    kills = {"bridge": 0, "node": 0}

    def feed():
        appender.stdin.write(events(live, 2000))
        appender.stdin.close()

    import threading
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    deadline = time.monotonic() + 240 * SLOW
    while appender.poll() is None and time.monotonic() < deadline:
        # Let some events through between kills: wait for progress.
        s0 = (w.status() or {}).get("exported_seq", 0)
        try:
            evbtest.wait_for("the bridge to move", lambda: (w.status() or {}).get(
                "exported_seq", 0) > s0 + 500 or appender.poll() is not None, 60 * SLOW)
        except Fail:
            raise Fail(f"no progress after a kill: {w.status()}; "
                       f"{w.bridge.stderr()[-1500:]}")
        if appender.poll() is not None:
            break
        if rnd.random() < 0.5:
            w.bridge.p.kill()
            w.bridge.p.wait()
            w.start_bridge()
            kills["bridge"] += 1
        else:
            n = rnd.choice(w.cluster.nodes)
            n.kill()
            n.start()
            kills["node"] += 1
            w.cluster.wait_healthy([n], f"node {n.name} current again after SIGKILL")
    t.join(10)
    check(appender.wait(60 * SLOW) == 0, f"append --to: {appender.stderr.read()[-1000:]}")
    w.n = total
    w.wait_exported()
    n = w.check_stream()
    check(kills["bridge"] + kills["node"] >= 2, f"only {kills} kills happened")
    log(f"{n} events, {kills['bridge']} bridge and {kills['node']} node SIGKILLs: "
        "the R3 stream holds each once, in log order")


def case_outage(env):
    w = World(env, 1000, dedup_ms=1000)
    w.wait_exported()
    for n in w.cluster.nodes:
        n.kill(signal.SIGTERM)
    t0 = time.monotonic()
    w.append(10000)
    # The outage must outlast the duplicate window: a timed wait is the point.
    left = 1.5 - (time.monotonic() - t0)
    if left > 0:
        time.sleep(left)
    def behind():
        s = w.status()
        return s is not None and s["exported_seq"] <= 1000 and s["lag_events"] >= 10000
    try:
        evbtest.wait_for("the status to show the lag", behind, 30 * SLOW)
    except Fail:
        raise Fail(f"status during the outage: {w.status()}")
    check(w.status()["lag_seconds"] > 0, f"lag_seconds: {w.status()}")
    for n in w.cluster.nodes:
        n.start()
    w.cluster.wait_healthy(w.cluster.nodes, "the cluster back")
    w.wait_exported()
    n = w.check_stream()
    log(f"an outage of {time.monotonic() - t0:.1f} s (window 1 s), 10,000 events during it: "
        f"{n} in the stream, each once, in order")


def case_two(env):
    """Two bridges started by mistake on one stream, both running while
    events are appended: the expected last sequence refuses the one that is
    behind, so the stream still holds each event once, in order."""
    w = World(env, 3000)
    other = env.start([BRIDGE, "--follow", f"{w.pub},{w.cu}", "--nats", w.cluster.urls(),
                       "--nats-user", USER, "--nats-password", PASSWORD, "--replicas", "3",
                       "--cmd", env.ep("b2")], "bridge2")
    w.append(5000)
    w.wait_exported()

    def other_done():
        r = run([EVBUS, "status", env.ep("b2"), "--json", "--timeout", "2000ms"], 10)
        return r.returncode == 0 and json.loads(r.stdout)["links"][0]["exported_seq"] >= w.n
    evbtest.wait_for("the second bridge to see the end", other_done, 60 * SLOW)
    r = run([EVBUS, "status", env.ep("b2"), "--json"], 10)
    rewinds = json.loads(r.stdout)["links"][0]["rewinds"] + (w.status() or {}).get(
        "rewinds", 0)
    other.p.send_signal(signal.SIGTERM)
    check(other.p.wait(30 * SLOW) == 0, f"second bridge: {other.stderr()[-1000:]}")
    n = w.check_stream()
    log(f"two bridges on one stream, {n} events: each once, in order ({rewinds} refusals "
        "sent one or the other back to the stream's end)")


def case_errors(env):
    r = run([BRIDGE], 10)
    check(r.returncode == 2 and "--follow" in r.stderr, f"no --follow: {r.returncode} {r.stderr}")
    r = run([BRIDGE, "--follow", "ipc:///x", "--replicas", "1"], 10)
    check(r.returncode == 2 and "PUB_EP,CATCHUP_EP" in r.stderr, f"bad --follow: {r.stderr}")
    r = run([BRIDGE, "--follow", "a,b", "--storage", "tape"], 10)
    check(r.returncode == 2 and "--storage" in r.stderr, f"bad --storage: {r.stderr}")
    r = run([BRIDGE, "--help"], 10)
    check(r.returncode == 0 and "Nats-Msg-Id" in r.stdout, "--help")
    # Settings from a config file and the environment (flags win over the
    # environment, the environment over the file); errors say where.
    conf = env.path("bridge.conf")
    with open(conf, "w") as f:
        f.write("# a comment\nfollow = a,b\nreplicas = 9\n")
    r = run([BRIDGE, "--config", conf], 10)
    check(r.returncode == 2 and "--replicas 9" in r.stderr, f"file replicas: {r.stderr}")
    r = run([BRIDGE, "--config", conf], 10, env={**os.environ, "EVBUS_REPLICAS": "7"})
    check(r.returncode == 2 and "--replicas 7" in r.stderr, f"env over file: {r.stderr}")
    r = run([BRIDGE, "--config", conf, "--replicas", "6"], 10,
            env={**os.environ, "EVBUS_REPLICAS": "7"})
    check(r.returncode == 2 and "--replicas 6" in r.stderr, f"flag over env: {r.stderr}")
    with open(conf, "a") as f:
        f.write("bogus = 1\n")
    r = run([BRIDGE, "--config", conf], 10)
    check(r.returncode == 2 and f"{conf}:4: unknown setting 'bogus'" in r.stderr,
          f"unknown setting: {r.stderr}")
    r = run([BRIDGE, "--follow", "a,b"], 10, env={**os.environ, "EVBUS_MAX_PENDING": "x"})
    check(r.returncode == 2 and "environment" in r.stderr and "--max-pending" in r.stderr,
          f"bad environment value: {r.stderr}")
    r = run([BRIDGE, "--follow", "a,b", "--http", "10.1.2.3:9"], 10)
    check(r.returncode == 2 and "--http-public" in r.stderr, f"public --http: {r.stderr}")
    w = World(env, 10)
    w.wait_exported()
    # --http: /metrics and /status.json say what the command socket says.
    url = f"http://127.0.0.1:{w.http_port}"

    def metrics_done():
        try:
            with urllib.request.urlopen(url + "/metrics", timeout=2) as r:
                text = r.read().decode()
        except Exception:
            return None
        return text if "evbus_bridge_exported_seq{" in text and any(
            l.startswith("evbus_bridge_exported_seq{") and l.endswith(" 10")
            for l in text.splitlines()) else None
    text = evbtest.wait_for("/metrics with exported_seq 10", metrics_done, 30 * SLOW)
    for fam in ("evbus_bridge_lag_events", "evbus_bridge_up", "evbus_bridge_rewinds_total",
                "evbus_bridge_nats_connected 1"):
        check(fam in text, f"/metrics lacks {fam}")
    with urllib.request.urlopen(url + "/status.json", timeout=5) as r:
        sj = json.loads(r.read())
    check(sj["links"][0]["exported_seq"] == 10 and sj["links"][0]["stream"] ==
          "EVBUS_BOX_OFFICE", f"/status.json: {sj}")
    # --json: the bodies are what `evbus log cat --json` prints.
    jb = env.start([BRIDGE, "--follow", f"{w.pub},{w.cu}", "--nats", w.cluster.urls(),
                    "--nats-user", USER, "--nats-password", PASSWORD, "--json",
                    "--js-stream", "EVBUS_JSON", "--subject-prefix", "json", "--cmd",
                    env.ep("bj")], "bridge-json")

    def json_done():
        r = run([EVBUS, "status", env.ep("bj"), "--json", "--timeout", "2000ms"], 10)
        return r.returncode == 0 and json.loads(r.stdout)["links"][0]["exported_seq"] >= 10
    evbtest.wait_for("the --json bridge to export 10 events", json_done, 60 * SLOW)
    jb.p.send_signal(signal.SIGTERM)
    check(jb.p.wait(30 * SLOW) == 0, f"--json bridge: {jb.stderr()[-1000:]}")
    r = run([CONSUME, w.cluster.auth_url(), "EVBUS_JSON"], 60)
    check(r.returncode == 0, f"js_consume EVBUS_JSON: {r.stderr}")
    bodies = [json.loads(l)["body"] for l in r.stdout.splitlines()]
    w.serve.p.send_signal(signal.SIGTERM)
    w.serve.p.wait(30 * SLOW)
    rc = run([EVBUS, "log", "cat", "--json", w.d], 60)
    check(bodies == [json.loads(l) for l in rc.stdout.splitlines()],
          f"--json bodies differ from log cat --json: {bodies[:1]}")
    w.serve = env.start([EVBUS, "serve", "--store", w.d, "--pub", w.pub, "--catchup", w.cu,
                         "--cmd", w.cmd, "--heartbeat", "100ms"], "serve2")
    evbtest.wait_for("serve's start line again",
                     lambda: any("serving" in l for l in w.serve.err), 20 * SLOW)
    # The log goes back (a restored backup) behind what the stream holds:
    # the link stops instead of exporting new events under old sequences.
    w.serve.p.send_signal(signal.SIGTERM)
    w.serve.p.wait(30 * SLOW)
    shutil.copytree(w.d, w.d + ".bak")
    w.serve = env.start([EVBUS, "serve", "--store", w.d, "--pub", w.pub, "--catchup", w.cu,
                         "--cmd", w.cmd, "--heartbeat", "100ms"], "serve3")
    evbtest.wait_for("serve's start line again",
                     lambda: any("serving" in l for l in w.serve.err), 20 * SLOW)
    w.append(5)
    w.wait_exported()
    w.bridge.p.send_signal(signal.SIGTERM)
    w.bridge.p.wait(30 * SLOW)
    w.serve.p.send_signal(signal.SIGTERM)
    w.serve.p.wait(30 * SLOW)
    shutil.rmtree(w.d)
    os.rename(w.d + ".bak", w.d)
    w.serve = env.start([EVBUS, "serve", "--store", w.d, "--pub", w.pub, "--catchup", w.cu,
                         "--cmd", w.cmd, "--heartbeat", "100ms"], "serve4")
    evbtest.wait_for("serve's start line again",
                     lambda: any("serving" in l for l in w.serve.err), 20 * SLOW)
    w.n -= 5
    w.start_bridge()
    evbtest.wait_for("the link stopped: the log went back", lambda: (w.status() or {}).get(
        "state") == "stopped", 60 * SLOW)
    why = w.status()["reason"]
    check("up to seq 15" in why and "head is 10" in why, f"reason: {why}")
    # A stream that does not take our subjects: the link stops and names it.
    w.bridge.p.send_signal(signal.SIGTERM)
    w.bridge.p.wait(30)
    pub = subprocess.run([CONSUME], capture_output=True, text=True)
    check(pub.returncode == 2, "js_consume usage")
    # This one takes its login from a config file.
    with open(conf, "w") as f:
        f.write(f"nats-user = {USER}\nnats-password = {PASSWORD}\n")
    w.bridge = env.start([BRIDGE, "--follow", f"{w.pub},{w.cu}", "--nats",
                          w.cluster.urls(), "--config", conf, "--js-stream",
                          "EVBUS_BOX_OFFICE", "--subject-prefix", "other", "--cmd", w.bcmd],
                         "bridge2")
    # Same stream, other prefix: the stream does not take those subjects;
    # the link stops, naming the stream, its subjects and ours.
    w.append(5)
    try:
        evbtest.wait_for("the link stopped", lambda: (w.status() or {}).get(
            "state") == "stopped", 60 * SLOW)
    except Fail:
        raise Fail(f"status {w.status()}; {w.bridge.stderr()[-1500:]}")
    why = w.status()["reason"]
    check("EVBUS_BOX_OFFICE" in why and "evbus.box%2Eoffice.>" in why and
          "other.box%2Eoffice.>" in why, f"reason: {why}")
    check(any("STOPPED" in l and "EVBUS_BOX_OFFICE" in l for l in w.bridge.err),
          f"stderr: {w.bridge.stderr()[-1000:]}")
    log(f"usage errors named; a stream that does not take our subjects: {why[:200]}")


def main():
    if shutil.which("nats-server") is None:
        print("[bridge] FAIL: nats-server is not installed (tools/setup.sh --test)",
              file=sys.stderr)
        return 1
    env = Env()
    ok = False
    try:
        {"faults": case_faults, "outage": case_outage, "two": case_two,
         "errors": case_errors}[CASE](env)
        ok = True
    except Fail as e:
        log(f"FAIL: {e}")
    finally:
        env.cleanup(ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
