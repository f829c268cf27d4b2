#!/usr/bin/env python3
"""Start-up time of evbus-booking against the size of its history.

    tools/scripts/bench_restart.py [--bookings N] [--build DIR] [--keep]

Writes a booking log of N bookings (each a BookingRequested and a
BookingConfirmed, plus 100 still waiting for an answer) with `evbus append`
(no service: as a log written before the deadline index existed), then
starts evbus-booking on it three times and measures, each time, from the
exec to the first accepted `book` command (status answered, a command
carried out): the first start builds the deadline index from the events
(once per log) and the read model from zero (the log was not written by
the service, so it has no views yet), the next ones read only the index. Prints one JSON object a
line (name, unit, ours; the issue's bound beside it as "bound") and what the
service logged about its deadlines.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bookings", type=int, default=1_000_000)
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                    "build"))
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    a = ap.parse_args()
    evbus = os.path.join(a.build, "tools", "evbus")
    bk = os.path.join(a.build, "services", "evbus-booking")
    d = tempfile.mkdtemp(prefix="bench-restart-")
    try:
        store = os.path.join(d, "bk")
        t0 = time.monotonic()
        p = subprocess.Popen([evbus, "append", "--store", store, "--create", "--service",
                              "booking", "--sync", "none"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True)
        past = int(time.time() * 1e6) - 3_600_000_000
        chunk = []
        for i in range(a.bookings + 100):
            pl = {"booking": "b%d" % i, "show": "s", "customer": "c%d" % (i % 1000),
                  "seats": 1}
            chunk.append(json.dumps({"stream": "booking-b%d" % i, "type": "BookingRequested",
                                     "payload": dict(pl, expires_at_us=past + 10 ** 13)}))
            if i < a.bookings:
                chunk.append(json.dumps({"stream": "booking-b%d" % i,
                                         "type": "BookingConfirmed", "payload": pl}))
            if len(chunk) >= 20000:
                p.stdin.write("\n".join(chunk) + "\n")
                chunk = []
            if i and i % 200000 == 0:
                print("bench_restart: %d bookings written (%.0f s)" % (i, time.monotonic() - t0),
                      file=sys.stderr, flush=True)
        p.stdin.write("\n".join(chunk) + "\n")
        p.stdin.close()
        if p.wait() != 0:
            sys.exit("bench_restart: evbus append failed")
        print("bench_restart: log of %d bookings (%d events) written in %.0f s"
              % (a.bookings + 100, 2 * a.bookings + 100, time.monotonic() - t0),
              file=sys.stderr, flush=True)
        for run in range(3):
            cmd = "ipc://%s/cmd" % d
            log = os.path.join(d, "booking-%d.log" % run)
            t0 = time.monotonic()
            svc = subprocess.Popen([bk, "--store", store, "--pub", "ipc://%s/pub" % d,
                                    "--catchup", "ipc://%s/cu" % d, "--cmd", cmd],
                                   stdout=subprocess.DEVNULL, stderr=open(log, "w"))
            while True:
                # One command id: a retry after a timeout gets the first outcome.
                r = subprocess.run([evbus, "call", cmd, "book", "show=s", "seats=1",
                                    "customer=x", "booking=new%d" % run, "--id",
                                    "new%d" % run, "--timeout", "200ms", "--json"],
                                   capture_output=True, text=True)
                if r.returncode == 0:
                    break
                if svc.poll() is not None or time.monotonic() - t0 > 600:
                    sys.exit("bench_restart: booking did not serve: " + open(log).read())
            took = time.monotonic() - t0
            svc.terminate()
            svc.wait(60)
            said = [ln.split(": ", 1)[-1].strip() for ln in open(log)
                    if "deadline" in ln or "wait for an answer" in ln]
            print(json.dumps({"name": "booking_start_%s" % ("first" if run == 0 else "again"),
                              "unit": "s", "bookings": a.bookings + 100, "ours": round(took, 3),
                              "bound": 2.0, "logged": said}), flush=True)
    finally:
        if a.keep:
            print("bench_restart: kept " + d, file=sys.stderr)
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
