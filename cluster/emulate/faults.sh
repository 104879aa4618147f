#!/usr/bin/env bash
# faults.sh - node failures on the emulated cluster, and resuming on fewer nodes. Root; about 1.5 minutes with a
# debug build. Not part of `swift test` (Tests/CLITests/MultiNodeTests.swift covers the first case in CI).
#
# A tiny BERT classifier (Tests/ModelTests/Fixtures/bert-tiny-cls) trains 20 steps on 2 nodes × 2 ranks with a
# checkpoint every 2 steps; once checkpoint-6 exists node1 fails in one of three ways:
#   ranks  every disttrain rank of node1 is killed (SIGKILL): mpirun names the rank and node1 at once;
#   node   every process of node1, its OpenMPI daemon included (the machine is gone): "lost communication with a
#          remote daemon ... node1";
#   link   node1's eth0 goes down (a partition; its processes live on): the same message once the keepalives of
#          mpirun's idle connection to node1 run out (run.sh sets them to ~25 s), or the watchdog
#          (--watchdog-timeout 60) if that came first;
# then checks that the job failed within 60 s naming node1, that the same command on 1 node × 2 ranks resumes from a
# checkpoint of the failed run and ends with the final weights of an uninterrupted 1-process run (within 1e-5).
# Prints PASS/FAIL lines; exits 0 only if every check passed. DISTTRAIN_BIN overrides the binary.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUN=$HERE/run.sh
BIN=${DISTTRAIN_BIN:-}
[ -n "$BIN" ] || for c in "$REPO/.build/debug/disttrain" "$REPO/.build/release/disttrain"; do [ -x "$c" ] && { BIN=$c; break; }; done
[ -x "$BIN" ] || { echo "disttrain not built: swift build (or set DISTTRAIN_BIN)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "faults.sh needs root"; exit 2; }
command -v python3 >/dev/null || { echo "python3 is needed to compare the weights"; exit 2; }
W=$(mktemp -d /tmp/disttrain-emulate-faults.XXXXXX)
trap 'rm -rf "$W"' EXIT
FAILS=0
ok() { echo "PASS: $*"; }
bad() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

F=$REPO/Tests/ModelTests/Fixtures/bert-tiny-cls
mkdir -p "$W/model"
cp "$F"/{model.safetensors,vocab.txt,tokenizer_config.json,special_tokens_map.json,config.json} "$W/model/"
head -44 "$REPO/data/sms-spam/train.jsonl" > "$W/train.jsonl"
args() { echo train --model "$W/model" --train-file "$W/train.jsonl" --output-dir "$W/$1" --batch-size 8 --max-steps 20 \
    --logging-steps 1 --learning-rate 1e-3 --weight-decay 0.01 --warmup-steps 2 --max-length 24 --seed 5 --threads 1 \
    --save-steps 2 --step-delay-ms 300 --watchdog-timeout 60; }
# shellcheck disable=SC2046
"$BIN" $(args reference) > "$W/reference.log" 2>&1 || { cat "$W/reference.log"; echo "the reference run failed"; exit 1; }

maxdiff() {   # maxdiff A.safetensors B.safetensors: largest absolute difference over every tensor
    python3 - "$1" "$2" <<'PY'
import array, json, struct, sys
def load(p):
    d = open(p, "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]; x = array.array("f"); x.frombytes(d[8 + n + a:8 + n + b]); out[k] = x
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
print(max(max((abs(x - y) for x, y in zip(a[k], b[k])), default=0) if k in b and len(b[k]) == len(a[k]) else float("inf") for k in a))
PY
}

for mode in ranks node link; do
    out=$W/$mode
    # shellcheck disable=SC2046
    "$RUN" --nodes 2 --ranks-per-node 2 -- "$BIN" $(args "$mode") > "$W/$mode.log" 2>&1 &
    runpid=$!
    while kill -0 $runpid 2>/dev/null && [ ! -f "$out/checkpoint-6/manifest.json" ]; do sleep 0.1; done
    id=$(grep -l "^$runpid\$" /run/disttrain-emulate/*/pid 2>/dev/null | head -1 | xargs -r dirname | xargs -r basename)
    ns=dtemu-$id-n1
    IDS="${IDS:-} $id"
    if [ -z "$id" ] || ! ip netns list | grep -q "^$ns"; then bad "$mode: the job's node1 not found"; wait $runpid; continue; fi
    t0=$(date +%s)
    case $mode in
        # By argv[0] (the binary's own name; /proc/PID/comm would do too since the OPENBLAS_CORETYPE re-exec runs
        # the real path, but argv[0] does not depend on it).
        ranks) for p in $(ip netns pids "$ns"); do
                   case "$(tr '\0' '\n' < /proc/$p/cmdline 2>/dev/null | head -1)" in */disttrain|disttrain) kill -9 "$p" ;; esac
               done ;;
        node)  kill -9 $(ip netns pids "$ns") 2>/dev/null ;;
        link)  ip -n "$ns" link set eth0 down ;;
    esac
    wait $runpid; rc=$?; took=$(( $(date +%s) - t0 ))
    echo "--- $mode: exit $rc after ${took} s; what the job said:"
    grep -E "on node node1|Remote daemon|watchdog" "$W/$mode.log" | head -4
    check "$mode: the job failed (exit $rc) within 60 s (${took} s) naming node1" \
        sh -c "[ $rc != 0 ] && [ $took -le 60 ] && grep -q -E 'on node node1 exited|Remote daemon: .* on node node1' '$W/$mode.log'"
    check "$mode: the failed run did not finish" [ ! -f "$out/model.safetensors" ]
    # shellcheck disable=SC2046
    "$RUN" --nodes 1 --ranks-per-node 2 -- "$BIN" $(args "$mode") > "$W/$mode-resume.log" 2>&1; rc=$?
    from=$(grep -o 'resuming from checkpoint-[0-9]* (step [0-9]*, saved with 4 rank(s), now 2)' "$W/$mode-resume.log")
    check "$mode: 1 node × 2 ranks resumed ($from) and finished (exit $rc)" sh -c "[ $rc = 0 ] && [ -n '$from' ]"
    d=$(maxdiff "$W/reference/model.safetensors" "$out/model.safetensors" 2>&1)
    check "$mode: final weights = the uninterrupted 1-process run's within 1e-5 (max difference $d)" \
        python3 -c "import sys; sys.exit(0 if float('$d') < 1e-5 else 1)"
done
left=""
for id in ${IDS:-}; do ip netns list | grep -q "^dtemu-$id-" && left="$left $id"; [ -d "/run/disttrain-emulate/$id" ] && left="$left $id"; done
check "nothing left behind by the failed runs (invocations${IDS:-}): ${left:-none}" [ -z "$left" ]
echo "$FAILS failure(s)"
[ "$FAILS" = 0 ]
