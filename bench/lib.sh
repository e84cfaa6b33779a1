# Shared by bench/run.sh (`make bench`) and bench/compare.sh: settings, dependencies, the
# release build, and starting, stopping and loading one server at a time. Sourced, not run.

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/bench}
RUNS=${BENCH_RUNS:-3}
QUICK=${BENCH_QUICK:-0}
REPORT_ONLY=${BENCH_REPORT_ONLY:-0}
CARGO=${CARGO:-cargo}
WORK=$(mktemp -d /tmp/liverelay-bench.XXXXXX)
# BENCH_BIN_DIR=DIR: the binaries there (e.g. a debug build), not built here.
BIN=${BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
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
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's package may start a system nginx; ours runs from its own config and pid file.

if [ -z "${BENCH_BIN_DIR:-}" ]; then
    log "building release binaries"
    (cd "$ROOT" && $CARGO build --release -p liverelay -p liverelay-bench)
fi

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
HTTP_PORT=""    # the server's HTTP port (HTTP players)
SERVER_MAIN=""  # process to stop
PORT=""
PUBLISH_PORT="" # cluster kinds: the ingest's RTMP port, where the tool publishes
CLUSTER_PIDS=() # cluster kinds: Redis, the ingest and the edges
CLUSTER_REDIS="" # cluster kinds: Redis's port

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
    PUBLISH_PORT=""
    case $kind in
        liverelay-edge* | liverelay-ingest*)
            start_cluster "$kind" || return 1
            ;;
        liverelay*)
            HTTP_PORT=$(free_port)
            local http=$HTTP_PORT
            local rtmp=$PORT tls=()
            if [ "${SCHEME[$kind]:-rtmp}" = rtmps ]; then
                # RTMPS on $PORT (what the tool loads), plain RTMP on a port nobody uses.
                rtmp=$(free_port)
                tls=(LIVERELAY_RTMP__TLS_LISTEN=127.0.0.1:$PORT
                    LIVERELAY_RTMP__TLS_CERT="$(bench_cert)/cert.pem"
                    LIVERELAY_RTMP__TLS_KEY="$(bench_cert)/key.pem")
            fi
            # shellcheck disable=SC2086 # the variant's settings are words of NAME=VALUE
            env RUST_LOG=warn LIVERELAY_RTMP__MAX_CONNECTIONS=$MAXCONN ${SETTINGS[$kind]:-} "${tls[@]}" \
                taskset -c $SERVER_CORE "${SERVER_BIN[$kind]:-$BIN/liverelay}" standalone \
                --rtmp-listen "127.0.0.1:$rtmp" --http-listen "127.0.0.1:$http" \
                >"$WORK/liverelay.log" 2>&1 &
            SERVER_MAIN=$!
            STARTED+=("$SERVER_MAIN")
            SERVER_PID=$SERVER_MAIN
            ;;
        nginx*)
            local dir=$WORK/nginx
            rm -rf "$dir"; mkdir -p "$dir"
            HTTP_PORT=$(free_port)
            # nginx.conf.in includes these two: empty for nginx-rtmp alone; nginx-hls also
            # writes HLS (the RTMP application's part) and serves it (an http block).
            local part src
            # The worker runs as nobody: it must reach its HLS directory under $WORK.
            [ "$kind" = nginx-hls ] && chmod o+x "$WORK" "$dir"
            # And liverelay's player page with its players, for the latency scenario.
            if [ "$kind" = nginx-hls ]; then
                mkdir -p "$dir/www/player"
                cp "$ROOT/services/http/src/watch/page.html" "$dir/www/"
                cp "$ROOT"/player/dist/* "$dir/www/player/" 2>/dev/null || true
                chmod -R o+rX "$dir/www"
            fi
            for part in app http; do
                src=/dev/null
                [ "$kind" = nginx-hls ] && src=$ROOT/bench/nginx-hls-$part.conf.in
                sed -e "s#@DIR@#$dir#g" -e "s#@HTTP@#$HTTP_PORT#g" "$src" >"$dir/$part.conf"
            done
            sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$PORT#g" -e "s#@FDS@#$FDS#g" \
                "$ROOT/bench/nginx.conf.in" >"$dir/nginx.conf"
            taskset -c $SERVER_CORE nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/nginx-error.log" \
                >"$dir/out.log" 2>&1 &
            SERVER_MAIN=$!
            STARTED+=("$SERVER_MAIN")
            SERVER_PID=""
            for _ in $(seq 50); do
                # The worker, not a cache manager (nginx starts one when it has an http block).
                SERVER_PID=$(pgrep -P "$SERVER_MAIN" -f "worker process" | head -1 || true)
                [ -n "$SERVER_PID" ] && break
                sleep 0.1
            done
            [ -n "$SERVER_PID" ] || { log "nginx worker did not start"; cat "$dir/nginx-error.log" >&2; return 1; }
            STARTED+=("$SERVER_PID")
            ;;
    esac
    wait_port "$PORT"
}

# A cluster on this machine: redis-server, `liverelay ingest` (publishers; the tool publishes to
# PUBLISH_PORT) and `liverelay edge` (players on PORT). With two cores each server cannot have
# its own: the measured one gets the server core, the other shares the tool's core with Redis
# (kind liverelay-edge*: the edge is measured; liverelay-ingest*: the ingest is).
start_cluster() {
    local kind=$1 ingest_core=$TOOL_CORE edge_core=$SERVER_CORE
    case $kind in liverelay-ingest*) ingest_core=$SERVER_CORE; edge_core=$TOOL_CORE ;; esac
    CLUSTER_REDIS=$(free_port)
    taskset -c "$TOOL_CORE" redis-server --port "$CLUSTER_REDIS" --bind 127.0.0.1 --save "" \
        --appendonly no >"$WORK/redis.log" 2>&1 &
    CLUSTER_PIDS=($!); STARTED+=($!)
    wait_port "$CLUSTER_REDIS" || return 1
    PUBLISH_PORT=$(free_port)
    cluster_node "$kind" ingest bench-ingest "$ingest_core" "$PUBLISH_PORT" "$WORK/ingest.log" \
        --grpc-listen "127.0.0.1:$(free_port)"
    local ingest=${CLUSTER_PIDS[-1]}
    cluster_node "$kind" edge bench-edge "$edge_core" "$PORT" "$WORK/liverelay.log"
    SERVER_MAIN=${CLUSTER_PIDS[-1]}
    case $kind in liverelay-ingest*) SERVER_PID=$ingest ;; *) SERVER_PID=$SERVER_MAIN ;; esac
    wait_port "$PUBLISH_PORT"
    # More edges subscribed to the ingest, each made to pull the scenario's stream 0 by one
    # player of its own (`{i}` keeps the tool from appending its own index to the name), so
    # the ingest's cost per subscribed edge shows above the publisher's.
    local i port
    for ((i = 1; i < ${CLUSTER_EDGES[$kind]:-1}; i++)); do
        port=$(free_port)
        cluster_node "$kind" edge "bench-edge-$i" "$TOOL_CORE" "$port" "$WORK/edge-$i.log"
        wait_port "$port" || return 1
        taskset -c "$TOOL_CORE" "$BIN/liverelay-bench" play --url "rtmp://127.0.0.1:$port/live/$SCENARIO-{i}" \
            --players 1 --duration 3600s -q >"$WORK/edge-$i.play.log" 2>&1 &
        CLUSTER_PIDS+=($!); STARTED+=($!)
    done
}

# cluster_node KIND ROLE POD CORE RTMP-PORT LOG [ARGS...]: one liverelay pod of the cluster
# (its PID is the last of CLUSTER_PIDS), with KIND's binary and settings.
cluster_node() {
    local kind=$1 role=$2 pod=$3 core=$4 rtmp=$5 log=$6
    shift 6
    # shellcheck disable=SC2086 # the variant's settings are words of NAME=VALUE
    env RUST_LOG=warn LIVERELAY_CLUSTER_TOKEN=bench-token LIVERELAY_RTMP__MAX_CONNECTIONS=$MAXCONN \
        POD_NAME="$pod" ${SETTINGS[$kind]:-} taskset -c "$core" "${SERVER_BIN[$kind]:-$BIN/liverelay}" \
        "$role" --rtmp-listen "127.0.0.1:$rtmp" --http-listen "127.0.0.1:$(free_port)" \
        --redis-url "redis://127.0.0.1:$CLUSTER_REDIS" "$@" >"$log" 2>&1 &
    CLUSTER_PIDS+=($!); STARTED+=($!)
}

stop_server() {
    kill -TERM "$SERVER_MAIN" "${CLUSTER_PIDS[@]}" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_MAIN" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_MAIN" ${SERVER_PID:+"$SERVER_PID"} "${CLUSTER_PIDS[@]}" 2>/dev/null || true
    wait "$SERVER_MAIN" "${CLUSTER_PIDS[@]}" 2>/dev/null || true
    CLUSTER_PIDS=()
}

# Filled by the sourcing script: the servers of the next scenario (the last is the baseline of
# the ratios), every kind it may run, and per kind its label, its environment words, and
# optionally its binary, URL scheme and extra tool flags.
SERVERS=(); ALL_SERVERS=()
declare -A LABEL=() SETTINGS=() SERVER_BIN=() SCHEME=() TOOL_ARGS=() CLUSTER_EDGES=() PLAY=()
SCENARIO=""  # the scenario running (cluster kinds name their extra edges' stream after it)
COMMANDS=()

# scenario NAME TOOL-ARGS...: every server, $RUNS times (server order alternates per run).
scenario() {
    local name=$1; shift
    local run kind order i
    COMMANDS+=("$name: taskset -c $TOOL_CORE liverelay-bench run --url rtmp://127.0.0.1:PORT/live/$name $* --server-pid PID --server-core $SERVER_CORE")
    local k
    for k in "${SERVERS[@]}"; do
        [ "${SCHEME[$k]:-rtmp}" = rtmp ] ||
            COMMANDS+=("$name (${LABEL[$k]}): the same with --url ${SCHEME[$k]}://127.0.0.1:PORT/live/$name ${TOOL_ARGS[$k]}")
        [ -z "${PLAY[$k]:-}" ] ||
            COMMANDS+=("$name (${LABEL[$k]}): the same with --protocol ${PLAY[$k]%% *} --play-url http://127.0.0.1:HTTP${PLAY[$k]#* }")
    done
    [ "$REPORT_ONLY" = 1 ] && return 0
    # BENCH_ONLY=REGEX: only the scenarios whose name matches run (a partial, quicker report).
    [ -n "${BENCH_ONLY:-}" ] && ! [[ $name =~ $BENCH_ONLY ]] && return 0
    for run in $(seq "$RUNS"); do
        order=("${SERVERS[@]}")
        if [ $((run % 2)) -eq 0 ]; then
            order=(); for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do order+=("${SERVERS[$i]}"); done
        fi
        for kind in "${order[@]}"; do
            SCENARIO=$name
            log "$name run $run/$RUNS: ${LABEL[$kind]}"
            if ! start_server "$kind"; then
                echo "$name run $run: ${LABEL[$kind]} did not start; run skipped" >>"$OUT/results/incidents"
                continue
            fi
            local json=$OUT/results/$name-$kind-$run.json
            local publish=()
            [ -n "$PUBLISH_PORT" ] && publish=(--publish-url "rtmp://127.0.0.1:$PUBLISH_PORT/live/$name")
            # HTTP players: PLAY[kind] is "PROTOCOL PATH" on the server's HTTP port.
            local play=()
            if [ -n "${PLAY[$kind]:-}" ]; then
                play=(--protocol "${PLAY[$kind]%% *}" --play-url "http://127.0.0.1:$HTTP_PORT${PLAY[$kind]#* }")
            fi
            # shellcheck disable=SC2086 # extra tool flags of this server kind, as words
            if ! taskset -c $TOOL_CORE "$BIN/liverelay-bench" run ${TOOL_ARGS[$kind]:-} "${publish[@]}" "${play[@]}" \
                --url "${SCHEME[$kind]:-rtmp}://127.0.0.1:$PORT/live/$name" --label "${LABEL[$kind]}" \
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



# A throwaway CA and a server certificate for 127.0.0.1 it signed, in $WORK (made once), for
# RTMPS server kinds: the server shows cert.pem, the tool trusts ca.pem (a self-signed
# certificate would be a CA used as an end entity, which rustls refuses).
bench_cert() {
    local dir=$WORK/tls
    if [ ! -e "$dir/cert.pem" ]; then
        mkdir -p "$dir"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj /CN=liverelay-bench-ca -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
            -keyout "$dir/key.pem" -out "$dir/server.csr" 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n' >"$dir/ext.cnf"
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
            -CAcreateserial -days 2 -extfile "$dir/ext.cnf" -out "$dir/cert.pem" 2>/dev/null
    fi
    echo "$dir"
}

inputs() { # inputs NAME → LABEL=PATH for every run of every server
    local name=$1 kind f
    for kind in "${ALL_SERVERS[@]}"; do
        for f in "$OUT"/results/"$name"-"$kind"-[0-9]*.json; do
            [ -e "$f" ] && printf '%s=%s ' "${LABEL[$kind]}" "$f"
        done
    done
    return 0
}
