#!/usr/bin/env bash
# `make bench`: the same RTMP scenarios against `liverelay standalone` and nginx-rtmp
# (Debian's libnginx-mod-rtmp, 1 worker, `live on`), each server pinned to core 0 and the load
# tool to core 1. Writes bench/RESULTS.md, bench/results/*.json and bench/*.png.
#
#   BENCH_RUNS=3        repetitions of each scenario (min / median / max are reported)
#   BENCH_QUICK=1       tiny scenarios, one run: checks that the pipeline works (~2 min)
#   BENCH_OUT=DIR       where results go (default: bench/)
#   BENCH_REPORT_ONLY=1 only rewrite RESULTS.md and the plots from the results already there
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/bench}
RUNS=${BENCH_RUNS:-3}
QUICK=${BENCH_QUICK:-0}
REPORT_ONLY=${BENCH_REPORT_ONLY:-0}
CARGO=${CARGO:-cargo}
WORK=$(mktemp -d /tmp/liverelay-bench.XXXXXX)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
SERVER_CORE=0
TOOL_CORE=1
STARTED=()   # PIDs this script started; killed on any exit

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
    local p
    for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${STARTED[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- dependencies -----------------------------------------------------------------------
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(libnginx-mod-rtmp)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's package may start a system nginx; ours runs from its own config and pid file.

log "building release binaries"
(cd "$ROOT" && $CARGO build --release -p liverelay -p liverelay-bench)

NCPU=$(nproc)
if [ "$NCPU" -lt 2 ]; then
    log "warning: $NCPU core(s): server and tool share a core"
    TOOL_CORE=0
fi
FDS=$(ulimit -n)
# Each process may open at most $FDS sockets; keep ramps below that.
MAXCONN=$((FDS - 200))

# --- helpers ---------------------------------------------------------------------------------
# A port below the ephemeral range (the tool's thousands of client sockets use those) that no
# socket uses in any state.
free_port() {
    local p lo
    lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    for _ in $(seq 200); do
        p=$((10000 + RANDOM % (lo - 10000)))
        if ! ss -Htan "sport = :$p" | grep -q .; then echo "$p"; return 0; fi
    done
    return 1
}

wait_port() {
    local port=$1
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    log "server did not listen on $port"
    return 1
}

SERVER_PID=""   # process to sample (/proc): liverelay, or nginx's worker
SERVER_MAIN=""  # process to stop
PORT=""

start_server() { # start_server KIND: up to 3 tries on fresh ports
    local try
    for try in 1 2 3; do
        start_server_once "$1" && return 0
        log "${LABEL[$1]} did not start (try $try); its log:"
        tail -5 "$WORK/liverelay.log" "$WORK/nginx/nginx-error.log" 2>/dev/null >&2 || true
        stop_server
        sleep 1
    done
    return 1
}

start_server_once() {
    local kind=$1
    PORT=$(free_port)
    case $kind in
        liverelay*)
            local http; http=$(free_port)
            # shellcheck disable=SC2086 # the variant's settings are words of NAME=VALUE
            env RUST_LOG=warn LIVERELAY_RTMP__MAX_CONNECTIONS=$MAXCONN ${SETTINGS[$kind]} \
                taskset -c $SERVER_CORE "$BIN/liverelay" standalone \
                --rtmp-listen "127.0.0.1:$PORT" --http-listen "127.0.0.1:$http" \
                >"$WORK/liverelay.log" 2>&1 &
            SERVER_MAIN=$!
            STARTED+=("$SERVER_MAIN")
            SERVER_PID=$SERVER_MAIN
            ;;
        nginx)
            local dir=$WORK/nginx
            mkdir -p "$dir"
            sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$PORT#g" -e "s#@FDS@#$FDS#g" \
                "$ROOT/bench/nginx.conf.in" >"$dir/nginx.conf"
            taskset -c $SERVER_CORE nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/nginx-error.log" \
                >"$dir/out.log" 2>&1 &
            SERVER_MAIN=$!
            STARTED+=("$SERVER_MAIN")
            SERVER_PID=""
            for _ in $(seq 50); do
                SERVER_PID=$(pgrep -P "$SERVER_MAIN" | head -1 || true)
                [ -n "$SERVER_PID" ] && break
                sleep 0.1
            done
            [ -n "$SERVER_PID" ] || { log "nginx worker did not start"; cat "$dir/nginx-error.log" >&2; return 1; }
            STARTED+=("$SERVER_PID")
            ;;
    esac
    wait_port "$PORT"
}

stop_server() {
    kill -TERM "$SERVER_MAIN" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_MAIN" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_MAIN" ${SERVER_PID:+"$SERVER_PID"} 2>/dev/null || true
    wait "$SERVER_MAIN" 2>/dev/null || true
}

# Servers of the next scenario; the last is the baseline of the ratios.
ALL_SERVERS=(liverelay liverelay-nodelay liverelay-coalesce nginx)
SERVERS=("${ALL_SERVERS[@]}")
declare -A LABEL=([liverelay]="liverelay" [liverelay-nodelay]="liverelay-nodelay"
    [liverelay-coalesce]="liverelay-coalesce40" [nginx]="nginx-rtmp")
# Settings of each liverelay variant (environment words); the plain one runs the defaults.
declare -A SETTINGS=([liverelay]="" [liverelay-nodelay]="LIVERELAY_RTMP__TCP_NODELAY=true"
    [liverelay-coalesce]="LIVERELAY_RTMP__WRITE_COALESCE_MS=40")
COMMANDS=()

# scenario NAME TOOL-ARGS...: every server, $RUNS times (server order alternates per run).
scenario() {
    local name=$1; shift
    local run kind order i
    COMMANDS+=("$name: taskset -c $TOOL_CORE liverelay-bench run --url rtmp://127.0.0.1:PORT/live/$name $* --server-pid PID --server-core $SERVER_CORE")
    [ "$REPORT_ONLY" = 1 ] && return 0
    for run in $(seq "$RUNS"); do
        order=("${SERVERS[@]}")
        if [ $((run % 2)) -eq 0 ]; then
            order=(); for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do order+=("${SERVERS[$i]}"); done
        fi
        for kind in "${order[@]}"; do
            log "$name run $run/$RUNS: ${LABEL[$kind]}"
            if ! start_server "$kind"; then
                echo "$name run $run: ${LABEL[$kind]} did not start; run skipped" >>"$OUT/results/incidents"
                continue
            fi
            local json=$OUT/results/$name-$kind-$run.json
            if ! taskset -c $TOOL_CORE "$BIN/liverelay-bench" run \
                --url "rtmp://127.0.0.1:$PORT/live/$name" --label "${LABEL[$kind]}" \
                --server-pid "$SERVER_PID" --server-core "$SERVER_CORE" --json "$json" "$@" \
                >"$OUT/results/$name-$kind-$run.txt" 2>"$WORK/tool.err"; then
                log "tool failed:"; tail -5 "$WORK/tool.err" >&2
            fi
            tail -n +1 "$OUT/results/$name-$kind-$run.txt" | tail -3 >&2 || true
            if ! kill -0 "$SERVER_MAIN" 2>/dev/null; then
                log "SERVER DIED during $name run $run (${LABEL[$kind]})"
                echo "$name run $run: ${LABEL[$kind]} exited during the run (log: results/$name-$kind-$run.server.log)" >>"$OUT/results/incidents"
                cp "$WORK/liverelay.log" "$OUT/results/$name-$kind-$run.server.log" 2>/dev/null ||
                    cp "$WORK/nginx/nginx-error.log" "$OUT/results/$name-$kind-$run.server.log" 2>/dev/null || true
            fi
            stop_server
            sleep 1
        done
    done
}

inputs() { # inputs NAME → LABEL=PATH for every run of every server
    local name=$1 kind f
    for kind in "${ALL_SERVERS[@]}"; do
        for f in "$OUT"/results/"$name"-"$kind"-[0-9]*.json; do
            [ -e "$f" ] && printf '%s=%s ' "${LABEL[$kind]}" "$f"
        done
    done
}

# --- scenarios ---------------------------------------------------------------------------------
mkdir -p "$OUT/results"
[ "$REPORT_ONLY" = 1 ] || rm -f "$OUT"/results/*.json "$OUT"/results/*.txt "$OUT"/results/*.log \
    "$OUT"/results/incidents
BEGIN=$(date +%s)

if [ "$QUICK" = 1 ]; then
    RUNS=1
    FANOUT_AT=100,200,400; FANOUT_STEP=400; FANOUT_MAX=800; INTERVAL=5s
    PUB_STEP=5; PUB_MAX=10; TTFF_PLAYERS=50
else
    FANOUT_AT=100,500,1000,2000,3000,4000,5000,6000; FANOUT_STEP=2000; INTERVAL=6s
    FANOUT_MAX=$(( MAXCONN - 100 < 14000 ? MAXCONN - 100 : 14000 ))
    PUB_STEP=100; PUB_MAX=600; TTFF_PLAYERS=200
fi

# 1. Fan-out: one 2.5 Mbit/s stream (720p30 H.264 + AAC, 2 s GOP), ramp players.
scenario fanout --bitrate 2.5M --fps 30 --gop 2s --ramp-at "$FANOUT_AT" --ramp-step "$FANOUT_STEP" \
    --ramp-max "$FANOUT_MAX" --ramp-interval "$INTERVAL" --settle 3s -q
# 1b. The same at 600 kbit/s (SRS's benchmark bitrate).
scenario fanout600k --bitrate 600k --audio-bitrate 64k --fps 30 --gop 2s --ramp-at "$FANOUT_AT" \
    --ramp-step "$FANOUT_STEP" --ramp-max "$FANOUT_MAX" --ramp-interval "$INTERVAL" --settle 3s \
    --rcvlowat 8192 -q
# 2. Many publishers: ramp streams of 2.5 Mbit/s, one player each.
SERVERS=(liverelay nginx)
scenario publishers --bitrate 2.5M --fps 30 --gop 2s --ramp-streams --ramp-step "$PUB_STEP" \
    --ramp-max "$PUB_MAX" --players 1 --sample-every 1 --ramp-interval "$INTERVAL" --settle 3s -q
# 3. Start-up: players joining a running stream (GOP cache on liverelay).
scenario ttff --bitrate 2.5M --fps 30 --gop 2s --players "$TTFF_PLAYERS" --sample-every 5 \
    --duration 3s --settle 3s -q

ELAPSED=$(( $(date +%s) - BEGIN ))
if [ "$REPORT_ONLY" = 1 ]; then
    ELAPSED=$(cat "$OUT/results/elapsed" 2>/dev/null || echo "?")
else
    echo "$ELAPSED" >"$OUT/results/elapsed"
fi
# Figures at these player counts (the first and last give RSS per added player).
if [ "$QUICK" = 1 ]; then COMPARE_AT=100,400; else COMPARE_AT=100,500,1000,2000; fi

# --- plots and RESULTS.md ----------------------------------------------------------------------
B=$BIN/liverelay-bench
plot() { # plot NAME TITLE: run 1 of each server
    local name=$1 title=$2 args=() kind
    for kind in "${ALL_SERVERS[@]}"; do
        [ -e "$OUT/results/$name-$kind-1.json" ] && args+=("${LABEL[$kind]}=$OUT/results/$name-$kind-1.json")
    done
    [ ${#args[@]} -gt 0 ] && "$B" plot "${args[@]}" --title "$title" --out "$OUT/$name.png" || true
}
plot fanout "Fan-out, one 2.5 Mbit/s stream: server CPU and latency p99 vs players (run 1)"
plot fanout600k "Fan-out, one 600 kbit/s stream: server CPU and latency p99 vs players (run 1)"
plot publishers "Streams of 2.5 Mbit/s with one player each (run 1)"

# shellcheck disable=SC2046
{
    echo "# Benchmark: liverelay standalone vs nginx-rtmp"
    echo
    echo "Written by \`make bench\` (bench/run.sh) on $(date -u '+%Y-%m-%d %H:%M UTC') in ${ELAPSED}s;"
    echo "liverelay at commit \`$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)\`."
    echo "$RUNS run(s) per scenario and server; each cell is min / **median** / max over the runs."
    echo "The machine is shared and noisy: the claim is the ratio measured in the same run."
    echo
    echo "## Machine and setup"
    echo
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $NCPU cores; $(free -g | awk '/Mem:/{print $2}') GiB RAM"
    echo "- Kernel: $(uname -r); open-file limit per process: $FDS (caps players per process)"
    echo "- nginx: $(nginx -v 2>&1 | sed 's/.*: //') with libnginx-mod-rtmp $(dpkg-query -W -f='${Version}' libnginx-mod-rtmp 2>/dev/null || echo '?'): 1 worker, \`live on\`, chunk_size 4096 (bench/nginx.conf.in)"
    echo "- liverelay: \`liverelay standalone\` release build, default settings (Nagle on, as nginx runs; no write coalescing), RUST_LOG=warn, max_connections $MAXCONN; fan-out scenarios also run *liverelay-nodelay* (\`LIVERELAY_RTMP__TCP_NODELAY=true\`) and *liverelay-coalesce40* (\`LIVERELAY_RTMP__WRITE_COALESCE_MS=40\`: each player written at most every 40 ms)"
    echo "- Each server pinned to core $SERVER_CORE (\`taskset -c $SERVER_CORE\`), the tool to core $TOOL_CORE; loopback (127.0.0.1)."
    echo "- Source: synthetic H.264 + AAC from liverelay-bench (valid FLV tag and sequence headers, filler payloads carrying a send stamp)."
    echo "- Server CPU and RSS from /proc/PID of liverelay, of nginx's worker; *core busy* is core $SERVER_CORE's busy share from /proc/stat, which also counts softirq time (loopback TCP delivery) that /proc/PID may not. Latency: publisher send → player receive of the same message, same process, live messages only, measured by every 25th player (the rest read in bulk with SO_RCVLOWAT 32 KiB)."
    echo "- A ramp step is *sustained* when no player failed or was still connecting, ≤ 1 % of players received < 90 % of the stream's rate, and latency p99 ≤ 500 ms. The ramp stops at the first step that is not."
    echo
    echo "## Commands"
    echo
    echo '```sh'
    echo "make bench            # = bench/run.sh; BENCH_RUNS=$RUNS"
    for c in "${COMMANDS[@]}"; do echo "# $c"; done
    echo '```'
    echo
    echo "## 1. Fan-out: one stream of 2.5 Mbit/s (720p30 H.264 + AAC, 2 s GOP)"
    echo
    "$B" compare $(inputs fanout) --at "$COMPARE_AT"
    echo
    echo "![fan-out ramp](fanout.png)"
    echo
    echo "### The same at 600 kbit/s"
    echo
    "$B" compare $(inputs fanout600k) --at "$COMPARE_AT"
    echo
    echo "![fan-out ramp at 600 kbit/s](fanout600k.png)"
    echo
    echo "## 2. Many publishers: streams of 2.5 Mbit/s, one player each"
    echo
    "$B" compare $(inputs publishers)
    echo
    echo "![publishers ramp](publishers.png)"
    echo
    echo "## 3. Start-up: $TTFF_PLAYERS players joining a running stream"
    echo
    "$B" compare $(inputs ttff)
    echo
    if [ -e "$OUT/results/incidents" ]; then
        echo "## Incidents"
        echo
        sed 's/^/- /' "$OUT/results/incidents"
        echo
    fi
    echo "## Raw results"
    echo
    echo "Every run's table is in \`bench/results/*.txt\`, its JSON in \`bench/results/*.json\`."
} >"$OUT/RESULTS.generated.md"

# RESULTS.md keeps a hand-written analysis section (between the markers) across runs.
NOTES=""
if [ -e "$OUT/RESULTS.md" ]; then
    NOTES=$(sed -n '/<!-- notes -->/,/<!-- \/notes -->/p' "$OUT/RESULTS.md")
fi
{
    cat "$OUT/RESULTS.generated.md"
    echo
    if [ -n "$NOTES" ]; then echo "$NOTES"; else printf '<!-- notes -->\n## Analysis\n\n(none yet)\n<!-- /notes -->\n'; fi
} >"$OUT/RESULTS.md"
rm -f "$OUT/RESULTS.generated.md"
log "done in ${ELAPSED}s: $OUT/RESULTS.md"
