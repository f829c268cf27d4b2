#!/usr/bin/env python3
"""The bridge's benchmark: events/s that evbus-bridge exports from a served
log into JetStream, next to raw js_PublishMsgAsync of as many messages of
the same body size, measured in the same run on the same NATS.

    bench_bridge.py BUILD_DIR [--events N] [--replicas 1|3]

BUILD_DIR holds tools/evbus, services/evbus-bridge, services/js_raw_pub and
examples/js_consume. NATS: one nats-server (--replicas 1) or a 3-node
cluster (--replicas 3) on loopback ports, in a scratch directory removed at
the end. Prints one JSON object a line (name, unit, ours, baseline, ratio),
as `evbus bench --json` does. The export is timed from the bridge's start
to its status saying every event is in the stream (polled every 20 ms);
the baseline's body size is the bridge's mean (status published_bytes).
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_nats(base, replicas):
    ports = free_ports(3 * replicas)
    procs, urls, https = [], [], []
    for i in range(replicas):
        c, r, h = ports[3 * i:3 * i + 3]
        conf = os.path.join(base, f"n{i}.conf")
        routes = [ports[3 * j + 1] for j in range(replicas) if j != i]
        with open(conf, "w") as f:
            f.write(f"server_name: n{i}\nlisten: 127.0.0.1:{c}\nhttp: 127.0.0.1:{h}\n"
                    f"jetstream {{ store_dir: \"{base}/n{i}\" }}\n")
            if replicas > 1:
                f.write(f"cluster {{ name: bench, listen: 127.0.0.1:{r}, routes: ["
                        + ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes) + "] }\n")
        procs.append(subprocess.Popen(["nats-server", "-c", conf],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls.append(f"nats://127.0.0.1:{c}")
        https.append(h)
    deadline = time.monotonic() + 60
    for h in https:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{h}/healthz", timeout=2) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        break
            except Exception:
                pass
            if time.monotonic() > deadline:
                sys.exit("bench_bridge: NATS did not become healthy")
            time.sleep(0.05)
    return procs, ",".join(urls)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build")
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--replicas", type=int, default=1, choices=(1, 3))
    a = ap.parse_args()
    evbus = os.path.join(a.build, "tools", "evbus")
    bridge = os.path.join(a.build, "services", "evbus-bridge")
    raw = os.path.join(a.build, "services", "js_raw_pub")
    base = tempfile.mkdtemp(prefix="bench_bridge_")
    procs = []
    try:
        log = os.path.join(base, "log")
        pay = "x" * 150
        ap_ = subprocess.Popen([evbus, "append", "--store", log, "--create", "--service",
                                "bench"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True)
        chunk = []
        for i in range(a.events):
            chunk.append(json.dumps({"stream": f"show-{i % 1000}", "type": "SeatHeld",
                                     "payload": {"n": i, "pad": pay}}))
            if len(chunk) == 10000:
                ap_.stdin.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            ap_.stdin.write("\n".join(chunk) + "\n")
        ap_.stdin.close()
        if ap_.wait() != 0:
            sys.exit("bench_bridge: making the log failed")
        nats, urls = start_nats(base, a.replicas)
        procs += nats
        pub, cu, cmd = (f"ipc://{base}/{n}" for n in ("p", "c", "b"))
        srv = subprocess.Popen([evbus, "serve", "--store", log, "--pub", pub, "--catchup", cu],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(srv)
        t0 = time.monotonic()
        br = subprocess.Popen([bridge, "--follow", f"{pub},{cu}", "--nats", urls, "--replicas",
                               str(a.replicas), "--cmd", cmd], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        procs.append(br)
        while True:
            r = subprocess.run([evbus, "status", cmd, "--json", "--timeout", "1s"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                st = json.loads(r.stdout)["links"][0]
                if st["exported_seq"] >= a.events:
                    body = round(st["published_bytes"] / max(1, st["published"]))
                    break
            if time.monotonic() - t0 > 3600:
                sys.exit("bench_bridge: the export did not finish in an hour")
            time.sleep(0.02)
        ours_s = time.monotonic() - t0
        br.send_signal(signal.SIGTERM)
        br.wait(60)
        # The baseline: as many messages of the bridge's mean body size.
        r = subprocess.run([raw, urls.split(",")[0], "RAW", "raw.x", str(a.events), str(body),
                            str(a.replicas)], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"bench_bridge: ours {a.events / ours_s:.0f} events/s; the baseline "
                     f"failed: js_raw_pub: {r.stderr}")
        base_rate = json.loads(r.stdout)["per_second"]
        ours = a.events / ours_s
        print(json.dumps({"name": f"bridge_export_r{a.replicas}", "unit": "events/s",
                          "ours": round(ours), "baseline": round(base_rate),
                          "ratio": round(ours / base_rate, 3), "events": a.events,
                          "body_bytes": body}))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
