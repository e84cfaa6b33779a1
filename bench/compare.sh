#!/usr/bin/env bash
# Two liverelay servers side by side in one run (server order alternating per run): players at
# a fixed audience, then a ramp to the largest sustained audience, then publishers.
#
# Before/after, e.g. the commit before a refactor and the working tree:
#   git worktree add /tmp/base <commit> && (cd /tmp/base && cargo build --release -p liverelay)
#   BENCH_BASE_BIN=/tmp/base/target/release/liverelay bash bench/compare.sh
# What TLS costs: this checkout's build over rtmps:// against the same build over rtmp://
#   BENCH_COMPARE=tls bash bench/compare.sh
#
#   BENCH_BASE_BIN   the "before" binary; "after" is this checkout's release build
#   BENCH_RUNS=3     repetitions; BENCH_QUICK=1 for a short check of the pipeline
#   BENCH_OUT=DIR    where results go (default: bench/); tables go to results/compare.md
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

if [ "${BENCH_COMPARE:-build}" = tls ]; then
    ALL_SERVERS=(liverelay-rtmps liverelay)
    LABEL=([liverelay-rtmps]="rtmps" [liverelay]="rtmp")
    SCHEME=([liverelay-rtmps]=rtmps)
    TOOL_ARGS=([liverelay-rtmps]="--ca $(bench_cert)/ca.pem")
    TITLE="RTMPS vs plain RTMP, same build"
    RUN_LINE="BENCH_COMPARE=tls bash bench/compare.sh"
else
    BASE=${BENCH_BASE_BIN:?set BENCH_BASE_BIN to the liverelay binary to compare against}
    [ -x "$BASE" ] || { log "$BASE is not an executable"; exit 2; }
    ALL_SERVERS=(liverelay liverelay-base)
    LABEL=([liverelay]="after" [liverelay-base]="before")
    SERVER_BIN=([liverelay-base]="$BASE")
    TITLE="Before/after"
    RUN_LINE="BENCH_BASE_BIN=$BASE bash bench/compare.sh"
fi
SERVERS=("${ALL_SERVERS[@]}")

mkdir -p "$OUT/results"
rm -f "$OUT"/results/cmp*-*.json "$OUT"/results/cmp*-*.txt "$OUT"/results/incidents
if [ "$QUICK" = 1 ]; then
    RUNS=1; PLAYERS=200; RAMP_AT=100,200; RAMP_STEP=200; RAMP_MAX=400; DURATION=5s
    PUB_STEP=5; PUB_MAX=10
else
    PLAYERS=1000; RAMP_AT=1000,2000,3000,4000,5000,6000; RAMP_STEP=2000; DURATION=15s
    PUB_STEP=100; PUB_MAX=600
    RAMP_MAX=$(( MAXCONN - 100 < 14000 ? MAXCONN - 100 : 14000 ))
fi

# CPU and memory per player at a fixed audience, then the largest audience still sustained.
scenario cmpfixed --bitrate 2.5M --fps 30 --gop 2s --players "$PLAYERS" --duration "$DURATION" \
    --settle 3s -q
scenario cmpramp --bitrate 2.5M --fps 30 --gop 2s --ramp-at "$RAMP_AT" --ramp-step "$RAMP_STEP" \
    --ramp-max "$RAMP_MAX" --ramp-interval 6s --settle 3s -q
scenario cmppub --bitrate 2.5M --fps 30 --gop 2s --ramp-streams --ramp-step "$PUB_STEP" \
    --ramp-max "$PUB_MAX" --players 1 --sample-every 1 --ramp-interval 6s --settle 3s -q

B=$BIN/liverelay-bench
# shellcheck disable=SC2046
{
    echo "### $TITLE ($(date -u '+%Y-%m-%d %H:%M UTC'), $RUNS run(s), this checkout = \`$(cd "$ROOT" && git rev-parse --short HEAD)\`)"
    echo
    echo '```sh'
    echo "$RUN_LINE"
    for c in "${COMMANDS[@]}"; do echo "# $c"; done
    echo '```'
    echo
    echo "#### $PLAYERS players of one 2.5 Mbit/s stream"
    echo
    "$B" compare $(inputs cmpfixed)
    echo
    echo "#### Ramp: the largest sustained audience"
    echo
    "$B" compare $(inputs cmpramp) --at "${RAMP_AT%%,*}"
    echo
    echo "#### Publishers: streams of 2.5 Mbit/s, one player each"
    echo
    "$B" compare $(inputs cmppub)
} | tee "$OUT/results/compare.md"
