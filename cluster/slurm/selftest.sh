#!/bin/bash
# selftest.sh - a real SLURM test of cluster/slurm/train.sbatch with disttrain. Not part of `swift test` or CI:
# it installs packages and starts daemons. Run as root on Debian bookworm, from anywhere:
#
#   cluster/slurm/selftest.sh     about 3.5 minutes once the packages are installed and disttrain is built (under 2
#                                 without the time-limit part); installing the packages adds about a minute, a cold
#                                 release build 15
#
# What it does:
#   1. installs slurmctld, slurmd, slurm-client and munge with apt (skipped when present);
#   2. starts munged (unless one already answers), and a single-node slurmctld + slurmd on this machine (no
#      systemd; configuration, state, spool and logs under ROOT);
#   3. builds disttrain in release if the binary is missing or older than the sources;
#   4. reference: submits train.sbatch (2 tasks) with a tiny BERT on 64 SMS-spam lines, 24 steps, a checkpoint
#      every 2 steps, 1 s per step, and lets it finish;
#   5. the same job again under another output folder, interrupted twice:
#        - `scancel --signal=USR1 --batch`: the batch script's trap forwards USR1 to mpirun, the ranks save at the
#          next step boundary and exit 75, the script runs `scontrol requeue`;
#        - `scontrol requeue`: SLURM sends TERM to every process of the job; the run restarts from the newest
#          checkpoint that verifies (a preemption save if the ranks reached a step boundary in time, else the
#          last periodic one);
#      then checks that the job resumed (the log shows "resuming from checkpoint-", SLURM_RESTART_COUNT 1 and 2),
#      that the final model.safetensors equals the reference byte for byte, that every step's sample indices
#      and loss equal the reference's, and that the final evaluation is the same;
#   6. crash: kill -9 of one rank; the job fails and is not requeued; the same job submitted again with 1 task
#      resumes from the last periodic checkpoint at the new world size (same samples, losses within 1e-5);
#   7. time limit: the same job with --time=1 --signal=B:USR1@50 and slower steps: every run is warned by SLURM,
#      saves, exits 75 and requeues itself until it is done; same checks against the reference (SKIP_TIMELIMIT=1
#      skips this part, about 90 s on a quiet machine, 5 minutes seen on a loaded one);
#   8. prints PASS/FAIL lines, tears down what it started (by PID) and exits 0 only if every check passed.
# Each job writes into ROOT/NAME (ref, requeue, crash, tl), never into the daemons' folders (etc, state, spool, run,
# log, data, out): disttrain refuses a non-empty --output-dir that holds no checkpoint of its own. A part that waits
# for a step stops the test with the job's output when the job ends first. Opt-in from swift test:
# DISTTRAIN_SLURM_SINGLENODE=1 (SlurmSingleNodeTests, without part 7); SlurmBatchScriptTests checks the batch
# script's signal handling without SLURM.
#
# Environment:
#   ROOT=DIR          scratch folder for everything (default /tmp/disttrain-slurm-selftest; wiped at start, kept
#                     afterwards for inspection; refused if it exists and was not made by this script)
#   SKIP_INSTALL=1    do not touch apt
#   SKIP_TIMELIMIT=1  skip the time-limit part
#   DISTTRAIN_BIN=F   use this binary instead of building .build/release/disttrain
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=conf-common.sh
. "$REPO/cluster/slurm/conf-common.sh"
ROOT=${ROOT:-/tmp/disttrain-slurm-selftest}
SLURM_PKGS=${SLURM_PKGS:-"slurmctld slurmd slurm-client munge"}
export SLURM_CONF=$ROOT/etc/slurm.conf   # every client command needs it (else: "Could not establish a configuration source")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # sbatch passes the environment into the job

T0=$(date +%s%N)
secs() { local d=$(( ($(date +%s%N) - $1) / 100000000 )); echo "$((d/10)).$((d%10))"; }   # seconds since $1 (ns)
FAILS=0; PASSES=0
STARTED_MUNGED=""; CTLD_PID=""; SLURMD_PID=""
log()  { printf '[%6ss] %s\n' "$(secs "$T0")" "$*"; }
ok()   { log "PASS: $*"; PASSES=$((PASSES+1)); }
bad()  { log "FAIL: $*"; FAILS=$((FAILS+1)); }
die()  { log "FATAL: $*"; FAILS=$((FAILS+1)); exit 1; }   # the EXIT trap still tears down
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
# wait_for SECONDS DESCRIPTION COMMAND... : poll every 0.5 s
wait_for() {
  local t=$1 d=$2; shift 2
  local end=$(( $(date +%s) + t ))
  while ! "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && { bad "timeout ${t}s waiting for: $d"; return 1; }
    sleep 0.5
  done
  log "ok: $d"
}
stop_pid() {   # stop_pid NAME PID : TERM, wait up to 15 s, then KILL (only this PID)
  local n=$1 p=$2 i
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  kill "$p" 2>/dev/null
  for i in $(seq 1 30); do kill -0 "$p" 2>/dev/null || { log "stopped $n (pid $p)"; return 0; }; sleep 0.5; done
  log "$n (pid $p) ignored SIGTERM, sending SIGKILL"; kill -9 "$p" 2>/dev/null
}
teardown() {
  local rc=$? ids left i
  set +e
  if [ -n "$CTLD_PID" ] && kill -0 "$CTLD_PID" 2>/dev/null; then
    ids=$(squeue -h -o %i 2>/dev/null); [ -n "$ids" ] && { log "cancelling jobs $ids"; scancel $ids; }
    for i in $(seq 1 40); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  stop_pid slurmd "$SLURMD_PID"
  stop_pid slurmctld "$CTLD_PID"
  [ -n "$STARTED_MUNGED" ] && stop_pid munged "$STARTED_MUNGED"
  left=$(ps -eo pid,cmd | grep -E "[s]lurmstepd|$ROOT/[d]ata" | grep -v grep)
  [ -n "$left" ] && log "WARNING leftover processes (not killed):"$'\n'"$left"
  log "total time $(secs "$T0")s; files kept in $ROOT"
  if [ "$rc" = 0 ] && [ "$FAILS" = 0 ]; then log "SELFTEST PASSED ($PASSES checks)"; exit 0; fi
  log "SELFTEST FAILED ($FAILS failed, $PASSES passed, rc=$rc)"; exit 1
}
trap teardown EXIT
[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts slurmctld/slurmd)"
{ [ "$(dirname "$ROOT")" = / ] || [ "$ROOT" = "$REPO" ]; } && die "ROOT=$ROOT is too broad (give a folder at least two levels below /)"
if [ -d "$ROOT" ] && [ -n "$(ls -A "$ROOT")" ] && [ ! -e "$ROOT/.disttrain-slurm-selftest" ]; then
  die "$ROOT exists and was not made by this script; pick another ROOT"
fi

# ---------------------------------------------------------------- 1. packages
if [ -z "${SKIP_INSTALL:-}" ]; then
  need=""
  for p in $SLURM_PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need="$need $p"; done
  if [ -n "$need" ]; then
    log "installing:$need"
    made_policy=""   # no systemd/init here: keep the package scripts from starting services
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need > /tmp/disttrain-slurm-selftest.apt.log 2>&1 \
      || { tail -20 /tmp/disttrain-slurm-selftest.apt.log; die "apt-get install failed"; }
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
  fi
  log "packages ready"
fi
for c in munged munge unmunge slurmctld slurmd sbatch scontrol squeue sinfo scancel mpirun python3; do
  command -v $c >/dev/null || die "missing command $c"
done
log "versions: $(slurmctld -V) / $(munged -V 2>&1 | head -1) / $(mpirun --version | head -1)"

# ---------------------------------------------------------------- 2. disttrain
BIN=${DISTTRAIN_BIN:-$REPO/.build/release/disttrain}
if [ -z "${DISTTRAIN_BIN:-}" ]; then
  if [ ! -x "$BIN" ] || [ -n "$(find "$REPO/Sources" "$REPO/Package.swift" -newer "$BIN" -print -quit)" ]; then
    log "building disttrain (swift build -c release; several minutes)"
    T_B=$(date +%s%N)
    (cd "$REPO" && swift build -c release > /tmp/disttrain-slurm-selftest.build.log 2>&1) \
      || { tail -30 /tmp/disttrain-slurm-selftest.build.log; die "swift build failed"; }
    log "built in $(secs "$T_B")s"
  fi
fi
[ -x "$BIN" ] || die "no disttrain binary at $BIN"
log "disttrain: $BIN"

# ---------------------------------------------------------------- 3. munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "munged already running, reusing it (will not stop it)"
else
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key; chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge; chmod 0755 /run/munge
  rm -f /run/munge/munged.pid
  # munged forks into the background and writes /run/munge/munged.pid; -f tolerates a stale socket
  runuser -u munge -- /usr/sbin/munged -f || die "munged failed to start (see /var/log/munge/munged.log)"
  wait_for 10 "munged pid file" test -s /run/munge/munged.pid || die "no munged pid"
  STARTED_MUNGED=$(cat /run/munge/munged.pid)
  wait_for 10 "munge round trip" sh -c 'munge -n | unmunge' || die "munge not working"
fi

# ---------------------------------------------------------------- 4. slurm config + daemons
for f in slurmctld slurmd; do   # daemons left by an earlier run of this script (found by PID file only)
  p=$(cat "$ROOT/run/$f.pid" 2>/dev/null); [ -n "$p" ] && grep -q "$f" "/proc/$p/cmdline" 2>/dev/null && stop_pid "old $f" "$p"
done
DAEMON_DIRS="etc state spool run log data out"   # the script's own folders under ROOT; no job may use one (submit)
rm -rf "$ROOT"; for d in $DAEMON_DIRS; do mkdir -p "$ROOT/$d"; done; touch "$ROOT/.disttrain-slurm-selftest"
H=$(hostname -s)
getent hosts "$H" >/dev/null || die "hostname $H does not resolve (add it to /etc/hosts)"
NODE=$(slurmd -C | head -1 | sed -E "s/RealMemory=[0-9]+//")   # the node as slurmd sees it
MEM=$(free -m | awk '/^Mem:/{print int($2*0.9)}')
cat > "$SLURM_CONF" <<EOF
ClusterName=selftest
SlurmctldHost=$H
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s)
AuthInfo=cred_expire=5
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool
SlurmctldPidFile=$ROOT/run/slurmctld.pid
SlurmdPidFile=$ROOT/run/slurmd.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd.log
$(slurm_conf_common)
$NODE RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF
T_D=$(date +%s%N)
slurmctld -f "$SLURM_CONF" || die "slurmctld failed to start: $(tail -5 "$ROOT/log/slurmctld.log")"
wait_for 15 "slurmctld pid file" test -s "$ROOT/run/slurmctld.pid"; CTLD_PID=$(cat "$ROOT/run/slurmctld.pid")
wait_for 20 "slurmctld answers ping" sh -c 'scontrol ping | grep -q UP' || die "slurmctld not up"
slurmd -f "$SLURM_CONF" || die "slurmd failed to start: $(tail -5 "$ROOT/log/slurmd.log")"
wait_for 15 "slurmd pid file" test -s "$ROOT/run/slurmd.pid"; SLURMD_PID=$(cat "$ROOT/run/slurmd.pid")
wait_for 30 "node idle" sh -c "sinfo -h -n $H -o %T | grep -qx idle" || die "node not idle: $(sinfo)"
log "slurmctld $CTLD_PID + slurmd $SLURMD_PID up in $(secs "$T_D")s ($NODE)"

# ---------------------------------------------------------------- 5. job settings
head -64 "$REPO/data/sms-spam/train.jsonl" > "$ROOT/data/train.jsonl"
head -32 "$REPO/data/sms-spam/test.jsonl" > "$ROOT/data/eval.jsonl"
STEPS=24
export DISTTRAIN_BIN=$BIN
export MODEL=$REPO/Tests/ModelTests/Fixtures/bert-tiny-cls
export TRAIN_FILE=$ROOT/data/train.jsonl EVAL_FILE=$ROOT/data/eval.jsonl
# 64 samples / global batch 8 = 8 steps per epoch, 3 epochs; evaluation at every epoch end; dropout on.
export TRAIN_ARGS="--max-steps $STEPS --batch-size 8 --learning-rate 1e-3 --warmup-steps 2 --max-length 32 --seed 7
  --save-steps 2 --logging-steps 1 --step-delay-ms 1000"
SBATCH=$REPO/cluster/slurm/train.sbatch
submit() {   # submit NAME [SBATCH FLAGS] : train.sbatch with OUTPUT_DIR=$ROOT/NAME and a sample log; prints the job id
  local name=$1; shift
  # A job's OUTPUT_DIR must not be one of those: disttrain refuses a non-empty --output-dir that holds no checkpoint
  # of its own (Hugging Face semantics), so e.g. OUTPUT_DIR=$ROOT/run (slurmctld.pid, slurmd.pid) fails with exit 2.
  case " $DAEMON_DIRS " in *" $name "*) echo "job name $name would share $ROOT/$name with the daemons; pick another" >&2; return 2;; esac
  mkdir -p "$ROOT/$name"
  OUTPUT_DIR=$ROOT/$name EXTRA_ARGS="--log-samples $ROOT/$name.samples.jsonl" \
    sbatch --parsable -J "$name" -n 2 -o "$ROOT/out/%x.out" "$@" "$SBATCH"
}
compare_run() {   # compare_run DIR [TOL] : DIR's model, per-step sample log and eval metrics against the reference's
  # Without TOL: bitwise (cmp of model.safetensors, identical losses). With TOL (another world size: other float
  # summation order): identical sample indices, |loss - ref| <= TOL at every step, same eval accuracy.
  local n tol=${2:-}; n=$(basename "$1")
  [ -z "$tol" ] && check "$n: final model.safetensors equals the reference byte for byte (cmp)" cmp "$ROOT/ref/model.safetensors" "$1/model.safetensors"
  python3 - "$ROOT/ref" "$1" "$STEPS" "$tol" > "$1.compare.txt" 2>&1 <<'PY'
import json, struct, sys
ref_dir, run_dir, steps, tol = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
tol = float(tol) if tol else None
def lines(p): return [json.loads(l) for l in open(p) if l.strip()]
ref = {r["step"]: r for r in lines(ref_dir + ".samples.jsonl")}
run = lines(run_dir + ".samples.jsonl")
bad, worst = [], 0.0
if sorted(ref) != list(range(1, steps + 1)): bad.append(f"reference log has steps {sorted(ref)}")
seen = sorted({r["step"] for r in run})
if seen != list(range(1, steps + 1)): bad.append(f"interrupted run logged steps {seen}")
for r in run:
    q = ref.get(r["step"])
    if q is None or r["samples"] != q["samples"]: bad.append(f"step {r['step']}: samples {r['samples']} vs {q and q['samples']}"); continue
    d = abs(r["loss"] - q["loss"]); worst = max(worst, d)
    if (d > tol) if tol is not None else (r["loss"] != q["loss"]): bad.append(f"step {r['step']}: loss {r['loss']!r} vs {q['loss']!r}")
ev = lambda d: {k: v for k, v in json.load(open(d + "/eval_results.json")).items() if k.startswith("eval_")}
a, b = ev(ref_dir), ev(run_dir)
if tol is None and a != b: bad.append(f"eval_results differ: {a} vs {b}")
if tol is not None and a.get("eval_accuracy") != b.get("eval_accuracy"): bad.append(f"eval_accuracy {b.get('eval_accuracy')} vs {a.get('eval_accuracy')}")
msg = f"{len(run)} step records ({len(run) - len(seen)} re-run after resumes) against {len(ref)} reference steps"
if tol is not None:
    def floats(p):
        raw = open(p, "rb").read(); h = struct.unpack("<Q", raw[:8])[0]; meta = json.loads(raw[8:8 + h]); base = 8 + h
        out = {}
        for k, v in meta.items():
            if k == "__metadata__" or v["dtype"] != "F32": continue
            lo, hi = v["data_offsets"]; out[k] = struct.unpack(f"<{(hi - lo) // 4}f", raw[base + lo:base + hi])
        return out
    pa, pb = floats(ref_dir + "/model.safetensors"), floats(run_dir + "/model.safetensors")
    pd = max(abs(x - y) for k in pa for x, y in zip(pa[k], pb[k])) if pa.keys() == pb.keys() else float("inf")
    msg += f"; max |loss diff| {worst:.3g}, max |parameter diff| {pd:.3g}"
    if pa.keys() != pb.keys(): bad.append("model tensors differ in names")
print(msg)
print("\n".join(bad) if bad else "all equal" + (f" within {tol}" if tol is not None else ""))
sys.exit(1 if bad else 0)
PY
  local pyrc=$?
  log "$n: $(head -1 "$1.compare.txt")"
  if [ -z "$tol" ]; then
    check "$n: every step (re-runs included) used the reference's sample indices and had bitwise the same loss; eval_* metrics equal" [ "$pyrc" = 0 ]
  else
    check "$n: every step (re-runs included) used the reference's sample indices, losses within $tol, same eval accuracy" [ "$pyrc" = 0 ]
  fi
  [ "$pyrc" = 0 ] || cat "$1.compare.txt"
}
jfield() { scontrol show job -o "$1" 2>/dev/null | grep -o " $2=[^ ]*" | head -1 | cut -d= -f2; }
running_with_restarts() { [ "$(jfield "$1" JobState)" = RUNNING ] && [ "$(jfield "$1" Restarts)" = "$2" ]; }
finished() { case "$(jfield "$1" JobState)" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE) return 0;; esac; return 1; }
# the step of the newest --log-samples line, found by its key (JSONLines.objectLine sorts keys: "loss" comes first)
last_step() { tail -1 "$1" 2>/dev/null | sed -nE 's/.*"step": *([0-9]+).*/\1/p'; }
step_at_least() { local s; s=$(last_step "$1"); [ -n "$s" ] && [ "$s" -ge "$2" ]; }
odd_step_at_least() { local s; s=$(last_step "$1"); [ -n "$s" ] && [ "$s" -ge "$2" ] && [ $((s % 2)) = 1 ]; }
# reached_or_ended TEST SAMPLES N JOB : TEST (step_at_least / odd_step_at_least) holds, or the job is over (it would never)
reached_or_ended() { "$1" "$2" "$3" || finished "$4"; }
stop_if_ended() {   # stop_if_ended JOB OUTPUT WHAT : the job ended while it should still be running: say why, then stop
  finished "$1" || return 0
  log "job $1 ended before $3: $(jfield "$1" JobState) exit $(jfield "$1" ExitCode); the end of $2:"
  tail -15 "$2"
  die "job $1 ended early (see above)"
}
run_section() {   # run_section FILE N : the job output of the run with SLURM_RESTART_COUNT=N
  awk -v n="$2" '/^\[sbatch .*\] job .*SLURM_RESTART_COUNT=/ { on = ($0 ~ ("SLURM_RESTART_COUNT=" n " ")) } on' "$1"; }

# ---------------------------------------------------------------- 6. reference run (uninterrupted)
T_R=$(date +%s%N)
RJ=$(submit ref) || die "sbatch (reference) failed"
log "reference job $RJ submitted"
wait_for 180 "reference job $RJ finished" finished "$RJ"
log "reference run took $(secs "$T_R")s: $(jfield "$RJ" JobState) exit $(jfield "$RJ" ExitCode)"
check "reference job COMPLETED with exit 0:0" [ "$(jfield "$RJ" JobState)/$(jfield "$RJ" ExitCode)" = "COMPLETED/0:0" ]
check "reference: model.safetensors and $STEPS logged steps" \
  sh -c "[ -s '$ROOT/ref/model.safetensors' ] && [ \$(wc -l < '$ROOT/ref.samples.jsonl') = $STEPS ]"
[ "$FAILS" = 0 ] || { echo "---- reference job output"; cat "$ROOT/out/ref.out"; die "reference run failed"; }

# ---------------------------------------------------------------- 7. interrupted run
T_I=$(date +%s%N)
J=$(submit requeue) || die "sbatch failed"
JO=$ROOT/out/requeue.out; S=$ROOT/requeue.samples.jsonl
log "job $J submitted"
# (a) USR1 to the batch script: preemption save, exit 75, the script requeues the job
wait_for 60 "(a) job $J at step >= 6" reached_or_ended step_at_least "$S" 6 "$J"
stop_if_ended "$J" "$JO" "step 6"
a_step=$(last_step "$S")
scancel --signal=USR1 --batch "$J" || bad "(a) scancel --signal=USR1 --batch failed"
log "(a) sent USR1 to the batch script at step $a_step"
wait_for 30 "(a) ranks saved and exited 75" grep -q 'mpirun exited with 75' "$JO"
wait_for 60 "(a) job running again with Restarts=1" running_with_restarts "$J" 1
check "(a) batch trap forwarded USR1 to mpirun" grep -q 'received SIGUSR1, forwarding to mpirun' "$JO"
a_saved=$(grep -o 'received SIGUSR1; saved [^ ]*/checkpoint-[0-9]*' "$JO" | head -1 | sed 's/.*checkpoint-//')
check "(a) preemption checkpoint-$a_saved written within one step of the signal (step $a_step)" \
  sh -c "[ -n '$a_saved' ] && [ '$a_saved' -ge '$a_step' ] && [ '$a_saved' -le $((a_step + 1)) ]"
check "(a) exit 75 led to the script's own 'scontrol requeue'" grep -q "checkpoint saved; requeueing job $J" "$JO"
wait_for 30 "(a) second run started" grep -q 'SLURM_RESTART_COUNT=1' "$JO"
wait_for 60 "(a) second run resumed" sh -c "[ \$(grep -c 'resuming from checkpoint-' '$JO') -ge 1 ]"
a_resumed=$(grep -o 'resuming from checkpoint-[0-9]*' "$JO" | sed -n 1p | sed 's/.*-//')
check "(a) second run resumed from the preemption checkpoint ($a_resumed = $a_saved)" [ "$a_resumed" = "$a_saved" ]

# (b) scontrol requeue: TERM to every process of the job at once
b_min=$(( a_resumed + 6 )); [ "$b_min" -lt 14 ] && b_min=14
# at an odd step, so a preemption save (checkpoint-ODD) and the periodic one (checkpoint-EVEN) can be told apart
wait_for 60 "(b) second run at an odd step >= $b_min" reached_or_ended odd_step_at_least "$S" "$b_min" "$J"
stop_if_ended "$J" "$JO" "an odd step >= $b_min"
b_step=$(last_step "$S")
scontrol requeue "$J" || bad "(b) scontrol requeue failed"
log "(b) scontrol requeue at step $b_step"
wait_for 60 "(b) job running again with Restarts=2" running_with_restarts "$J" 2
wait_for 30 "(b) third run started" grep -q 'SLURM_RESTART_COUNT=2' "$JO"
wait_for 60 "(b) third run resumed" sh -c "[ \$(grep -c 'resuming from checkpoint-' '$JO') -ge 2 ]"
b_resumed=$(grep -o 'resuming from checkpoint-[0-9]*' "$JO" | sed -n 2p | sed 's/.*-//')
run_section "$JO" 1 > "$ROOT/out/requeue.section1"
check "(b) batch trap of the second run saw SIGTERM, forwarded it, and did not requeue by itself" \
  sh -c "grep -q 'received SIGTERM, forwarding to mpirun' '$ROOT/out/requeue.section1' && ! grep -q 'requeueing job' '$ROOT/out/requeue.section1'"
if [ "$b_resumed" = "$b_step" ]; then how="the ranks caught TERM and saved at the step boundary"; else how="the periodic checkpoint; $((b_step - b_resumed)) step(s) re-run"; fi
check "(b) third run resumed from checkpoint-$b_resumed (requeued at step $b_step: $how)" \
  sh -c "[ -n '$b_resumed' ] && [ '$b_resumed' -le '$b_step' ] && [ '$b_resumed' -ge $((b_step - 3)) ]"

# (c) the end of the interrupted job
wait_for 120 "job $J finished" finished "$J"
log "interrupted job took $(secs "$T_I")s in total: $(jfield "$J" JobState) exit $(jfield "$J" ExitCode), $(jfield "$J" Restarts) restarts"
check "job COMPLETED with exit 0:0 after 2 requeues" [ "$(jfield "$J" JobState)/$(jfield "$J" ExitCode)/$(jfield "$J" Restarts)" = "COMPLETED/0:0/2" ]
check "SLURM_RESTART_COUNT logged as 0, 1 and 2" sh -c "for n in 0 1 2; do grep -q \"SLURM_RESTART_COUNT=\$n \" '$JO' || exit 1; done"
compare_run "$ROOT/requeue"
log "final eval: $(cat "$ROOT/requeue/eval_results.json" 2>/dev/null)"

# ---------------------------------------------------------------- 8. crash, then resubmit with another task count
# kill -9 of rank 1 (no save): mpirun aborts, the job FAILS and is not requeued. The same job submitted again (new job
# id, same name and OUTPUT_DIR) with 1 task instead of 2 resumes from the newest periodic checkpoint and re-runs the
# lost steps on the same samples.
T_K=$(date +%s%N)
KJ=$(submit crash) || die "sbatch (crash) failed"
KO=$ROOT/out/crash.out
wait_for 60 "(c) job $KJ at step >= 9" reached_or_ended step_at_least "$ROOT/crash.samples.jsonl" 9 "$KJ"
stop_if_ended "$KJ" "$KO" "step 9"
k_step=$(last_step "$ROOT/crash.samples.jsonl")
victim=$(pgrep -f -- "--output-dir $ROOT/crash " | while read -r p; do
  [ "$(tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -x 'OMPI_COMM_WORLD_RANK=1')" ] && [ "$(cat /proc/$p/comm)" = disttrain ] && echo "$p"; done | head -1)
if [ -n "$victim" ]; then kill -9 "$victim"; log "(c) kill -9 of rank 1 (pid $victim) at step $k_step"
else   # a rank must be named disttrain (/proc/PID/comm: what ps, pgrep -x and killall see)
  bad "(c) rank 1 of job $KJ not found; processes with its --output-dir (pid comm): $(pgrep -f -- "--output-dir $ROOT/crash " | while read -r p; do printf '%s %s; ' "$p" "$(cat /proc/$p/comm 2>/dev/null)"; done)"
fi
wait_for 60 "(c) job $KJ finished" finished "$KJ"
check "(c) job $KJ FAILED without a requeue (state $(jfield "$KJ" JobState), exit $(jfield "$KJ" ExitCode), restarts $(jfield "$KJ" Restarts))" \
  sh -c "[ '$(jfield "$KJ" JobState)' = FAILED ] && [ '$(jfield "$KJ" Restarts)' = 0 ] && ! grep -q 'requeueing job' '$KO'"
KJ2=$(submit crash -n 1) || die "sbatch (crash, resubmitted) failed"
log "(c) resubmitted as job $KJ2 with 1 task"
wait_for 120 "(c) job $KJ2 finished" finished "$KJ2"
k_resumed=$(grep -o 'resuming from checkpoint-[0-9]*' "$KO" | head -1 | sed 's/.*-//')
log "(c) crash + resubmit took $(secs "$T_K")s; job $KJ2: $(jfield "$KJ2" JobState) exit $(jfield "$KJ2" ExitCode)"
check "(c) job $KJ2 COMPLETED 0:0, resumed from checkpoint-$k_resumed (killed at step $k_step) with 2 rank(s) -> 1" \
  sh -c "[ '$(jfield "$KJ2" JobState)/$(jfield "$KJ2" ExitCode)' = COMPLETED/0:0 ] && [ -n '$k_resumed' ] && [ '$k_resumed' -le '$k_step' ] && [ '$k_resumed' -ge $((k_step - 3)) ] && grep -q 'saved with 2 rank(s), now 1' '$KO'"
compare_run "$ROOT/crash" 1e-5

# ---------------------------------------------------------------- 9. time limit: --signal=B:USR1@LEAD
# A 1-minute limit with the warning due 50 s before it (it comes 10-40 s late: time limits are checked about every
# 30 s), 2.5 s per step (60 s of training): every run is warned, saves, exits 75 and requeues itself until done.
if [ -z "${SKIP_TIMELIMIT:-}" ]; then
  T_L=$(date +%s%N)
  TRAIN_ARGS=${TRAIN_ARGS/--step-delay-ms 1000/--step-delay-ms 2500}
  LJ=$(submit tl --time=1 --signal=B:USR1@50) || die "sbatch (time limit) failed"
  LO=$ROOT/out/tl.out
  log "(d) job $LJ submitted with --time=1 --signal=B:USR1@50"
  wait_for 400 "(d) job $LJ finished" finished "$LJ"
  nrest=$(jfield "$LJ" Restarts)
  log "(d) time-limit job took $(secs "$T_L")s: $(jfield "$LJ" JobState) exit $(jfield "$LJ" ExitCode), $nrest restarts"
  check "(d) job COMPLETED with exit 0:0 after $nrest self-requeue(s), never killed by the time limit" \
    sh -c "[ '$(jfield "$LJ" JobState)/$(jfield "$LJ" ExitCode)' = COMPLETED/0:0 ] && [ '$nrest' -ge 1 ] && ! grep -q 'DUE TO TIME LIMIT' '$LO'"
  check "(d) every warning was forwarded, saved and requeued (USR1: $(grep -c 'received SIGUSR1, forwarding' "$LO"), saves: $(grep -c 'received SIGUSR1; saved' "$LO"), requeues: $(grep -c 'requeueing job' "$LO"), resumes: $(grep -c 'resuming from checkpoint-' "$LO"))" \
    sh -c "n=\$(grep -c 'requeueing job' '$LO'); [ \$n = '$nrest' ] && [ \$(grep -c 'received SIGUSR1; saved' '$LO') = \$n ] && [ \$(grep -c 'resuming from checkpoint-' '$LO') = \$n ]"
  compare_run "$ROOT/tl"
fi

if [ "$FAILS" != 0 ]; then
  for f in "$JO" "$ROOT/out/crash.out" "$ROOT/out/tl.out"; do [ -f "$f" ] && { echo "---- job output ($f)"; cat "$f"; }; done
  echo "---- slurmctld.log tail"; tail -30 "$ROOT/log/slurmctld.log"
else
  for f in "$JO" "$ROOT/out/crash.out" "$ROOT/out/tl.out"; do
    [ -f "$f" ] && { echo "---- $f: the script's lines, signals and resume decisions"; grep -E '^\[sbatch|resuming from|received SIG|TIME LIMIT|exited on signal' "$f"; }
  done
fi
exit 0   # the EXIT trap decides the final status from FAILS
