#!/usr/bin/env bash
# Benchmark workloads over emulated long-distance links (README "Long-distance links").
# Needs root; takes minutes; not part of the test suite.
#
#   bash scripts/wan.sh [--parties 2] [--profiles lan,wan,far]
#                       [--workloads ping,W1,W2a,W2b,W3,W4] [--reps 3] [--out results.jsonl]
#
# Each party and the dealer run in their own network namespace (mpcwan-<id>, the dealer's
# id is the number of parties), joined by veth pairs to a bridge in namespace mpcwan-hub,
# addresses 10.77.0.(10+id)/24. Bandwidth: tbf on both ends of every veth (each member's
# uplink and downlink). Latency: this kernel has no netem, so every member reaches each peer
# through a delay proxy in its own namespace (scripts/wan_proxy.py) holding each chunk for
# the one-way delay, both ways. Prints a markdown table (scripts/wan.py table).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
MPC=$ROOT/.venv/bin/mpc

PARTIES=2 PROFILES=lan,wan,far WORKLOADS=ping,W1,W2a,W2b,W3,W4 REPS=3 OUT=""
while (($#)); do
    case $1 in
        --parties) PARTIES=$2 ;;
        --profiles) PROFILES=$2 ;;
        --workloads) WORKLOADS=$2 ;;
        --reps) REPS=$2 ;;
        --out) OUT=$2 ;;
        *) sed -n '2,7p' "$0" >&2; exit 2 ;;
    esac
    shift 2
done

# profile -> one-way delay (ms), rate (Mbit/s), tbf burst (at least one 64 KB GSO packet)
declare -A DELAY_MS=([lan]=0.1 [wan]=10 [far]=40)
declare -A RATE_MBIT=([lan]=10000 [wan]=1000 [far]=100)
declare -A BURST=([lan]=2mb [wan]=256kb [far]=128kb)

[[ $(id -u) == 0 ]] || { echo "wan.sh: needs root (network namespaces, tc)" >&2; exit 2; }
[[ -x $PY ]] || bash scripts/setup.sh
NS=mpcwan
if ip netns list | grep -q "^$NS-"; then
    echo "wan.sh: namespaces $NS-* exist (another run, or one killed with SIGKILL);" \
         "remove them with: ip netns del <name>" >&2
    exit 2
fi

WORK=$(mktemp -d /tmp/mpcwan.XXXXXX)
OUT=${OUT:-$WORK/results.jsonl}
PROXIES=() RUNNING=()   # processes alive now, stopped on exit
cleanup() {
    for pid in "${PROXIES[@]}" "${RUNNING[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait
    for ns in $(ip netns list | awk '{print $1}' | grep "^$NS-" || true); do
        ip netns del "$ns"
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

MEMBERS=$(seq 0 "$PARTIES")   # the parties, then the dealer
HUB=$NS-hub
ip netns add "$HUB"
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" link set br0 up
for m in $MEMBERS; do
    ip netns add "$NS-$m"
    ip -n "$HUB" link add "port$m" type veth peer name eth0 netns "$NS-$m"
    ip -n "$HUB" link set "port$m" master br0 up
    ip -n "$NS-$m" addr add "10.77.0.$((10 + m))/24" dev eth0
    ip -n "$NS-$m" link set eth0 up
    ip -n "$NS-$m" link set lo up
done
"$PY" scripts/wan.py configs "$WORK" "$PARTIES"

run() {  # run <profile> <workload> <reps> <warmup>: one line of results into $OUT
    local failed=0 load
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    ip netns exec "$NS-$PARTIES" "$MPC" dealer --config "$WORK/cluster-$PARTIES.toml" \
        2>"$WORK/dealer.err" &
    RUNNING=($!)
    for p in $(seq 0 $((PARTIES - 1))); do
        ip netns exec "$NS-$p" "$MPC" party --config "$WORK/cluster-$p.toml" --id "$p" \
            scripts/wan_party.py "$2" "$3" "$4" >"$WORK/party$p.out" 2>"$WORK/party$p.err" &
        RUNNING+=($!)
    done
    for pid in "${RUNNING[@]}"; do wait "$pid" || failed=1; done
    RUNNING=()
    if ((failed)); then
        tail -n 20 "$WORK"/*.err >&2
        echo "wan.sh: $2 under $1 failed" >&2
        return 1
    fi
    printf '{"profile": "%s", "rtt_ms": %s, "rate_mbit": %s, "load": "%s", "result": %s}\n' \
        "$1" "$(awk "BEGIN {print 2 * ${DELAY_MS[$1]}}")" "${RATE_MBIT[$1]}" "$load" \
        "$(tail -n 1 "$WORK/party0.out")" | tee -a "$OUT"
}

for profile in ${PROFILES//,/ }; do
    for m in $MEMBERS; do
        for where in "-n $NS-$m eth0" "-n $HUB port$m"; do
            read -r flag ns dev <<<"$where"
            tc "$flag" "$ns" qdisc replace dev "$dev" root tbf rate "${RATE_MBIT[$profile]}mbit" \
                burst "${BURST[$profile]}" latency 20ms
        done
    done
    for m in $MEMBERS; do
        # shellcheck disable=SC2046  # one LISTEN=TARGET argument per peer
        ip netns exec "$NS-$m" "$PY" scripts/wan_proxy.py --delay-ms "${DELAY_MS[$profile]}" \
            $(cat "$WORK/proxies-$m.txt") &
        PROXIES+=($!)
    done
    for workload in ${WORKLOADS//,/ }; do
        if [[ $workload == W6 ]]; then
            echo "wan.sh: W6 skipped (10 epochs are ~8,500 rounds: minutes per profile)" >&2
            continue
        fi
        if [[ $workload == ping ]]; then run "$profile" ping 20 3; else
            run "$profile" "$workload" "$REPS" 1; fi
    done
    kill "${PROXIES[@]}"
    wait "${PROXIES[@]}" 2>/dev/null || true
    PROXIES=()
done

echo
"$PY" scripts/wan.py table "$OUT"
[[ $OUT == "$WORK"/* ]] || echo "(results in $OUT)"
