#!/usr/bin/env bash
# HTTP load on the web forms of a remailer started by bench/remailer-bench.sh: wrk against
# `GET /` and against `POST /register` with a bad field (a valid CSRF token and an invalid
# alias, so every answer is the 422 page with the form refilled and no mail is sent), for
# DURATION seconds each (or both at once), then the service's peak resident memory (VmHWM).
# Loopback only; every run is bounded by DURATION.
#
# usage: bench/web-bench.sh get|post|both
#   env: WEB_PORT=2780 DURATION=10 CONNS=50 THREADS=2 RUN_DIR=/tmp/remailer-bench/rust
#   "both" runs the two wrk at once, each with half the connections and one thread.
set -euo pipefail
MODE=${1:-}
WEB_PORT=${WEB_PORT:-2780}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
RUN_DIR=${RUN_DIR:-/tmp/remailer-bench/rust}
BASE=http://127.0.0.1:$WEB_PORT
die() { echo "web-bench.sh: $*" >&2; exit 2; }

if ! command -v wrk >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
fi
command -v curl >/dev/null || die "needs curl"

csrf=$(curl -sf --max-time 5 "$BASE/register" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
[ -n "$csrf" ] || die "no CSRF token in $BASE/register (is the service running?)"
body="alias=-bad+alias%21&address=someone%40real.test&display_name=&csrf=$csrf"
lua=$(mktemp --suffix=.lua)
trap 'rm -f "$lua"' EXIT
cat > "$lua" <<LUA
wrk.method = "POST"
wrk.body = "$body"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
LUA

get_code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/")
post_code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -d "$body" "$BASE/register")
[ "$get_code" = 200 ] || die "GET / answered $get_code"
[ "$post_code" = 422 ] || die "POST /register with a bad alias answered $post_code, not 422"

run_get() { wrk -t"$1" -c"$2" -d"${DURATION}s" --timeout 5s --latency "$BASE/"; }
run_post() { wrk -t"$1" -c"$2" -d"${DURATION}s" --timeout 5s --latency -s "$lua" "$BASE/register"; }

case "$MODE" in
    get) echo "== GET / (200)"; run_get "$THREADS" "$CONNS" ;;
    post) echo "== POST /register, bad alias (422)"; run_post "$THREADS" "$CONNS" ;;
    both)
        half=$(( CONNS / 2 > 0 ? CONNS / 2 : 1 ))
        out=$(mktemp -d)
        run_get 1 "$half" > "$out/get" 2>&1 &
        g=$!
        run_post 1 "$half" > "$out/post" 2>&1 &
        p=$!
        wait "$g" "$p"
        echo "== GET / (200), at the same time as POST"; cat "$out/get"
        echo "== POST /register, bad alias (422), at the same time as GET"; cat "$out/post"
        rm -rf "$out"
        ;;
    *) die "usage: web-bench.sh get|post|both" ;;
esac

if [ -f "$RUN_DIR/pid" ]; then
    echo "== remailer memory (pid $(cat "$RUN_DIR/pid"))"
    grep -E '^Vm(HWM|RSS)' "/proc/$(cat "$RUN_DIR/pid")/status"
fi
