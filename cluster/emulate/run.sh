#!/usr/bin/env bash
# run.sh - run an MPI job (normally disttrain) across N emulated nodes on this one machine. Root only (CI runs as
# root); Linux with network namespaces, iproute2 (ip, tc) and util-linux (unshare).
#
#   cluster/emulate/run.sh --nodes N --ranks-per-node R[,R1,...] [--rate 1gbit] [--latency 1ms] [--burst BYTES] \
#       -- disttrain train ARGS...
#   cluster/emulate/run.sh --cleanup          remove what dead invocations left behind (after a kill -9 of run.sh)
#
# What a "node" is here: a network namespace with its own loopback and one interface (eth0, 10.213.19.(i+1)/24)
# plugged into a bridge that lives in a further namespace of its own (the switch), and a UTS namespace whose
# hostname is nodeI. mpirun runs in node0 (like a launch from the first node of an allocation) with a hostfile
# naming node0..nodeN-1 and a launch agent (this directory's agent.sh, via OpenMPI's plm_rsh_agent) that enters a
# node's namespaces instead of ssh-ing to it. OpenMPI therefore starts one orted per node, sees N nodes
# (MPI_COMM_TYPE_SHARED splits per node), uses shared memory (vader) between the ranks of a node and TCP between
# nodes. `--rate` shapes both directions of every node's link with tc tbf (a full-duplex NIC of that rate).
#
# Nothing is created in the host's own network namespace: no interface, address or route; every name carries a
# per-invocation id, so concurrent invocations do not see each other (each has its own switch and may reuse the
# same /24). Teardown runs on every exit (EXIT/INT/TERM/HUP trap): the processes left in the invocation's
# namespaces are killed, the namespaces (and with them the veth pairs and the bridge) deleted, the state folder
# /run/disttrain-emulate/ID removed. A run.sh killed with -9 cannot clean up: the next invocation (or --cleanup)
# removes the leftovers of any invocation whose run.sh is gone.
#
# The command after `--` is run on every rank by mpirun. If it is `disttrain` and that is not on the PATH,
# $DISTTRAIN_BIN, then .build/release/disttrain, then .build/debug/disttrain of this checkout are used.
# Environment: MPIRUN_ARGS (more mpirun flags, word-split), EMULATE_VERBOSE=1 (print every set-up command),
#   EMULATE_STATS=FILE (after the job, write the bytes each node's eth0 sent and received: "nodeI tx_bytes N rx_bytes M").
# Exit status: the job's (mpirun's), or 2 for a usage error, 3 if the emulated cluster could not be set up.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
say() { echo "[emulate] $*" >&2; }
usage() { say "$* (usage: $0 --nodes N --ranks-per-node R[,R1,...] [--rate RATE] [--latency TIME] [--burst BYTES] -- COMMAND ARGS...)"; exit 2; }
# shellcheck source=netns.sh
. "$HERE/netns.sh"   # the set-up and teardown of the namespaces (shared with ../slurm/selftest-multinode.sh)

# ------------------------------------------------------------------------------------------------ arguments
NODES=""; RPN=""; RATE=""; LATENCY=1ms; BURST=""
while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) NODES=${2:-}; shift 2 || usage "--nodes needs a value" ;;
        --ranks-per-node) RPN=${2:-}; shift 2 || usage "--ranks-per-node needs a value" ;;
        --rate) RATE=${2:-}; shift 2 || usage "--rate needs a value (e.g. 1gbit, 10gbit, 25gbit)" ;;
        --latency) LATENCY=${2:-}; shift 2 || usage "--latency needs a value (e.g. 1ms)" ;;
        --burst) BURST=${2:-}; shift 2 || usage "--burst needs a value in bytes" ;;
        --cleanup) [ "$(id -u)" = 0 ] || { say "--cleanup needs root"; exit 2; }; emu_cleanup_stale; exit 0 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        --) shift; break ;;
        *) usage "unknown argument '$1' (the job's command goes after --)" ;;
    esac
done
[ $# -gt 0 ] || usage "no command after --"
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] && [ "$NODES" -le 64 ] || usage "--nodes must be an integer from 1 to 64 (got '${NODES}')"
# R, or one count per node (R0,R1,...: uneven nodes, e.g. to see what a job does with them)
[[ "$RPN" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || usage "--ranks-per-node must be a positive integer or one per node like 2,1 (got '${RPN}')"
IFS=, read -r -a PER_NODE <<< "$RPN"
if [ "${#PER_NODE[@]}" = 1 ]; then
    for ((i = 1; i < ${NODES:-1}; i++)); do PER_NODE+=("$RPN"); done
elif [ "${#PER_NODE[@]}" != "$NODES" ]; then
    usage "--ranks-per-node $RPN names ${#PER_NODE[@]} node(s), --nodes is $NODES"
fi
[ -z "$RATE" ] || [[ "$RATE" =~ ^[0-9]+(\.[0-9]+)?([kmgt]?(bit|bps))$ ]] || usage "--rate '$RATE': use tc's units, e.g. 1gbit, 10gbit, 25gbit, 500mbit"
[[ "$LATENCY" =~ ^[0-9]+(\.[0-9]+)?(us|usec|ms|msec|s|sec)$ ]] || usage "--latency '$LATENCY': use tc's units, e.g. 100us, 1ms"
[ -z "$BURST" ] || [[ "$BURST" =~ ^[0-9]+[kmg]?b?$ ]] || usage "--burst '$BURST': bytes, e.g. 262144 or 256kb"
[ "$(id -u)" = 0 ] || { say "needs root (network namespaces); run as root or under sudo"; exit 2; }
for tool in ip tc unshare mpirun; do
    command -v "$tool" >/dev/null || { say "'$tool' not found: apt-get install iproute2 util-linux openmpi-bin"; exit 2; }
done

# The program: `disttrain` resolves to this checkout's build when it is not on the PATH.
PROG=$1; shift
if [ "$PROG" = disttrain ] && ! command -v disttrain >/dev/null; then
    for c in "${DISTTRAIN_BIN:-}" "$REPO/.build/release/disttrain" "$REPO/.build/debug/disttrain"; do
        [ -n "$c" ] && [ -x "$c" ] && { PROG=$c; break; }
    done
    [ "$PROG" = disttrain ] && { say "disttrain not found: build it (swift build -c release) or set DISTTRAIN_BIN"; exit 2; }
fi
if [[ "$PROG" != */* ]]; then
    found=$(command -v "$PROG") || { say "command '$PROG' not found (not on the PATH)"; exit 2; }
    PROG=$found
fi

# ------------------------------------------------------------------------------------------------ set-up
mkdir -p "$STATE_ROOT"
emu_cleanup_stale
emu_allocate_id

MPI_PID=""
finish() {
    local rc=$?
    trap - EXIT INT TERM HUP USR1 USR2
    [ -n "$MPI_PID" ] && kill -0 "$MPI_PID" 2>/dev/null && kill -9 "$MPI_PID" 2>/dev/null
    emu_teardown_id "$ID"
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 129' HUP

emu_build_nodes "$NODES"
HOSTFILE=$STATE/hostfile
for ((i = 0; i < NODES; i++)); do echo "node$i slots=${PER_NODE[$i]}" >> "$HOSTFILE"; done

# The launch agent, as mpirun calls ssh: AGENT [options] HOST COMMAND-LINE...
cat > "$STATE/agent" <<EOF
#!/bin/sh
exec "$HERE/agent.sh" "$STATE/nodes" "\$@"
EOF
chmod +x "$STATE/agent"

links="unshaped veth links"
[ -n "$RATE" ] && links="links shaped with tc tbf rate $RATE burst $BURST latency $LATENCY each way"
per="$RPN rank(s) per node"
[ "${#PER_NODE[@]}" -gt 1 ] && [ "$(printf '%s\n' "${PER_NODE[@]}" | sort -u | wc -l)" -gt 1 ] && per="$(echo "$RPN" | sed 's/,/+/g') rank(s)"
say "invocation $ID: $NODES node(s) × $per (node0..node$((NODES - 1)) at $SUBNET.1..$SUBNET.$NODES), $links"

# ------------------------------------------------------------------------------------------------ the job
NP=0; for r in "${PER_NODE[@]}"; do NP=$((NP + r)); done
# Each node's ranks are consecutive: fill node0's slots, then node1's (ppr:R:node does the same for equal counts).
if [ "$(printf '%s\n' "${PER_NODE[@]}" | sort -u | wc -l)" = 1 ]; then MAP="ppr:${PER_NODE[0]}:node"; else MAP=slot; fi
# shellcheck disable=SC2206
extra=(${MPIRUN_ARGS:-})
MPI=(mpirun --allow-run-as-root --hostfile "$HOSTFILE" -n "$NP" --map-by "$MAP" --bind-to none
     --mca plm_rsh_agent "$STATE/agent" --mca plm_rsh_no_tree_spawn 1
     --mca btl self,vader,tcp --mca btl_tcp_if_include eth0 --mca oob_tcp_if_include eth0
     --mca orte_tmpdir_base "$STATE" "${extra[@]}" "$PROG" "$@")
[ -n "${EMULATE_VERBOSE:-}" ] && say "+ ${MPI[*]}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# A node that drops off the network (not one whose processes die: mpirun notices those at once) is noticed by the
# keepalives of mpirun's idle connection to its daemon: after ~25 s instead of OpenMPI's default ~8 minutes.
export OMPI_MCA_oob_tcp_keepalive_time=${OMPI_MCA_oob_tcp_keepalive_time:-10}
export OMPI_MCA_oob_tcp_keepalive_intvl=${OMPI_MCA_oob_tcp_keepalive_intvl:-5}
export OMPI_MCA_oob_tcp_keepalive_probes=${OMPI_MCA_oob_tcp_keepalive_probes:-3}
# mpirun runs in node0: `ip netns exec` and `unshare` exec in turn, so $! is mpirun itself.
ip netns exec "$(node_ns 0)" unshare --uts sh -c 'hostname "$0" && exec "$@"' node0 "${MPI[@]}" &
MPI_PID=$!
forward() { say "received SIG$1, forwarding to mpirun (pid $MPI_PID)"; kill -s "$1" "$MPI_PID" 2>/dev/null; }
trap 'forward USR1' USR1; trap 'forward USR2' USR2
trap 'forward TERM' TERM; trap 'forward INT' INT; trap 'forward HUP' HUP
while :; do   # a trapped signal makes wait return early while mpirun still runs
    wait "$MPI_PID"; rc=$?
    kill -0 "$MPI_PID" 2>/dev/null || break
done
MPI_PID=""
trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 129' HUP
if [ -n "${EMULATE_STATS:-}" ]; then   # bytes each node's eth0 sent and received during the job
    for ((i = 0; i < NODES; i++)); do
        echo "node$i tx_bytes $(ip netns exec "$(node_ns $i)" cat /sys/class/net/eth0/statistics/tx_bytes)" \
             "rx_bytes $(ip netns exec "$(node_ns $i)" cat /sys/class/net/eth0/statistics/rx_bytes)"
    done > "$EMULATE_STATS"
fi
exit "$rc"
