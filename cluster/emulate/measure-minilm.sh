#!/bin/bash
# measure-minilm.sh - the measurement of docs/performance.md ("MiniLM training, ZeRO-1 across 2 nodes"); root, not part of
# `swift test`. Interleaved rounds of: 1 process, and 2 emulated nodes × 1 rank × 1 thread at 1 and 10 Gb/s, with
# float32 and bf16 gradient traffic (and, with BLOCKING_BIN=another build, that build at both rates).
# MiniLM on the first 960 SMS-spam training messages (30 steps of 32), eval on the first 200 test messages.
#   BIN=.build/release/disttrain ROUNDS=2 OUT=/tmp/minilm-runs cluster/emulate/measure-minilm.sh
# Each run's metrics.jsonl is in OUT/NAME; one summary line per run (wall time, load average) in OUT/summary.txt.
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/.build/release/disttrain}
OUT=${OUT:-/tmp/minilm-runs}
ROUNDS=${ROUNDS:-2}
MODEL=${MODEL:-$ROOT/models/all-MiniLM-L6-v2}
RUN=$ROOT/cluster/emulate/run.sh
mkdir -p "$OUT"
head -960 "$ROOT/data/sms-spam/train.jsonl" > "$OUT/train960.jsonl"
head -200 "$ROOT/data/sms-spam/test.jsonl" > "$OUT/test200.jsonl"
args() { echo train --model "$MODEL" --train-file "$OUT/train960.jsonl" --eval-file "$OUT/test200.jsonl" \
  --batch-size 32 --num-train-epochs 1 --learning-rate 5e-5 --max-length 128 --seed 42 --threads 1 --logging-steps 1 \
  --overwrite-output-dir --resume never --output-dir "$OUT/$1"; }
configs="single n2-1g n2-10g n2-1g-bf16 n2-10g-bf16"
[ -n "${BLOCKING_BIN:-}" ] && configs="$configs n2-1g-blk n2-10g-blk"
for round in $(seq 1 "$ROUNDS"); do
  for cfg in $configs; do
    name=$cfg-r$round
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    t0=$(date +%s.%N)
    case $cfg in
      single) "$BIN" $(args "$name") ;;
      n2-1g) "$RUN" --nodes 2 --ranks-per-node 1 --rate 1gbit -- "$BIN" $(args "$name") ;;
      n2-10g) "$RUN" --nodes 2 --ranks-per-node 1 --rate 10gbit -- "$BIN" $(args "$name") ;;
      n2-1g-bf16) "$RUN" --nodes 2 --ranks-per-node 1 --rate 1gbit -- "$BIN" $(args "$name") --grad-comm-dtype bf16 ;;
      n2-10g-bf16) "$RUN" --nodes 2 --ranks-per-node 1 --rate 10gbit -- "$BIN" $(args "$name") --grad-comm-dtype bf16 ;;
      n2-1g-blk) "$RUN" --nodes 2 --ranks-per-node 1 --rate 1gbit -- "$BLOCKING_BIN" $(args "$name") ;;
      n2-10g-blk) "$RUN" --nodes 2 --ranks-per-node 1 --rate 10gbit -- "$BLOCKING_BIN" $(args "$name") ;;
    esac > "$OUT/$name.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    echo "$name rc=$rc wall=$(echo "$t1 - $t0" | bc) load_before=$load load_after=$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/summary.txt"
  done
done
