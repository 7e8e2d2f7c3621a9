#!/usr/bin/env bash
# The queue under load, measured from outside (issue 12, point 2): N deferred 4 KB messages,
# a kill -9 and a restart, then the destination recovers. Loopback only, bounded in count
# and time; prints figures (it asserts nothing).
#
#   1. remailer (release build) relays to bench/defer-sink.py, which answers 451 to every
#      message; smtp-source injects N messages of SIZE bytes (../shared/bench/lib/mkmsg.py,
#      alice@real.test -> bob@remailer.test). Printed: intake time, the time until every
#      message was deferred once, and peak RSS (VmHWM) of the process so far.
#   2. kill -9, start again after DOWN_S seconds (the sink still defers). Printed: delivery
#      attempts in the first 10 s after the restart, and the new process's peak RSS. With
#      the defaults every next attempt is still RETRY_BASE s away, so a queue that keeps its
#      persisted schedule makes none; with DOWN_S > RETRY_BASE every entry is overdue at the
#      restart (the crash-loop case), and what counts is how fast they are let go.
#   3. The sink accepts; `remailer queue flush` ends every wait. Printed: time until all N
#      are delivered, and peak RSS.
#
# usage: bench/queue-bench.sh
#   env: N=100000 SIZE=4096 CONC=20 RETRY_BASE=600 DOWN_S=0 TIMEOUT=900 (seconds, bounds
#        each wait)
#        BIN=path/to/remailer (default: this tree's target/release/remailer, built here)
#        PORT=2710 DEST_PORT=2636 WEB_PORT=2790 RUN_DIR=/tmp/remailer-queue-bench
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-100000}
SIZE=${SIZE:-4096}
CONC=${CONC:-20}
RETRY_BASE=${RETRY_BASE:-600}
DOWN_S=${DOWN_S:-0}
TIMEOUT=${TIMEOUT:-900}
PORT=${PORT:-2710}
DEST_PORT=${DEST_PORT:-2636}
WEB_PORT=${WEB_PORT:-2790}
RUN_DIR=${RUN_DIR:-/tmp/remailer-queue-bench}
MKMSG=${MKMSG:-$ROOT/../shared/bench/lib/mkmsg.py}
[ -f "$MKMSG" ] || MKMSG=/work/shared/bench/lib/mkmsg.py
die() { echo "queue-bench.sh: $*" >&2; exit 2; }
now() { date +%s%3N; }

if [ -z "${BIN:-}" ]; then
    cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" >&2
    BIN=$ROOT/target/release/remailer
fi
command -v smtp-source >/dev/null || die "smtp-source (Debian package postfix) is needed"
for p in "$PORT" "$DEST_PORT" "$WEB_PORT"; do
    [ -z "$(ss -Hltn "sport = :$p")" ] || die "something already listens on port $p"
done

SINK_PID="" PID=""
cleanup() {
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null || true
    [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null || true
}
trap cleanup EXIT

rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"
CONF=$RUN_DIR/remailer.toml
cat > "$CONF" <<TOML
domain = "remailer.test"
data_dir = "$RUN_DIR/data"

[smtp]
listen = ["127.0.0.1:$PORT"]
hostname = "remailer.test"
max_connections = 1000
max_connections_per_client = 1000

[web]
listen = "127.0.0.1:$WEB_PORT"
public_url = "http://127.0.0.1:$WEB_PORT"

[delivery]
relay = "127.0.0.1:$DEST_PORT"
retry_base = $RETRY_BASE
retry_max = 3600

[policy]
sender_auth = "none"

[admin]
listen = ""

[limits]
member_per_hour = 0
member_per_day = 0
alias_per_hour = 0
connections_per_client_per_minute = 0
commands_per_client_per_minute = 0
outbound_per_minute = 0
TOML
printf 'alice alice@real.test\nbob bob@real.test\n' > "$RUN_DIR/users.txt"
"$BIN" --config "$CONF" alias import "$RUN_DIR/users.txt" >/dev/null
python3 "$MKMSG" "$SIZE" alice@real.test bob@remailer.test > "$RUN_DIR/msg.txt"

LOG=$RUN_DIR/dest.log FLAG=$RUN_DIR/accept
: > "$LOG"
python3 "$ROOT/bench/defer-sink.py" "$DEST_PORT" "$LOG" "$FLAG" 2> "$RUN_DIR/dest.err" &
SINK_PID=$!
for _ in $(seq 1 100); do   # bounded: 10 s
    [ -n "$(ss -Hltn "sport = :$DEST_PORT")" ] && break
    sleep 0.1
done
[ -n "$(ss -Hltn "sport = :$DEST_PORT")" ] || die "the deferring sink did not listen on $DEST_PORT"

serve() {
    nohup "$BIN" --config "$CONF" serve > /dev/null 2>> "$RUN_DIR/remailer.log" &
    PID=$!
    for _ in $(seq 1 600); do   # bounded: 60 s (a recovery reads the whole spool)
        [ -n "$(ss -Hltn "sport = :$PORT")" ] && return
        kill -0 "$PID" 2>/dev/null || die "remailer exited: $(tail -5 "$RUN_DIR/remailer.log")"
        sleep 0.1
    done
    die "remailer did not listen on $PORT within 60 s"
}
hwm() { awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$PID/status"; }
count() { grep -c " $1\$" "$LOG" || true; }
# Waits (bounded by TIMEOUT) until the sink logged at least $2 lines of kind $1.
wait_count() {
    local deadline=$(( $(date +%s) + TIMEOUT ))
    while [ "$(count "$1")" -lt "$2" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || die "timeout: $(count "$1") of $2 $1 after $TIMEOUT s"
        kill -0 "$PID" 2>/dev/null || die "remailer exited: $(tail -5 "$RUN_DIR/remailer.log")"
        sleep 0.5
    done
}

echo "binary: $BIN"
echo "N=$N SIZE=$SIZE CONC=$CONC RETRY_BASE=$RETRY_BASE DOWN_S=$DOWN_S"
serve
T0=$(now)
timeout "$TIMEOUT" smtp-source -c -m "$N" -s "$CONC" -F "$RUN_DIR/msg.txt" \
    -f alice@real.test -t bob@remailer.test "127.0.0.1:$PORT" > "$RUN_DIR/source.out" 2> "$RUN_DIR/source.err" \
    || die "smtp-source failed: $(tail -3 "$RUN_DIR/source.err")"
T1=$(now)
echo "intake:           $N messages in $(( (T1 - T0) / 1000 )).$(( (T1 - T0) % 1000 / 100 )) s"
# Every message deferred once (or, bounded, no new attempt for 15 s: an attempt that could
# not connect is not seen by the sink).
LAST=-1 STILL=0
while [ "$(count D)" -lt "$N" ] && [ "$STILL" -lt 30 ]; do
    C=$(count D); [ "$C" = "$LAST" ] && STILL=$((STILL + 1)) || STILL=0; LAST=$C
    kill -0 "$PID" 2>/dev/null || die "remailer exited: $(tail -5 "$RUN_DIR/remailer.log")"
    sleep 0.5
done
T2=$(now)
echo "all deferred:     $(count D) of $N seen deferred by the sink $(( (T2 - T0) / 1000 )) s after the start; peak RSS during intake and deferral: $(hwm)"
echo "spool:            $(du -sm "$RUN_DIR/data/spool" | cut -f1) MiB"

kill -KILL "$PID"; wait "$PID" 2>/dev/null || true
BEFORE=$(wc -l < "$LOG")
sleep "$DOWN_S"
TR=$(now)
serve
TL=$(now)
sleep $(( 10 - (TL - TR) / 1000 > 0 ? 10 - (TL - TR) / 1000 : 0 ))
AFTER=$(awk -v t="$TR" '$1 >= t && $1 < t + 10000' "$LOG" | wc -l)
echo "restart:          listening $(( TL - TR )) ms after the start; attempts in the first 10 s: $AFTER; peak RSS after restart: $(hwm)"

touch "$FLAG"
TF=$(now)
"$BIN" --config "$CONF" queue flush > /dev/null
wait_count A "$N"
TD=$(now)
echo "recovery:         all $N delivered $(( (TD - TF) / 1000 )).$(( (TD - TF) % 1000 / 100 )) s after the destination accepted (queue flush); peak RSS: $(hwm)"
echo "attempts logged:  $(wc -l < "$LOG") ($BEFORE before the restart)"
kill -TERM "$PID"
for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
