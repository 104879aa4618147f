# netns.sh - the set-up and teardown of an emulated cluster, shared by run.sh and ../slurm/selftest-multinode.sh.
# Sourced (bash), not run. The caller defines say() (one line to stderr) and sets EMULATE_VERBOSE if it wants every
# set-up command printed. See README.md ("What it builds") for the layout.
#
#   emu_cleanup_stale            remove the leftovers of invocations whose owner (the pid in STATE/pid) is gone
#   emu_allocate_id              a fresh invocation id: sets ID and STATE (/run/disttrain-emulate/ID, with our pid)
#   emu_build_nodes N            the switch and nodes node0..nodeN-1 (network namespaces, veth pairs, addresses,
#                                tbf when RATE is set); writes "nodeI NAMESPACE" lines to STATE/nodes
#   emu_teardown_id ID           kill every process in the invocation's namespaces, delete them, remove its state
#   node_ns I                    the network namespace of node I (after emu_allocate_id)
#   fail MESSAGE                 say "set-up failed: MESSAGE" and exit 3
# Settings read by emu_build_nodes: RATE (tc units, empty: unshaped), BURST (empty: the default below), LATENCY.
STATE_ROOT=/run/disttrain-emulate
SUBNET=10.213.19          # private /24; lives only inside an invocation's namespaces
PREFIX=dtemu              # namespace names: dtemu-ID-sw, dtemu-ID-n0 ...

run() { [ -n "${EMULATE_VERBOSE:-}" ] && say "+ $*"; "$@"; }
fail() { say "set-up failed: $*"; exit 3; }
node_ns() { echo "$PREFIX-$ID-n$1"; }

# ------------------------------------------------------------------------------------------------ teardown
# emu_teardown_id ID: kill what runs in the invocation's namespaces, delete them, remove its state. Idempotent.
emu_teardown_id() {
    local id=$1 ns pids i
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-$id-(n[0-9]+|sw)\$"); do
        pids=$(ip netns pids "$ns" 2>/dev/null)
        # shellcheck disable=SC2086
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    done
    for i in $(seq 1 50); do   # a namespace with processes in it outlives `ip netns del`: wait for them
        local left=""
        for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-$id-(n[0-9]+|sw)\$"); do
            [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && left=1
        done
        [ -z "$left" ] && break
        sleep 0.1
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-$id-(n[0-9]+|sw)\$"); do
        ip netns del "$ns" 2>/dev/null || say "warning: could not delete network namespace $ns"
    done
    rm -rf "${STATE_ROOT:?}/$id"
}

# Leftovers of invocations whose owner no longer runs (a state folder whose pid is dead, or namespaces of ours
# without any state folder).
emu_cleanup_stale() {
    local d id pid ns
    for d in "$STATE_ROOT"/*/; do
        [ -d "$d" ] || continue
        id=$(basename "$d"); pid=$(cat "$d/pid" 2>/dev/null)
        if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then say "removing leftovers of invocation $id (its owner, pid ${pid:-?}, is gone)"; emu_teardown_id "$id"; fi
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-[0-9a-f]+-(n[0-9]+|sw)\$"); do
        id=$(echo "$ns" | cut -d- -f2)
        [ -d "$STATE_ROOT/$id" ] || { say "removing orphaned namespace $ns"; emu_teardown_id "$id"; }
    done
}

# ------------------------------------------------------------------------------------------------ set-up
emu_allocate_id() {
    local cand
    mkdir -p "$STATE_ROOT"
    ID=""; STATE=""
    for _ in 1 2 3 4 5 6 7 8; do   # a fresh id: its state folder is created atomically (mkdir fails if it exists)
        cand=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
        if mkdir "$STATE_ROOT/$cand" 2>/dev/null; then ID=$cand; STATE=$STATE_ROOT/$cand; break; fi
    done
    [ -n "$ID" ] || { say "could not allocate an invocation id under $STATE_ROOT"; exit 3; }
    echo $$ > "$STATE/pid"
}

# tbf bucket: at least 256 KB (a few GSO packets; 128 KB held 1 Gb/s links at a third of their rate here), and
# at least 1 ms at the rate (timer slack).
rate_bps() {   # rate_bps 10gbit -> 10000000000 (tc units: bit/bps with k/m/g/t prefixes of 1000)
    local r=${1%bit} m=1
    r=${r%bps}
    case "$r" in *k) m=1000; r=${r%k};; *m) m=1000000; r=${r%m};; *g) m=1000000000; r=${r%g};; *t) m=1000000000000; r=${r%t};; esac
    [[ "$1" == *bps ]] && m=$((m * 8))
    awk -v r="$r" -v m="$m" 'BEGIN { printf "%.0f", r * m }'
}
shape() {   # shape NS DEV: tbf on DEV's egress inside NS
    [ -n "${RATE:-}" ] || return 0
    run ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$RATE" burst "$BURST" latency "$LATENCY" \
        || fail "tc tbf on $2 in $1 (rate $RATE burst $BURST latency $LATENCY)"
}

emu_build_nodes() {   # emu_build_nodes N
    local n=$1 i ns
    SW=$PREFIX-$ID-sw
    if [ -n "${RATE:-}" ] && [ -z "${BURST:-}" ]; then
        BURST=$(awk -v b="$(rate_bps "$RATE")" 'BEGIN { x = b / 8 / 1000; if (x < 262144) x = 262144; printf "%.0f", x }')
    fi
    run ip netns add "$SW" || fail "ip netns add $SW"
    run ip -n "$SW" link add br0 type bridge || fail "bridge in $SW"
    run ip -n "$SW" link set lo up
    for ((i = 0; i < n; i++)); do
        ns=$(node_ns $i)
        run ip netns add "$ns" || fail "ip netns add $ns"
        # The veth pair is created inside the switch namespace with its peer placed straight into the node's.
        run ip -n "$SW" link add "p$i" type veth peer name eth0 netns "$ns" || fail "veth pair for node$i"
        run ip -n "$SW" link set "p$i" master br0 || fail "p$i into the bridge"
        run ip -n "$SW" link set "p$i" up
        run ip -n "$ns" link set lo up
        run ip -n "$ns" addr add "$SUBNET.$((i + 1))/24" dev eth0 || fail "address of node$i"
        run ip -n "$ns" link set eth0 up || fail "eth0 of node$i up"
        shape "$ns" eth0          # node -> switch
        shape "$SW" "p$i"         # switch -> node
        echo "node$i $ns" >> "$STATE/nodes"
    done
    run ip -n "$SW" link set br0 up || fail "bridge up"
}
