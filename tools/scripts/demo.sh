#!/usr/bin/env bash
# tools/scripts/demo.sh, run as tools/demo.sh: the reservation and booking
# services on this machine, with the sniffer watching the bus.
#
#  1. starts evbus-reservation and evbus-booking (each its own LevelDB log,
#     PUB + catch-up + command sockets over ipc) and `evbus sniff` on both;
#  2. creates three shows; four clients send a stream of bookings and some
#     cancellations (evbus call, retrying the same command id after a
#     timeout) while the box office sells seats directly at the reservation
#     service;
#  3. SIGKILLs the booking service mid-stream, keeps the box office selling,
#     restarts booking and shows it catching up and finishing the sagas that
#     were in flight;
#  4. checks the final state (tools/scripts/booking_check.py): for every show held +
#     reserved + available = capacity; every booking final and agreeing with
#     the reservation log; the read models agree with the aggregates; the
#     sniffer saw every event of both logs exactly once.
# Each service serves its live bus page on 127.0.0.1 (--http, with
# --http-events: on loopback only); the URLs are printed at the start.
# DEMO_KEEP=1 keeps everything running after the checks, until Ctrl-C, to look
# at the pages. Programs come from $EVBUS_BUILD, else ./build; with
# --installed, from PATH (the Debian packages' /usr/bin/evbus,
# evbus-reservation, evbus-booking; nothing is built or read from build/).
# Every process it starts is stopped on exit, Ctrl-C included; the temp
# directory is removed.
# Last line: "demo: OK ..." (exit 0) only when every check held (with
# DEMO_KEEP=1, the line after it says how to stop).
set -euo pipefail

installed=0
for arg in "$@"; do
    case "$arg" in
    --installed) installed=1 ;;
    -h | --help)
        echo "usage: tools/demo.sh [--installed]   (--installed: the programs on PATH," \
            "e.g. from the Debian packages, instead of build/)"
        exit 0 ;;
    *) echo "demo: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
fail() { echo "demo: FAILED: $*" >&2; echo "demo: FAILED: $*"; exit 1; }
if ((installed)); then
    evbus=$(command -v evbus) || fail "evbus not on PATH; install evbus-tools (README.md, Install)"
    res_bin=$(command -v evbus-reservation) || fail "evbus-reservation not on PATH; install evbus-services"
    bk_bin=$(command -v evbus-booking) || fail "evbus-booking not on PATH; install evbus-services"
    echo "demo: the installed programs: $evbus $res_bin $bk_bin"
else
    bdir=${EVBUS_BUILD:-$repo/build}
    evbus=$bdir/tools/evbus
    res_bin=$bdir/services/evbus-reservation
    bk_bin=$bdir/services/evbus-booking
    for p in "$evbus" "$res_bin" "$bk_bin"; do
        [[ -x "$p" ]] || fail "$p not found; build first: ./tools/setup.sh"
    done
fi
clients=${DEMO_CLIENTS:-4}
per_client=${DEMO_BOOKINGS:-60}
command -v python3 >/dev/null || fail "python3 not found (./tools/setup.sh installs it)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/evbus-demo.XXXXXX")
declare -A svc_pid=()
bg=()
cleanup() {
    local p
    for p in "${svc_pid[@]}" "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${svc_pid[@]}" "${bg[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'cleanup; trap - INT; kill -INT $$' INT
trap 'cleanup; exit 143' TERM

ep() { echo "ipc://$tmp/$1"; }
res_cmd=$(ep res.cmd) bk_cmd=$(ep bk.cmd)
res_follow="$(ep res.pub),$(ep res.cu)" bk_follow="$(ep bk.pub),$(ep bk.cu)"

# Two free loopback ports for the pages, fixed for the run (a restarted
# service keeps its URL).
read -r res_http bk_http < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')

call() { "$evbus" call "$@"; }
wait_status() { # NAME EP: wait (with a deadline) until the service answers
    local i
    for ((i = 0; i < 200; i++)); do
        call "$2" status --timeout 200ms >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    fail "$1 does not answer on $2 (log: $(tail -3 "$tmp/$1.log"))"
}
start() { # NAME CMD_EP
    case $1 in
    reservation)
        "$res_bin" --store "$tmp/reservation" --pub "$(ep res.pub)" --catchup "$(ep res.cu)" \
            --cmd "$res_cmd" --follow "$bk_follow" --http "127.0.0.1:$res_http" --http-events \
            2>>"$tmp/reservation.log" &
        svc_pid[reservation]=$! ;;
    booking)
        "$bk_bin" --store "$tmp/booking" --pub "$(ep bk.pub)" --catchup "$(ep bk.cu)" \
            --cmd "$bk_cmd" --follow "$res_follow" --hold-timeout 5s \
            --http "127.0.0.1:$bk_http" --http-events 2>>"$tmp/booking.log" &
        svc_pid[booking]=$! ;;
    esac
    wait_status "$1" "$2"
}

echo "demo: starting evbus-reservation and evbus-booking in $tmp"
start reservation "$res_cmd"
start booking "$bk_cmd"
echo "demo: live bus pages: reservation http://127.0.0.1:$res_http/  booking http://127.0.0.1:$bk_http/"

sniff_ok=0
if "$evbus" sniff --help >/dev/null 2>&1; then
    sniff_ok=1
    "$evbus" sniff --follow "$res_follow" --follow "$bk_follow" --from-start --json \
        >"$tmp/sniff.jsonl" 2>"$tmp/sniff.err" &
    bg+=($!)
    "$evbus" sniff --follow "$res_follow" --follow "$bk_follow" --from-start --color never \
        >"$tmp/sniff.txt" 2>/dev/null &
    bg+=($!)
    echo "demo: evbus sniff is watching both publishers"
else
    echo "demo: (evbus sniff is not built; the services' own logs show the traffic)"
fi

shows=(opera:40 ballet:60 jazz:100)
for s in "${shows[@]}"; do
    call "$res_cmd" create_show "show=${s%%:*}" "capacity=${s##*:}" --json >/dev/null ||
        fail "create_show ${s%%:*}"
done
echo "demo: shows created: ${shows[*]}"

# A client: book, sometimes cancel; a timed-out call is retried with the same
# command id, so a booking is never made twice.
client() {
    local k=$1 i show rc
    local names=(opera ballet jazz)
    for ((i = 0; i < per_client; i++)); do
        show=${names[$(((k + i) % 3))]}
        rc=0
        call "$bk_cmd" book "show=$show" "seats=$((1 + (i * 7 + k) % 4))" \
            "customer=cust$((k * 5 + i % 5))" "booking=c$k-$i" --id "c$k-$i" \
            --timeout 1s --retries 20 --json >/dev/null 2>&1 || rc=$?
        [[ $rc == 0 ]] || echo "book c$k-$i: exit $rc" >>"$tmp/client-errors"
        if ((i % 6 == 5)); then
            call "$bk_cmd" cancel "booking=c$k-$((i - 2))" --id "x$k-$i" --timeout 1s \
                --retries 20 --json >/dev/null 2>&1 || true
        fi
    done
}
box_office() {
    local i rc
    for ((i = 0; ; i++)); do
        [[ -e "$tmp/stop-box" ]] && break
        rc=0
        call "$res_cmd" hold show=jazz seats=1 "booking=box$i" --id "box$i" --json \
            >/dev/null 2>&1 || rc=$?
        ((rc == 0)) && call "$res_cmd" confirm show=jazz "booking=box$i" --id "boxc$i" \
            --json >/dev/null 2>&1
        echo "$i $rc" >>"$tmp/box.log"
        sleep 0.05
    done
}

echo "demo: $clients clients send $((clients * per_client)) bookings (and cancellations);" \
    "the box office sells jazz seats directly"
cpids=()
for ((k = 0; k < clients; k++)); do client "$k" & cpids+=($!); done
bg+=("${cpids[@]}")
box_office & bg+=($!)

# Mid-stream: SIGKILL the booking service.
for ((i = 0; i < 400; i++)); do
    n=$(call "$bk_cmd" status --json --timeout 500ms 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["head"])' 2>/dev/null || echo 0)
    ((n >= clients * per_client / 3)) && break
    sleep 0.05
done
kill -KILL "${svc_pid[booking]}"
wait "${svc_pid[booking]}" 2>/dev/null || true
unset 'svc_pid[booking]'
echo "demo: SIGKILLed evbus-booking at head $n (sagas in flight); the box office keeps selling"
box_before=$(wc -l <"$tmp/box.log")
for ((i = 0; i < 100; i++)); do
    (($(wc -l <"$tmp/box.log") >= box_before + 10)) && break
    sleep 0.05
done
echo "demo: while booking was down the box office made $(($(wc -l <"$tmp/box.log") - box_before)) more sales attempts"
start booking "$bk_cmd"
st=$(call "$bk_cmd" status --json)
python3 - "$st" <<'EOF'
import json, sys
s = json.loads(sys.argv[1])
for f in s["feeds"]:
    print("demo: booking restarted at head %d; its feed of %s is %s, %d applied, lag %d"
          % (s["head"], f["category"], f["state"], f["applied"], f["lag"]))
EOF
for p in "${cpids[@]}"; do wait "$p" || true; done
touch "$tmp/stop-box"
sleep 0.1
[[ ! -s "$tmp/client-errors" ]] || fail "client calls failed: $(head -3 "$tmp/client-errors")"

echo "demo: all clients done; waiting for the sagas to finish, then checking"
shows_csv=$(printf '%s\n' "${shows[@]%%:*}" | paste -sd,)
summary=$(python3 "$repo/tools/scripts/booking_check.py" --evbus "$evbus" --reservation "$res_cmd" \
    --booking "$bk_cmd" --shows "$shows_csv" --wait 90 --json) || {
    echo "$summary"
    fail "invariants broken (see check: lines above)"
}

res_head=$(call "$res_cmd" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["head"])')
bk_head=$(call "$bk_cmd" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["head"])')
sniffed="sniffer not built"
if ((sniff_ok)); then
    want=$((res_head + bk_head))
    for ((i = 0; i < 200; i++)); do
        (($(wc -l <"$tmp/sniff.jsonl") >= want)) && break
        sleep 0.05
    done
    sniffed=$(python3 - "$tmp/sniff.jsonl" "$res_head" "$bk_head" <<'EOF'
import json, sys
seen = {}
for line in open(sys.argv[1]):
    e = json.loads(line)
    key = (e["service"], e["seq"])
    seen[key] = seen.get(key, 0) + 1
want = {"reservation": int(sys.argv[2]), "booking": int(sys.argv[3])}
problems = []
for svc, head in want.items():
    for seq in range(1, head + 1):
        n = seen.get((svc, seq), 0)
        if n != 1:
            problems.append("%s seq %d seen %d times" % (svc, seq, n))
if problems:
    print("sniffer: " + "; ".join(problems[:5]), file=sys.stderr)
    sys.exit(1)
print("sniffer saw all %d events once" % sum(want.values()))
EOF
) || fail "the sniffer's copy of the bus is wrong"
    echo "demo: what the sniffer showed (first lines):"
    head -n 8 "$tmp/sniff.txt" | sed 's/^/  /'
fi

python3 - "$summary" "$res_head" "$bk_head" "$sniffed" <<'EOF'
import json, sys
s = json.loads(sys.argv[1])
st = s["by_status"]
print("demo: OK %d shows, %d bookings (%s), seats reserved %d of %d, held %d, "
      "available %d; logs: reservation %s events, booking %s events; %s"
      % (s["shows"], s["bookings"], ", ".join("%s %d" % kv for kv in sorted(st.items())),
         s["seats"]["reserved"], s["seats"]["capacity"], s["seats"]["held"],
         s["seats"]["available"], sys.argv[2], sys.argv[3], sys.argv[4]))
EOF

if [[ ${DEMO_KEEP:-0} == 1 ]]; then
    echo "demo: DEMO_KEEP=1: the services keep running; pages at http://127.0.0.1:$res_http/" \
        "and http://127.0.0.1:$bk_http/ (/metrics, /status.json beside them); Ctrl-C stops"
    wait "${svc_pid[@]}" || true
fi
