#!/usr/bin/env bash
# selftest-multinode.sh - cluster/slurm/train.sbatch on a real 2-node SLURM cluster made of two emulated nodes of
# this one machine (cluster/emulate). Root; Debian bookworm (slurm 22.05). Not part of `swift test` or CI (it
# installs packages and starts daemons); Tests/CLITests/SlurmMultiNodeTests.swift runs it when
# DISTTRAIN_SLURM_MULTINODE=1.
#
#   cluster/slurm/selftest-multinode.sh            about 35 s once the packages are installed and disttrain is built
#   cluster/slurm/selftest-multinode.sh --cleanup  remove what a run killed with -9 left behind
#
# What it builds (set-up and teardown are cluster/emulate/netns.sh's, as for run.sh):
#   - node0 and node1: network namespaces with eth0 = 10.213.19.1 and .2 on a private switch (a bridge in a third
#     namespace), nothing in the host's network namespace;
#   - munged in the switch's namespace with its own key and its unix socket in the invocation's state folder
#     (AuthInfo=socket=...): the nodes reach it through the file system, as all daemons of one machine do;
#   - slurmctld in node0 (SlurmctldHost=node0(10.213.19.1)), one slurmd per node (-N nodeI, hostname nodeI in a UTS
#     namespace of its own, NodeAddr = its eth0 address, spool/pid/log per node through %n in slurm.conf);
#   - every client command (sbatch, squeue, scontrol) runs in node0, as on a login node of the cluster.
# Then it trains the tiny BERT fixture (dropout on) for 20 steps once as 1 process and once with
#   sbatch --nodes=2 --ntasks=4 --ntasks-per-node=2 cluster/slurm/train.sbatch
# (mpirun inside the allocation starts its daemon on node1 through srun and slurmd) and checks: the job COMPLETED
# with exit 0:0 on node[0-1]; the batch script saw 2 nodes × 2 tasks; disttrain's start-up line names 2 nodes ×
# 2 ranks and the hierarchical path (ZeRO-1 across the nodes); the gradients crossed node1's eth0; the final
# model.safetensors and every step's loss equal the 1-process run's within 1e-5.
# Then the same job again, preempted mid-run by `scancel --signal=USR1 --batch`: every rank on both nodes saves at the
# next step boundary and exits 75, the script requeues the job, the second run resumes on 2 nodes and ends with the
# first job's model.safetensors byte for byte.
#
# Environment:
#   DISTTRAIN_BIN=F   the binary (default: .build/release/disttrain, else .build/debug/disttrain of this checkout)
#   SKIP_INSTALL=1    do not touch apt (a missing slurm package is then a skip)
#   SLURM_PKGS=...    the packages needed (default: slurmctld slurmd slurm-client munge)
#   KEEP_LOGS=DIR     copy the job's output, the daemons' logs and the comparison there before the teardown
# Exit status: 0 every check passed; 1 a check failed; 2 usage (not root, no disttrain binary, a missing tool);
# 3 the emulated cluster could not be set up; 77 skipped: the slurm packages are not installed and could not be.
# Everything lives in /run/disttrain-emulate/ID and the namespaces dtemu-ID-*; it is all removed on every exit.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SLURM_PKGS=${SLURM_PKGS:-"slurmctld slurmd slurm-client munge"}
NODES=2; RPN=2; STEPS=20

T0=$(date +%s%N)
secs() { local d=$(( ($(date +%s%N) - $1) / 100000000 )); echo "$((d/10)).$((d%10))"; }   # seconds since $1 (ns)
log() { printf '[slurm-multinode %6ss] %s\n' "$(secs "$T0")" "$*"; }
say() { log "$*" >&2; }   # netns.sh reports through say
FAILS=0; PASSES=0
ok()  { log "PASS: $*"; PASSES=$((PASSES + 1)); }
bad() { log "FAIL: $*"; FAILS=$((FAILS + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
wait_for() {   # wait_for SECONDS DESCRIPTION COMMAND... : poll every 0.5 s
    local t=$1 d=$2; shift 2
    local end=$(( $(date +%s) + t ))
    while ! "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -ge "$end" ] && { bad "timeout ${t}s waiting for: $d"; return 1; }
        sleep 0.5
    done
    log "ok: $d"
}
# shellcheck source=../emulate/netns.sh
. "$REPO/cluster/emulate/netns.sh"
# shellcheck source=conf-common.sh
. "$REPO/cluster/slurm/conf-common.sh"

case "${1:-}" in
    --cleanup) [ "$(id -u)" = 0 ] || { say "--cleanup needs root"; exit 2; }; emu_cleanup_stale; exit 0 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    "") ;;
    *) say "unknown argument '$1' (usage: $0 [--cleanup])"; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { say "needs root (network namespaces, daemons, apt)"; exit 2; }

# ------------------------------------------------------------------------------------------------ packages, tools
missing() { local p need=""; for p in $SLURM_PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need="$need $p"; done; echo "$need"; }
need=$(missing)
if [ -n "$need" ] && [ -z "${SKIP_INSTALL:-}" ]; then
    log "installing:$need (apt-get)"
    made_policy=""   # no init system here: keep the package scripts from starting the services
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1; fi
    # shellcheck disable=SC2086
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need; } \
        > /tmp/disttrain-slurm-multinode.apt.log 2>&1
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
    need=$(missing)
fi
if [ -n "$need" ]; then
    if [ -n "${SKIP_INSTALL:-}" ]; then why="SKIP_INSTALL is set"; else why="apt-get install -y$need failed: see /tmp/disttrain-slurm-multinode.apt.log"; fi
    log "SKIP: slurm packages not installed:$need ($why)"
    exit 77
fi
for c in munged munge unmunge slurmctld slurmd sbatch scontrol squeue sinfo scancel srun; do
    command -v "$c" >/dev/null || { log "SKIP: $c not found although the slurm packages are installed"; exit 77; }
done
for c in ip tc unshare nsenter runuser mpirun python3; do
    command -v "$c" >/dev/null || { say "'$c' not found: apt-get install iproute2 util-linux openmpi-bin python3"; exit 2; }
done
BIN=""
for c in "${DISTTRAIN_BIN:-}" "$REPO/.build/release/disttrain" "$REPO/.build/debug/disttrain"; do
    [ -n "$c" ] && [ -x "$c" ] && { BIN=$c; break; }
done
[ -n "$BIN" ] || { say "disttrain not found: build it (swift build -c release) or set DISTTRAIN_BIN"; exit 2; }
log "$(slurmctld -V) / $(munged -V 2>&1 | head -1) / $(mpirun --version | head -1) / disttrain $BIN"

# ------------------------------------------------------------------------------------------------ the nodes
emu_cleanup_stale
emu_allocate_id
S=$STATE/slurm; W=$STATE/work
CONF=$S/slurm.conf; SOCK=$STATE/munge/munge.socket
export SLURM_CONF=$CONF   # every client command needs it; sbatch passes it (and the rest of this environment) into the job
# on_node I COMMAND... : run COMMAND in node I (its network namespace, a UTS namespace named nodeI). nsenter, not
# `ip netns exec`: that also remounts /sys, where slurmd needs the cgroup file system ("No filesystem mounted on
# /sys/fs/cgroup ... slurmd initialization failed"), although this configuration uses no cgroup plugin.
on_node() {
    local i=$1; shift
    nsenter --net="/run/netns/$(node_ns "$i")" unshare --uts sh -c 'hostname "$0" && exec "$@"' "node$i" "$@"
}
JOB=""
finish() {
    local rc=$? p f
    trap - EXIT INT TERM HUP
    set +e
    if [ -s "$S/run/slurmctld.pid" ] && [ -n "$JOB" ]; then on_node 0 scancel "$JOB" 2>/dev/null; fi
    if [ "$rc" != 0 ] || [ "$FAILS" != 0 ]; then   # the state folder goes away with the teardown: show what failed
        for f in "$W"/runs/*.out "$S"/log/*.log; do
            [ -f "$f" ] && { echo "---- $f (last 25 lines)"; tail -25 "$f"; }
        done
    fi
    if [ -n "${KEEP_LOGS:-}" ]; then   # the job's output, the comparison and the daemons' logs outlive the teardown
        mkdir -p "$KEEP_LOGS" && cp -r "$W"/runs/. "$S"/log/. "$KEEP_LOGS"/ 2>/dev/null; cp "$W"/*.txt "$W"/*.log "$KEEP_LOGS"/ 2>/dev/null
        log "logs kept in $KEEP_LOGS"
    fi
    for f in "$S"/run/slurmd-node*.pid "$S/run/slurmctld.pid"; do   # daemons first, politely; then the namespaces
        p=$(cat "$f" 2>/dev/null); [ -n "$p" ] && kill "$p" 2>/dev/null
    done
    for f in 1 2 3 4 5 6 7 8 9 10; do   # up to 5 s for them to go
        p=""; for g in "$S"/run/slurmd-node*.pid "$S/run/slurmctld.pid"; do [ -s "$g" ] && kill -0 "$(cat "$g")" 2>/dev/null && p=1; done
        [ -z "$p" ] && break; sleep 0.5
    done
    log "daemons stopped; removing the namespaces"
    emu_teardown_id "$ID"
    log "torn down (invocation $ID); total $(secs "$T0")s"
    if [ "$rc" = 0 ] && [ "$FAILS" = 0 ]; then log "SELFTEST PASSED ($PASSES checks)"; exit 0; fi
    log "SELFTEST FAILED ($FAILS failed, $PASSES passed, rc=$rc)"
    [ "$rc" = 0 ] && rc=1
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 129' HUP
die() { bad "$*"; exit 1; }

emu_build_nodes "$NODES"
log "invocation $ID: node0, node1 at $SUBNET.1, $SUBNET.2 (namespaces $(node_ns 0), $(node_ns 1))"

# ------------------------------------------------------------------------------------------------ munge
mkdir -p "$STATE/munge"
dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 2>/dev/null
chown -R munge:munge "$STATE/munge"; chmod 0755 "$STATE/munge"; chmod 0400 "$STATE/munge/munge.key"
# In the switch's namespace, so that the teardown ends it with everything else; it forks into the background.
ip netns exec "$SW" runuser -u munge -- munged --socket="$SOCK" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed" \
    || die "munged failed to start: $(tail -3 "$STATE/munge/munged.log" 2>/dev/null)"
wait_for 10 "munge round trip through $SOCK" sh -c "munge --socket='$SOCK' -n | unmunge --socket='$SOCK'" || exit 1

# ------------------------------------------------------------------------------------------------ slurm
mkdir -p "$S"/{state,run,log,spool/node0,spool/node1} "$W"/runs
HW=$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //; s/ RealMemory=[0-9]+//')   # CPUs=2 Boards=1 ...
MEM=$(free -m | awk '/^Mem:/{print int($2 * 0.4)}')
cat > "$CONF" <<EOF
ClusterName=dtemu
SlurmctldHost=node0($SUBNET.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK,cred_expire=5
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool/%n
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd-%n.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd-%n.log
$(slurm_conf_common)
NodeName=node0 NodeHostname=node0 NodeAddr=$SUBNET.1 $HW RealMemory=$MEM State=UNKNOWN
NodeName=node1 NodeHostname=node1 NodeAddr=$SUBNET.2 $HW RealMemory=$MEM State=UNKNOWN
PartitionName=emu Nodes=node[0-1] Default=YES MaxTime=INFINITE State=UP
EOF
T_D=$(date +%s%N)
on_node 0 slurmctld -f "$CONF" || die "slurmctld failed to start"
wait_for 20 "slurmctld answers in node0" sh -c "ip netns exec $(node_ns 0) scontrol ping | grep -q UP" || exit 1
for i in 0 1; do
    on_node "$i" slurmd -f "$CONF" -N "node$i" || die "slurmd of node$i failed to start"
done
wait_for 30 "node0 and node1 idle" sh -c "[ \"\$(ip netns exec $(node_ns 0) sinfo -h -N -o '%N %T' | sort | tr '\n' ' ')\" = 'node0 idle node1 idle ' ]" \
    || { ip netns exec "$(node_ns 0)" sinfo -N >&2; exit 1; }
log "slurmctld + 2 slurmd up in $(secs "$T_D")s: $(ip netns exec "$(node_ns 0)" sinfo -h -N -o '%N %T %c' | tr '\n' ' ')"

# ------------------------------------------------------------------------------------------------ the job
# The tiny BERT classifier with dropout on (per-sample dropout masks must not depend on the topology either),
# 44 training and 13 evaluation lines of SMS spam: the set-up of Tests/CLITests/MultiNodeTests.swift.
FIX=$REPO/Tests/ModelTests/Fixtures/bert-tiny-cls
mkdir -p "$W/model"
cp "$FIX"/{model.safetensors,vocab.txt,tokenizer_config.json,special_tokens_map.json} "$W/model/"
python3 - "$FIX/config.json" "$W/model/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["hidden_dropout_prob"] = 0.1; c["attention_probs_dropout_prob"] = 0.1
json.dump(c, open(sys.argv[2], "w"))
PY
sed -n '1,44p' "$REPO/data/sms-spam/train.jsonl" > "$W/train.jsonl"
sed -n '101,113p' "$REPO/data/sms-spam/train.jsonl" > "$W/eval.jsonl"
ARGS="--batch-size 8 --max-steps $STEPS --logging-steps 1 --learning-rate 1e-3 --weight-decay 0.01 --warmup-steps 2
  --max-length 24 --seed 5 --save-steps 10"

T_R=$(date +%s%N)
# shellcheck disable=SC2086
"$BIN" train --model "$W/model" --train-file "$W/train.jsonl" --eval-file "$W/eval.jsonl" --output-dir "$W/single" \
    --threads 1 $ARGS > "$W/single.log" 2>&1 || { cat "$W/single.log"; die "the 1-process reference run failed"; }
log "1-process reference: $(secs "$T_R")s"

node1_bytes() {   # bytes node1's eth0 has sent and received so far
    echo $(( $(ip netns exec "$(node_ns 1)" cat /sys/class/net/eth0/statistics/tx_bytes) + $(ip netns exec "$(node_ns 1)" cat /sys/class/net/eth0/statistics/rx_bytes) ))
}
B0=$(node1_bytes)
T_J=$(date +%s%N)
# Submitted from node0 in the work folder (the script's default output file is runs/slurm-%x-%j.out there).
# OpenMPI's TCP traffic (between nodes) and out-of-band channel stay on the nodes' eth0; its session folders in STATE.
JOB=$(cd "$W" && MODEL=$W/model TRAIN_FILE=$W/train.jsonl EVAL_FILE=$W/eval.jsonl OUTPUT_DIR=$W/slurm TRAIN_ARGS="$ARGS" \
    DISTTRAIN_BIN=$BIN OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader,tcp \
    OMPI_MCA_btl_tcp_if_include=eth0 OMPI_MCA_oob_tcp_if_include=eth0 OMPI_MCA_orte_tmpdir_base="$STATE" \
    on_node 0 sbatch --parsable -J multinode --nodes=2 --ntasks=4 --ntasks-per-node=2 "$REPO/cluster/slurm/train.sbatch") \
    || die "sbatch failed"
log "submitted job $JOB: sbatch --nodes=2 --ntasks=4 --ntasks-per-node=2 cluster/slurm/train.sbatch"
OUT=$W/runs/slurm-multinode-$JOB.out
jfield() { ip netns exec "$(node_ns 0)" scontrol show job "$JOB" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
finished() { case "$(jfield JobState)" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) return 0 ;; esac; return 1; }
wait_for 300 "job $JOB finished" finished || exit 1
log "job $JOB: $(jfield JobState) exit $(jfield ExitCode) on $(jfield NodeList) in $(secs "$T_J")s"
bytes=$(( $(node1_bytes) - B0 ))

# ------------------------------------------------------------------------------------------------ checks
check "job COMPLETED with exit 0:0 on 2 nodes node[0-1]" \
    [ "$(jfield JobState)/$(jfield ExitCode)/$(jfield NumNodes)/$(jfield NodeList)" = "COMPLETED/0:0/2/node[0-1]" ]
check "the batch script saw nnodes=2 tasks-per-node=2(x2) ntasks=4" \
    grep -q 'ntasks=4 nnodes=2 tasks-per-node=2(x2) .*nodes=node\[0-1\]' "$OUT"
check "disttrain ran 4 ranks and its start-up line names 2 nodes × 2 ranks on the hierarchical path, ZeRO-1 across the nodes" \
    sh -c "grep -q 'world size 4,' '$OUT' && grep -q 'gradients reduced hierarchically: .* across the 2 nodes; AdamW sharded over all 4 ranks (ZeRO-1 across 2 nodes).*(2 nodes × 2 ranks per node;' '$OUT'"
check "node1's slurmd launched step $JOB.0 for node0 (mpirun's daemon on node1, through srun)" \
    grep -q "launch task StepId=$JOB\.0 request from UID:0 GID:0 HOST:$SUBNET\.1 " "$S/log/slurmd-node1.log"
check "gradients crossed node1's eth0: $bytes bytes sent + received during the job" [ "$bytes" -gt 1000000 ]
python3 - "$W/single" "$W/slurm" "$STEPS" > "$W/compare.txt" 2>&1 <<'PY'
import json, struct, sys
ref, run = sys.argv[1], sys.argv[2]
def tensors(p):
    raw = open(p + "/model.safetensors", "rb").read(); h = struct.unpack("<Q", raw[:8])[0]
    meta = json.loads(raw[8:8 + h]); base = 8 + h; out = {}
    for k, v in meta.items():
        if k == "__metadata__": continue
        if v["dtype"] != "F32": sys.exit(f"{k}: dtype {v['dtype']}, expected F32")
        lo, hi = v["data_offsets"]; out[k] = struct.unpack(f"<{(hi - lo) // 4}f", raw[base + lo:base + hi])
    return out
def losses(p): return [json.loads(l)["loss"] for l in open(p + "/metrics.jsonl") if l.strip() and "loss" in json.loads(l)]
a, b = tensors(ref), tensors(run)
if a.keys() != b.keys(): sys.exit(f"tensor names differ: {sorted(a.keys() ^ b.keys())}")
worst, at = max((abs(x - y), k) for k in a for x, y in zip(a[k], b[k]))
la, lb = losses(ref), losses(run)
lworst = max((abs(x - y) / abs(x) for x, y in zip(la, lb)), default=float("inf"))
print(f"{len(a)} tensors, max |weight diff| {worst:.3g} (in {at}); {len(la)} vs {len(lb)} losses, max rel diff {lworst:.3g}; "
      f"loss {la[0]:.5f} -> {la[-1]:.5f}")
ok = worst < 1e-5 and len(la) == len(lb) == int(sys.argv[3]) and lworst < 1e-5 and abs(la[0] - la[-1]) > 1e-3
sys.exit(0 if ok else 1)
PY
rc=$?
check "final weights and per-step losses of the 2-node SLURM job equal the 1-process run's within 1e-5: $(cat "$W/compare.txt")" [ "$rc" = 0 ]
# ------------------------------------------------------------------------------------------------ preempted across nodes
# The same job, 0.5 s per step, gets `scancel --signal=USR1 --batch` mid-run: the batch script forwards USR1 to
# mpirun, which passes it to the ranks on both nodes (through its daemon on node1); all four save at the next step
# boundary and exit 75, the script requeues the job, and the second run (again 2 nodes × 2) resumes and must end
# with the uninterrupted 2-node job's model.safetensors byte for byte.
T_Q=$(date +%s%N)
JOB=$(cd "$W" && MODEL=$W/model TRAIN_FILE=$W/train.jsonl EVAL_FILE=$W/eval.jsonl OUTPUT_DIR=$W/requeue TRAIN_ARGS="$ARGS" \
    EXTRA_ARGS="--step-delay-ms 500" DISTTRAIN_BIN=$BIN OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=eth0 OMPI_MCA_oob_tcp_if_include=eth0 OMPI_MCA_orte_tmpdir_base="$STATE" \
    on_node 0 sbatch --parsable -J requeue --nodes=2 --ntasks=4 --ntasks-per-node=2 "$REPO/cluster/slurm/train.sbatch") \
    || die "sbatch (requeue) failed"
QOUT=$W/runs/slurm-requeue-$JOB.out
last_step() { grep -o 'step [0-9]*/' "$QOUT" 2>/dev/null | tail -1 | tr -dc 0-9; }
step_at_least() { local n; n=$(last_step); [ -n "$n" ] && [ "$n" -ge "$1" ]; }
wait_for 120 "job $JOB (requeue) at step >= 6" step_at_least 6 || exit 1
q_step=$(last_step)
on_node 0 scancel --signal=USR1 --batch "$JOB" || bad "scancel --signal=USR1 --batch $JOB failed"
log "sent USR1 to the batch script of job $JOB at step $q_step"
wait_for 300 "job $JOB finished" finished || exit 1
log "job $JOB: $(jfield JobState) exit $(jfield ExitCode), $(jfield Restarts) restart(s), in $(secs "$T_Q")s"
q_saved=$(grep -o 'received SIGUSR1; saved [^ ]*/checkpoint-[0-9]*' "$QOUT" | head -1 | sed 's/.*checkpoint-//')
check "USR1 forwarded to mpirun, all ranks saved checkpoint-$q_saved within 2 steps of the signal (step $q_step) and exited 75, the script requeued" \
    sh -c "grep -q 'received SIGUSR1, forwarding to mpirun' '$QOUT' && grep -q 'mpirun exited with 75' '$QOUT' && grep -q 'requeueing job $JOB' '$QOUT' && [ -n '$q_saved' ] && [ '$q_saved' -ge '$q_step' ] && [ '$q_saved' -le $((q_step + 2)) ]"
check "the requeued run (SLURM_RESTART_COUNT=1, 2 nodes again) resumed from checkpoint-$q_saved and COMPLETED 0:0" \
    sh -c "[ '$(jfield JobState)/$(jfield ExitCode)/$(jfield Restarts)' = COMPLETED/0:0/1 ] && grep -q 'SLURM_RESTART_COUNT=1 ntasks=4 nnodes=2' '$QOUT' && grep -q 'resuming from checkpoint-$q_saved ' '$QOUT'"
check "the preempted and resumed job's model.safetensors equals the uninterrupted 2-node job's byte for byte" \
    cmp "$W/slurm/model.safetensors" "$W/requeue/model.safetensors"

if [ "$FAILS" = 0 ]; then
    echo "---- $OUT: the script's lines and disttrain's start-up line"
    grep -E '^\[sbatch|world size|gradients ' "$OUT"
    echo "---- $QOUT: the script's lines, signals and resume"
    grep -E '^\[sbatch|received SIG|resuming from' "$QOUT"
fi
exit 0   # the EXIT trap decides the final status from FAILS
