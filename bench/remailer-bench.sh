#!/usr/bin/env bash
# Starts or stops remailer for the shared benchmark harness (../shared/bench, see its README):
# release build on 127.0.0.1:2700, relaying to the harness's smtp-sink on 127.0.0.1:2626,
# with the harness's users (alice, bob, user0001..user0998 as NAME@remailer.test for
# NAME@real.test) and no sender authentication (the Postfix baseline does none either).
# Durability is the service's own: every message is fsynced to the spool before its 250.
#
# usage: bench/remailer-bench.sh start|stop
#   env: PORT=2700 SINK_PORT=2626 WEB_PORT=2780 RUN_DIR=/tmp/remailer-bench/rust
#        (WEB_PORT: the web forms, web.listen; bench/web-bench.sh loads them)
#        AUTH=1: inbound sender authentication on (policy.sender_auth = "dmarc"), against a
#        loopback DNS server (bench/dns-server.py on DNS_PORT=5354) that publishes SPF and
#        DMARC for real.test. Outbound DKIM signing (RSA-2048 + Ed25519) is always on.
#        BIN=PATH: run that binary instead of building this tree's release one (to compare
#        two builds side by side, each on its own PORT and RUN_DIR).
#        STORE_URL=postgres://…: the store on that PostgreSQL database instead of the embedded
#        SQLite one (the database must exist and be empty or hold this run's data).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${PORT:-2700}
SINK_PORT=${SINK_PORT:-2626}
RUN_DIR=${RUN_DIR:-/tmp/remailer-bench/rust}
AUTH=${AUTH:-0}
DNS_PORT=${DNS_PORT:-5354}
WEB_PORT=${WEB_PORT:-2780}
BIN=${BIN:-}
die() { echo "remailer-bench.sh: $*" >&2; exit 2; }

install_harness_tools() {  # what ../shared/bench needs, installed once
    command -v smtp-source >/dev/null && command -v swaks >/dev/null && return
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get install -y -qq postfix swaks iproute2 >/dev/null
}

start() {
    [ -z "$(ss -Hltn "sport = :$PORT")" ] || die "something already listens on port $PORT"
    install_harness_tools
    if [ -z "$BIN" ]; then
        cargo build --release --locked --manifest-path "$ROOT/Cargo.toml"
        BIN=$ROOT/target/release/remailer
    fi
    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    local sender_auth=none dns=""
    if [ "$AUTH" = 1 ]; then
        python3 -c 'import dnslib' 2>/dev/null || python3 -m pip install --quiet dnslib \
            || python3 -m pip install --quiet --break-system-packages dnslib
        python3 "$ROOT/bench/dns-server.py" "$DNS_PORT" > "$RUN_DIR/dns.log" 2>&1 &
        echo $! > "$RUN_DIR/dns.pid"
        sender_auth=dmarc
        dns="[dns]
nameservers = [\"127.0.0.1:$DNS_PORT\"]"
    fi
    local store=""
    if [ -n "${STORE_URL:-}" ]; then
        store="[store]
url = \"$STORE_URL\""
    fi
    cat > "$RUN_DIR/remailer.toml" <<TOML
domain = "remailer.test"
data_dir = "$RUN_DIR/data"

[smtp]
listen = ["127.0.0.1:$PORT"]
hostname = "remailer.test"
max_connections = 1000
max_connections_per_client = 1000   # the bench drives every session from 127.0.0.1

[web]
listen = "127.0.0.1:$WEB_PORT"
public_url = "http://127.0.0.1:$WEB_PORT"

[delivery]
relay = "127.0.0.1:$SINK_PORT"
retry_base = 1
retry_max = 5

[policy]
sender_auth = "$sender_auth"

[admin]
listen = ""                          # metrics are still counted; nothing to scrape here

[limits]                             # the bench sends far more than a member would
member_per_hour = 0
member_per_day = 0
alias_per_hour = 0
connections_per_client_per_minute = 0
commands_per_client_per_minute = 0
outbound_per_minute = 0

$dns
$store
TOML
    { echo "alice alice@real.test"; echo "bob bob@real.test"
      for i in $(seq -f %04g 1 998); do echo "user$i user$i@real.test"; done; } > "$RUN_DIR/users.txt"
    "$BIN" --config "$RUN_DIR/remailer.toml" alias import "$RUN_DIR/users.txt"
    nohup "$BIN" --config "$RUN_DIR/remailer.toml" serve > /dev/null 2> "$RUN_DIR/remailer.log" &
    echo $! > "$RUN_DIR/pid"
    for _ in $(seq 1 100); do   # bounded: 10 s
        [ -n "$(ss -Hltn "sport = :$PORT")" ] && { echo "remailer listening on 127.0.0.1:$PORT (pid $(cat "$RUN_DIR/pid"))"; return; }
        kill -0 "$(cat "$RUN_DIR/pid")" 2>/dev/null || die "remailer exited: $(tail -5 "$RUN_DIR/remailer.log")"
        sleep 0.1
    done
    die "remailer did not listen on $PORT within 10 s"
}

stop() {
    [ -f "$RUN_DIR/pid" ] || { echo "not running"; return; }
    pid=$(cat "$RUN_DIR/pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    rm -f "$RUN_DIR/pid"
    if [ -f "$RUN_DIR/dns.pid" ]; then kill "$(cat "$RUN_DIR/dns.pid")" 2>/dev/null || true; rm -f "$RUN_DIR/dns.pid"; fi
    echo "remailer stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) die "usage: remailer-bench.sh start|stop" ;;
esac
