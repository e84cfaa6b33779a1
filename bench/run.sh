#!/usr/bin/env bash
# `make bench`: the same RTMP scenarios against `liverelay standalone` and nginx-rtmp
# (Debian's libnginx-mod-rtmp, 1 worker, `live on`), each server pinned to core 0 and the load
# tool to core 1. Writes bench/RESULTS.md, bench/results/*.json and bench/*.png.
#
#   BENCH_RUNS=3        repetitions of each scenario (min / median / max are reported)
#   BENCH_QUICK=1       tiny scenarios, one run: checks that the pipeline works (~2 min)
#                       (e.g. BENCH_QUICK=1 BENCH_ONLY='^(httpflv|hls)$' for the HTTP viewers)
#   BENCH_OUT=DIR       where results go (default: bench/)
#   BENCH_REPORT_ONLY=1 only rewrite RESULTS.md and the plots from the results already there
#   BENCH_ONLY=REGEX    only the scenarios whose name matches (e.g. `cluster|ingest`)
#   BENCH_BASE_BIN=PATH also measure the ingest of this (older) liverelay binary
#   BENCH_BIN_DIR=DIR   use the liverelay and liverelay-bench binaries there, build nothing
#   BENCH_LATENCY_SECS=20 the latency scenario's measured watch per run (after 10 s of warm-up)
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

# Servers of the next scenario; the last is the baseline of the ratios.
# (liverelay-httpflv before liverelay: its ratio is HTTP-FLV over RTMP.)
ALL_SERVERS=(liverelay-httpflv liverelay liverelay-rtmps liverelay-taskwrites liverelay-nodelay liverelay-coalesce nginx
    liverelay-edge liverelay-ingest liverelay-ingest-base liverelay-llhls liverelay-hls
    nginx-hls liverelay-watch)
SERVERS=(liverelay liverelay-taskwrites liverelay-nodelay liverelay-coalesce nginx)
LABEL=([liverelay]="liverelay" [liverelay-rtmps]="liverelay-rtmps" [liverelay-taskwrites]="liverelay-taskwrites" [liverelay-nodelay]="liverelay-nodelay"
    [liverelay-coalesce]="liverelay-coalesce40" [nginx]="nginx-rtmp" [liverelay-edge]="edge"
    [liverelay-ingest]="ingest" [liverelay-ingest-base]="ingest-before" [liverelay-httpflv]="liverelay-httpflv"
    [liverelay-llhls]="liverelay-llhls" [liverelay-hls]="liverelay-hls" [nginx-hls]="nginx-hls"
    [liverelay-watch]="liverelay")
# HTTP players (PLAY: protocol and path on the server's HTTP port; the tool still publishes
# over RTMP). liverelay's HTTP limits are raised as its RTMP one is: every client of the tool
# comes from 127.0.0.1, which `hls.max_held_per_client` would otherwise cap.
PLAY=([liverelay-httpflv]="flv /flv/{app}/{stream}.flv" [liverelay-llhls]="llhls /hls/{app}/{stream}/index.m3u8"
    [liverelay-hls]="hls /hls/{app}/{stream}/index.m3u8" [nginx-hls]="hls /hls/{stream}.m3u8")
# Cluster kinds (bench/lib.sh start_cluster): players on an edge of an ingest. With
# BENCH_BASE_BIN, the ingest's cost is also measured for that binary ("before").
BASE=${BENCH_BASE_BIN:-}
SERVER_BIN=([liverelay-ingest-base]="$BASE")
# The ingest scenarios subscribe this many edges (the tool plays from one, the others have a
# player each).
CLUSTER_EDGES=([liverelay-ingest]=4 [liverelay-ingest-base]=4)
# RTMPS: the same defaults behind the TLS listener, loaded over rtmps:// (TLS 1.3, P-256).
SCHEME=([liverelay-rtmps]=rtmps)
TOOL_ARGS=([liverelay-rtmps]="--ca $(bench_cert)/ca.pem")
# Settings of each liverelay variant (environment words); the plain one runs the defaults.
SETTINGS=([liverelay]="" [liverelay-rtmps]="" [liverelay-taskwrites]="LIVERELAY_RTMP__DIRECT_WRITES=false"
    [liverelay-nodelay]="LIVERELAY_RTMP__TCP_NODELAY=true"
    [liverelay-coalesce]="LIVERELAY_RTMP__WRITE_COALESCE_MS=40")
HTTP_LIMITS="LIVERELAY_HTTP__MAX_CONNECTIONS=$MAXCONN LIVERELAY_HLS__MAX_HELD_PER_CLIENT=$MAXCONN"
SETTINGS+=([liverelay-httpflv]="$HTTP_LIMITS" [liverelay-llhls]="$HTTP_LIMITS" [liverelay-hls]="$HTTP_LIMITS")
# The latency scenario's liverelay serves its player page with the players of `make player`.
SETTINGS+=([liverelay-watch]="LIVERELAY_HTTP__PLAYER_DIR=$ROOT/player/dist")

# --- scenarios ---------------------------------------------------------------------------------
mkdir -p "$OUT/results"
[ "$REPORT_ONLY" = 1 ] || rm -f "$OUT"/results/*.json "$OUT"/results/*.txt "$OUT"/results/*.log \
    "$OUT"/results/incidents
BEGIN=$(date +%s)

if [ "$QUICK" = 1 ]; then
    RUNS=1
    FANOUT_AT=100,200,400; FANOUT_STEP=400; FANOUT_MAX=800; INTERVAL=5s
    PUB_STEP=5; PUB_MAX=10; TTFF_PLAYERS=50; CLUSTER_DURATION=5s
    HLS_AT=50,100,200; HLS_STEP=200; HLS_MAX=400; HLS_INTERVAL=8s
else
    HLS_AT=100,250,500,1000,1500,2000; HLS_STEP=500; HLS_INTERVAL=10s
    HLS_MAX=$(( MAXCONN - 100 < 10000 ? MAXCONN - 100 : 10000 ))
    CLUSTER_DURATION=20s
    FANOUT_AT=100,500,1000,2000,3000,4000,5000,6000; FANOUT_STEP=2000; INTERVAL=6s
    FANOUT_MAX=$(( MAXCONN - 100 < 18000 ? MAXCONN - 100 : 18000 ))
    PUB_STEP=100; PUB_MAX=600; TTFF_PLAYERS=200
fi

# 1. Fan-out: one 2.5 Mbit/s stream (720p30 H.264 + AAC, 2 s GOP), ramp players.
scenario fanout --bitrate 2.5M --fps 30 --gop 2s --ramp-at "$FANOUT_AT" --ramp-step "$FANOUT_STEP" \
    --ramp-max "$FANOUT_MAX" --ramp-interval "$INTERVAL" --settle 3s -q
# 1b. The same at 600 kbit/s (SRS's benchmark bitrate).
scenario fanout600k --bitrate 600k --audio-bitrate 64k --fps 30 --gop 2s --ramp-at "$FANOUT_AT" \
    --ramp-step "$FANOUT_STEP" --ramp-max "$FANOUT_MAX" --ramp-interval "$INTERVAL" --settle 3s \
    --rcvlowat 8192 -q
# 2. Many publishers: ramp streams of 2.5 Mbit/s, one player each (publishers and players
#    over RTMPS too).
SERVERS=(liverelay liverelay-rtmps nginx)
scenario publishers --bitrate 2.5M --fps 30 --gop 2s --ramp-streams --ramp-step "$PUB_STEP" \
    --ramp-max "$PUB_MAX" --players 1 --sample-every 1 --ramp-interval "$INTERVAL" --settle 3s -q
# 1c. What TLS costs a fan-out: plain RTMP and RTMPS players of the same server.
SERVERS=(liverelay-rtmps liverelay)
scenario fanouttls --bitrate 2.5M --fps 30 --gop 2s --ramp-at "$FANOUT_AT" --ramp-step "$FANOUT_STEP" \
    --ramp-max "$FANOUT_MAX" --ramp-interval "$INTERVAL" --settle 3s -q
# 3. Start-up: players joining a running stream (GOP cache on liverelay).
SERVERS=(liverelay nginx)
scenario ttff --bitrate 2.5M --fps 30 --gop 2s --players "$TTFF_PLAYERS" --sample-every 5 \
    --duration 3s --settle 3s -q
# 4. Cluster: publisher → ingest → edge → players. The edge (on the server core) against a
#    standalone server for the same ramp; then the ingest (on the server core) serving 4 edges,
#    at 2.5 and 20 Mbit/s, before and after when BENCH_BASE_BIN is set.
SERVERS=(liverelay-edge liverelay)
scenario clusterfanout --bitrate 2.5M --fps 30 --gop 2s --ramp-at "$FANOUT_AT" \
    --ramp-step "$FANOUT_STEP" --ramp-max "$FANOUT_MAX" --ramp-interval "$INTERVAL" --settle 3s -q
SERVERS=(liverelay-ingest); [ -n "$BASE" ] && SERVERS+=(liverelay-ingest-base)
scenario ingest2m5 --bitrate 2.5M --fps 30 --gop 2s --players 1 --sample-every 1 \
    --duration "$CLUSTER_DURATION" --settle 3s -q
scenario ingest20m --bitrate 20M --fps 30 --gop 2s --players 1 --sample-every 1 \
    --duration "$CLUSTER_DURATION" --settle 3s -q

# 5. HTTP viewers per core. HTTP-FLV players against RTMP players of the same server and
#    stream (the fan-out above).
SERVERS=(liverelay-httpflv liverelay)
scenario httpflv --bitrate 2.5M --fps 30 --gop 2s --ramp-at "$FANOUT_AT" --ramp-step "$FANOUT_STEP" \
    --ramp-max "$FANOUT_MAX" --ramp-interval "$INTERVAL" --settle 3s -q
# 5b. HLS clients of a 2.5 Mbit/s stream with a 1 s GOP: liverelay's LL-HLS (hls.js's
#     requests) and regular HLS (its defaults: 2 s segments, 200 ms parts) against nginx
#     serving nginx-rtmp's HLS (1 s fragments). A client is behind when it would have stalled.
SERVERS=(liverelay-llhls liverelay-hls nginx-hls)
scenario hls --bitrate 2.5M --fps 30 --gop 1s --ramp-at "$HLS_AT" --ramp-step "$HLS_STEP" \
    --ramp-max "$HLS_MAX" --ramp-interval "$HLS_INTERVAL" --settle 4s -q

# 6. Glass-to-glass latency: one browser playing a stream whose picture carries its capture
#    time (bench/latency/clock-publisher.mjs: 640x360 at 30 fps, 1 s GOP, x264 zerolatency,
#    published over RTMP), read back from each presented frame by tests/browser/watch.mjs
#    (WATCH_CLOCK=1) in Debian's headless chromium: liverelay's page playing LL-HLS (hls.js,
#    200 ms parts) and HTTP-FLV (mpegts.js), and the same page served by nginx playing
#    nginx-rtmp's HLS (1 s fragments; no parts, so hls.js plays it as regular HLS).
LATENCY_WARMUP=10
LATENCY_SECS=${BENCH_LATENCY_SECS:-20}
# "KIND PROTO LABEL" of each measured player.
LATENCY_PLAYERS=("liverelay-watch hls liverelay-llhls" "liverelay-watch flv liverelay-httpflv"
    "nginx-hls hls nginx-hls")
latency_scenario() {
    local name=latency run kind proto label url ok
    COMMANDS+=("$name: node bench/latency/clock-publisher.mjs rtmp://127.0.0.1:PORT/live/$name & WATCH_CLOCK=1 node tests/browser/watch.mjs 'http://127.0.0.1:HTTP/watch/live/$name?proto=hls|flv' OUT $((LATENCY_WARMUP + LATENCY_SECS)) (readings after the first $LATENCY_WARMUP s)")
    [ "$REPORT_ONLY" = 1 ] && return 0
    [ -n "${BENCH_ONLY:-}" ] && ! [[ $name =~ $BENCH_ONLY ]] && return 0
    if [ ! -x /usr/bin/chromium ] || [ ! -d "$ROOT/tests/browser/node_modules/puppeteer-core" ] ||
        [ ! -e "$ROOT/player/dist/hls.min.js" ]; then
        log "$name: skipped (chromium, puppeteer-core or the players missing: make test-deps)"
        echo "$name: skipped: chromium, puppeteer-core or the players missing (make test-deps)" >>"$OUT/results/incidents"
        return 0
    fi
    for run in $(seq "$RUNS"); do
        for entry in "${LATENCY_PLAYERS[@]}"; do
            read -r kind proto label <<<"$entry"
            log "$name run $run/$RUNS: $label"
            if ! start_server "$kind"; then
                echo "$name run $run: $label did not start; run skipped" >>"$OUT/results/incidents"
                continue
            fi
            node "$ROOT/bench/latency/clock-publisher.mjs" "rtmp://127.0.0.1:$PORT/live/$name" \
                >"$WORK/publisher.log" 2>&1 &
            local publisher=$!
            STARTED+=("$publisher")
            # Until the playlist is there (nginx-rtmp writes it after its first fragment;
            # liverelay answers once the first part is): hls.js gives up on a 404.
            ok=0
            for _ in $(seq 100); do
                curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT/hls/live/$name/index.m3u8" && { ok=1; break; }
                sleep 0.2
            done
            [ "$ok" = 1 ] || log "$name: no playlist after 20 s"
            url="http://127.0.0.1:$HTTP_PORT/watch/live/$name?proto=$proto"
            rm -rf "$WORK/watch"; mkdir -p "$WORK/watch"
            if ! WATCH_CLOCK=1 node "$ROOT/tests/browser/watch.mjs" "$url" "$WORK/watch" \
                $((LATENCY_WARMUP + LATENCY_SECS)) >/dev/null 2>"$WORK/watch.err"; then
                log "watch failed:"; tail -5 "$WORK/watch.err" >&2
            fi
            cp "$WORK/watch/samples.json" "$OUT/results/$name-$label-$run.json" 2>/dev/null ||
                echo "$name run $run: $label: the browser run wrote nothing" >>"$OUT/results/incidents"
            cp "$WORK/watch/console.log" "$OUT/results/$name-$label-$run.console.log" 2>/dev/null || true
            kill -TERM "$publisher" 2>/dev/null || true
            wait "$publisher" 2>/dev/null || true
            stop_server
            sleep 1
        done
    done
}
latency_scenario

ELAPSED=$(( $(date +%s) - BEGIN ))
if [ "$REPORT_ONLY" = 1 ]; then
    ELAPSED=$(cat "$OUT/results/elapsed" 2>/dev/null || echo "?")
else
    echo "$ELAPSED" >"$OUT/results/elapsed"
fi
# Figures at these player counts (the first and last give RSS per added player).
if [ "$QUICK" = 1 ]; then COMPARE_AT=100,400; HLS_COMPARE_AT=100,200; else COMPARE_AT=100,500,1000,2000; HLS_COMPARE_AT=100,500,1000; fi

# --- plots and RESULTS.md ----------------------------------------------------------------------
B=$BIN/liverelay-bench
table() { # table NAME [compare flags]: the scenario's comparison, if it ran
    local name=$1; shift
    local runs; runs=$(inputs "$name")
    # shellcheck disable=SC2086 # LABEL=PATH words
    if [ -n "$runs" ]; then "$B" compare $runs "$@"; else echo "(not run)"; fi
}
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
    echo "- liverelay: \`liverelay standalone\` release build, default settings (Nagle on, as nginx runs; no write coalescing), RUST_LOG=warn, max_connections $MAXCONN; fan-out scenarios also run *liverelay-taskwrites* (\`LIVERELAY_RTMP__DIRECT_WRITES=false\`: every player written by its own task after a wakeup, as before direct writes), *liverelay-nodelay* (\`LIVERELAY_RTMP__TCP_NODELAY=true\`) and *liverelay-coalesce40* (\`LIVERELAY_RTMP__WRITE_COALESCE_MS=40\`: each player written at most every 40 ms); *liverelay-rtmps* is the default build behind its RTMPS listener (rustls, TLS 1.3, self-signed P-256 certificate), publishers and players over \`rtmps://\`"
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
    table fanout --at "$COMPARE_AT"
    echo
    echo "![fan-out ramp](fanout.png)"
    echo
    echo "### The same at 600 kbit/s"
    echo
    table fanout600k --at "$COMPARE_AT"
    echo
    echo "![fan-out ramp at 600 kbit/s](fanout600k.png)"
    echo
    echo "### RTMPS: the same stream over TLS (liverelay's RTMPS listener vs its plain one)"
    echo
    table fanouttls --at "$COMPARE_AT"
    echo
    echo "## 2. Many publishers: streams of 2.5 Mbit/s, one player each"
    echo
    table publishers
    echo
    echo "![publishers ramp](publishers.png)"
    echo
    echo "## 3. Start-up: $TTFF_PLAYERS players joining a running stream"
    echo
    table ttff
    echo
    echo "## 4. Cluster: publisher → ingest → edge → players"
    echo
    echo "Redis, \`liverelay ingest\` and \`liverelay edge\` on this machine; the tool publishes to the ingest and plays from the edge. Two cores cannot give each server its own: the measured server is pinned to core $SERVER_CORE, the other one and Redis share core $TOOL_CORE with the tool."
    echo
    echo "### The edge against a standalone server (players per core, latency with the relay hop, RSS)"
    echo
    table clusterfanout --at "$COMPARE_AT"
    echo
    echo "### The ingest serving 4 edges (its CPU is the publisher's cost plus 4 subscribed edges')"
    echo
    echo "2.5 Mbit/s:"
    echo
    table ingest2m5
    echo
    echo "20 Mbit/s:"
    echo
    table ingest20m
    echo
    echo "## 5. HTTP viewers per core"
    echo
    echo "### HTTP-FLV players against RTMP players (one 2.5 Mbit/s stream, 2 s GOP)"
    echo
    echo "The same stream and ramp as the fan-out; the tool plays \`GET /flv/live/NAME.flv\` (HTTP/1.1, chunked) and accounts FLV tags as RTMP messages (latency from the same send stamps)."
    echo
    table httpflv --at "$COMPARE_AT"
    echo
    echo "### HLS clients (one 2.5 Mbit/s stream, 1 s GOP)"
    echo
    echo "Each client holds one keep-alive HTTP/1.1 connection. *liverelay-llhls*: as hls.js in low-latency mode, a blocking playlist reload (\`_HLS_msn\`, \`_HLS_part\`) for the next part, then the part (200 ms parts, 2 s segments: liverelay's defaults). *liverelay-hls* and *nginx-hls*: the playlist every target duration (half of it when nothing was new), then each new segment; nginx serves the files nginx-rtmp writes (\`hls on; hls_fragment 1s\`, bench/nginx-hls-*.conf.in) from the same single worker. A client is *behind* when it would have stalled: it starts playing its first part or segment on arrival, in real time, and a later one arrives more than 2 part targets (LL-HLS) or 1 target duration (HLS) after the playhead reached it. Latency: send stamp → arrival of the part or segment carrying it (every stamp found in the bytes). liverelay runs with \`http.max_connections\` and \`hls.max_held_per_client\` raised to $MAXCONN (all clients come from 127.0.0.1)."
    echo
    table hls --at "$HLS_COMPARE_AT"
    echo
    echo "## 6. Glass-to-glass latency: publisher to a playing browser (loopback, 1 s GOP)"
    echo
    echo "One viewer at a time, in Debian's headless chromium (tests/browser/watch.mjs, puppeteer-core), of a stream from bench/latency/clock-publisher.mjs: raw 640x360 frames at 30 fps and a tone, generated on one schedule and piped into ffmpeg (libx264 \`-preset veryfast -tune zerolatency\`, 1 s GOP, 1 Mbit/s; AAC 64 kbit/s), published over RTMP. Each frame carries the wall-clock millisecond at which it was generated as a row of 40 black/white blocks (marker, 32 bits of \`Date.now()\`, a 6-bit check). In the page, every frame the video element presents (\`requestVideoFrameCallback\`) is drawn to a canvas and its row decoded; latency = the browser's \`Date.now()\` then − the time in the picture (same machine, same clock). It includes encoding (x264 without lookahead or B-frames; AAC's delay, since ffmpeg interleaves audio and video), RTMP ingest, the server's packaging (LL-HLS parts, FLV tags, nginx-rtmp's fragments), HTTP delivery, the player's buffering and catch-up, decoding and the hand-off to the compositor; not a camera's exposure or a display's scan-out. *liverelay-llhls*: liverelay's page \`/watch/live/latency\` (hls.js in low-latency mode, 200 ms parts, PART-HOLD-BACK 0.6 s; liverelay's defaults otherwise); *liverelay-httpflv*: the same page with \`?proto=flv\` (mpegts.js); *nginx-hls*: the same page served by nginx with nginx-rtmp's HLS (\`hls on; hls_fragment 1s\`, files served by nginx's http module from the fragments directory, bench/nginx-hls-http.conf.in; the playlist has no parts, so hls.js plays it as regular HLS). Targets (issue 14): LL-HLS p50 ≤ 1500 ms, HTTP-FLV p50 ≤ 500 ms. Readings of the first $LATENCY_WARMUP s of each $((LATENCY_WARMUP + LATENCY_SECS)) s watch are left out (players catch up after their start). The server is pinned to core $SERVER_CORE; the publisher and the browser are not."
    echo
    latency_runs=()
    for entry in "${LATENCY_PLAYERS[@]}"; do
        read -r _ _ label <<<"$entry"
        for f in "$OUT/results/latency-$label-"[0-9]*.json; do [ -e "$f" ] && latency_runs+=("$label=$f"); done
    done
    if [ ${#latency_runs[@]} -gt 0 ]; then node "$ROOT/bench/latency/summary.mjs" "$LATENCY_WARMUP" "${latency_runs[@]}"; else echo "(not run)"; fi
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
