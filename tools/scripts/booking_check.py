#!/usr/bin/env python3
"""Check the reservation and booking services' invariants from outside.

Used by tools/demo.sh and the services tests. It only talks to the services'
command sockets through `evbus call --json`, so it checks what a user sees:

  1. quiescence: both services' feeds and views are live with lag 0 and no
     booking is still `requested` (waits up to --wait seconds for that);
  2. per show: held + reserved + available == capacity, and held / reserved
     equal the sums of the seats of the holds in that state;
  3. per booking (the booking read model): a final state, which agrees with
     the reservation's hold for it (confirmed <-> confirmed with the same
     seats; rejected, cancelled, expired <-> nothing held);
  4. the read models agree with the aggregates (availability per show, and
     the status of a sample of bookings).

Prints one line per problem and a summary; exit 0 only when all held.
"""
import argparse
import json
import subprocess
import sys
import time

FINAL = {"confirmed", "rejected", "cancelled", "expired"}


class Caller:
    """`evbus call --json` to any endpoint. `extra`: more arguments for every
    call, as a list (e.g. ["--cert", FILE, "--server-key", KEY]) or a dict
    from endpoint to list (CURVE: each service has its own server key)."""

    def __init__(self, evbus, timeout_ms=3000, extra=None):
        self.evbus = evbus
        self.timeout_ms = timeout_ms
        self.extra = extra

    def extra_for(self, ep):
        if isinstance(self.extra, dict):
            return list(self.extra.get(ep, []))
        return list(self.extra or [])

    def call(self, ep, command, *args):
        cmd = [self.evbus, "call", ep, command, *args, "--json",
               "--timeout", f"{self.timeout_ms}ms", *self.extra_for(ep)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        try:
            body = json.loads(p.stdout) if p.stdout.strip() else {}
        except ValueError:
            body = {"error": "unparsable", "message": p.stdout}
        return p.returncode, body

    def pages(self, ep, command, key, *args):
        """(rc, {key: every item}) of a paged query (limit, after -> next)."""
        items, after = [], None
        while True:
            rc, body = self.call(ep, command, *args, "limit=5000",
                                 *(["after:=" + json.dumps(after)] if after is not None else []))
            if rc != 0:
                return rc, body
            items += body.get(key, [])
            after = body.get("next")
            if after is None:
                return 0, {key: items}


def feeds_quiet(status):
    for f in status.get("feeds", []) + status.get("views", []):
        if f.get("state") != "live" or f.get("lag", 1) != 0:
            return False
    return True


def wait_quiet(c, res, bk, wait_s):
    """Wait until both services are caught up and no saga is in flight."""
    deadline = time.monotonic() + wait_s
    last = ""
    while True:
        rc1, s1 = c.call(res, "status")
        rc2, s2 = c.call(bk, "status")
        rc3, cust = c.pages(bk, "customer", "bookings")
        pending = [b for b in cust.get("bookings", []) if b.get("status") == "requested"]
        if rc1 == 0 and rc2 == 0 and rc3 == 0 and feeds_quiet(s1) and feeds_quiet(s2) \
                and not pending:
            # Once more: the views may have moved between the calls.
            rc4, s1b = c.call(res, "status")
            if rc4 == 0 and s1b.get("head") == s1.get("head") and feeds_quiet(s1b):
                return True, ""
        last = "reservation rc=%d booking rc=%d, %d bookings requested" % (
            rc1, rc2, len(pending))
        if time.monotonic() > deadline:
            return False, last
        time.sleep(0.2)


def check(evbus, res, bk, shows, wait_s=60, quiet=False, extra=None):
    c = Caller(evbus, extra=extra)
    problems = []
    ok, why = wait_quiet(c, res, bk, wait_s)
    if not ok:
        problems.append("not quiet after %ds: %s" % (wait_s, why))
    holds_by_booking = {}
    totals = {"capacity": 0, "held": 0, "reserved": 0, "available": 0}
    for show in shows:
        rc, s = c.call(res, "show", "show=" + show)
        if rc != 0:
            problems.append("show %s: query failed (%s)" % (show, s))
            continue
        for k in totals:
            totals[k] += s[k]
        if s["held"] + s["reserved"] + s["available"] != s["capacity"]:
            problems.append("show %s: held %d + reserved %d + available %d != capacity %d"
                            % (show, s["held"], s["reserved"], s["available"], s["capacity"]))
        rc, h = c.call(res, "holds", "show=" + show)
        if rc != 0:
            problems.append("show %s: holds query failed (%s)" % (show, h))
            continue
        held = sum(x["seats"] for x in h["holds"] if x["state"] == "held")
        reserved = sum(x["seats"] for x in h["holds"] if x["state"] == "confirmed")
        if held != s["held"] or reserved != s["reserved"]:
            problems.append("show %s: holds sum to held %d reserved %d, aggregate says %d/%d"
                            % (show, held, reserved, s["held"], s["reserved"]))
        for x in h["holds"]:
            holds_by_booking[x["booking"]] = (show, x)
        rc, v = c.call(res, "availability", "show=" + show)
        if rc != 0 or any(v.get(k) != s[k] for k in ("capacity", "held", "reserved",
                                                        "available")):
            problems.append("show %s: read model %s != aggregate %s" % (show, v, s))
    rc, cust = c.pages(bk, "customer", "bookings")
    bookings = cust.get("bookings", []) if rc == 0 else []
    if rc != 0:
        problems.append("booking read model query failed: %s" % cust)
    counts = {}
    for b in bookings:
        st = b["status"]
        counts[st] = counts.get(st, 0) + 1
        if st not in FINAL:
            problems.append("booking %s: not final (%s)" % (b["booking"], st))
            continue
        show, hold = holds_by_booking.get(b["booking"], (None, None))
        if b["show"] not in shows:
            continue
        if st == "confirmed":
            if hold is None or hold["state"] != "confirmed" or hold["seats"] != b["seats"]:
                problems.append("booking %s confirmed, reservation says %s"
                                % (b["booking"], hold))
        elif hold is not None and hold["state"] in ("held", "confirmed"):
            problems.append("booking %s %s, but reservation still has its seats %s"
                            % (b["booking"], st, hold["state"]))
    # The read model against the aggregate, for a sample of bookings.
    for b in bookings[:: max(1, len(bookings) // 20)]:
        rc, a = c.call(bk, "booking", "booking=" + b["booking"])
        if rc != 0 or a.get("status") != b["status"]:
            problems.append("booking %s: read model %s, aggregate %s"
                            % (b["booking"], b["status"], a))
    for p in problems:
        print("check: " + p, file=sys.stderr)
    summary = {"shows": len(shows), "bookings": len(bookings), "by_status": counts,
               "seats": totals, "problems": len(problems)}
    if not quiet:
        print("check: %d shows (capacity %d: reserved %d, held %d, available %d); "
              "%d bookings %s; %d problems"
              % (len(shows), totals["capacity"], totals["reserved"], totals["held"],
                 totals["available"], len(bookings),
                 " ".join("%s=%d" % kv for kv in sorted(counts.items())), len(problems)))
    return problems, summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evbus", required=True, help="the evbus program")
    ap.add_argument("--reservation", required=True, help="reservation command endpoint")
    ap.add_argument("--booking", required=True, help="booking command endpoint")
    ap.add_argument("--shows", required=True, help="show ids, comma-separated")
    ap.add_argument("--wait", type=int, default=60, help="seconds to wait for quiet")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = ap.parse_args()
    problems, summary = check(a.evbus, a.reservation, a.booking, a.shows.split(","),
                              a.wait, quiet=a.json)
    if a.json:
        print(json.dumps(summary))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
