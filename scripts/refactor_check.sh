#!/usr/bin/env bash
# refactor_check.sh: shows that a change to the trainer changed no result. Runs the same training scenarios with two
# builds of `disttrain` and compares what they wrote: every *.safetensors of the output folder and of its last
# checkpoint must be byte-identical (cmp), and metrics.jsonl / eval_results.json equal except the timing fields.
#
#   scripts/refactor_check.sh run BIN OUT      # run every scenario with the binary BIN into OUT/<scenario>
#   scripts/refactor_check.sh compare REF NEW  # compare two such folders; exit 1 on any difference
#
# Typical use: build the old commit (swift build -c release) and `run` it into /tmp/ref, build the new one and `run`
# it into /tmp/new, then `compare /tmp/ref /tmp/new`. Needs mpirun (2 ranks, one node) and models/all-MiniLM-L6-v2.
# Scenarios (SMS spam: 30 steps of MiniLM, --save-steps 10, seed 42, 1 thread per rank):
#   sms-1p      one process
#   sms-2p      mpirun -n 2 (node-shared gradients, ZeRO-1 AdamW, the split save at the last step)
#   sms-resume  --max-steps 20, then the same command with --max-steps 30 (resumes from checkpoint-20)
#   sms-lora    --lora-r 8, one process
#   lm-2p       the tiny GPT-2 LM fixture on data/hamlet-lm/lm.jsonl, mpirun -n 2
#   es-1p       the tiny BERT fixture on SMS spam, evaluated every 3 steps, stopped early (patience 2)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl=self,vader,tcp

MINILM=models/all-MiniLM-L6-v2
SMS=(--train-file data/sms-spam/train.jsonl --eval-file data/sms-spam/test.jsonl --save-steps 10 --batch-size 32
     --learning-rate 1e-4 --warmup-ratio 0.1 --max-length 128 --seed 42 --threads 1 --no-report --log-level warning)

run() {
    local bin out
    bin=$(realpath "$1"); out=$2
    mkdir -p "$out"
    local mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none -n 2)
    rm -rf "$out"/{sms-1p,sms-2p,sms-resume,sms-lora,lm-2p,es-1p}
    echo "[refactor_check] sms-1p";     "$bin" train --model $MINILM "${SMS[@]}" --max-steps 30 --output-dir "$out/sms-1p" > /dev/null
    echo "[refactor_check] sms-2p";     "${mpi[@]}" "$bin" train --model $MINILM "${SMS[@]}" --max-steps 30 --output-dir "$out/sms-2p" > /dev/null
    echo "[refactor_check] sms-resume"; "$bin" train --model $MINILM "${SMS[@]}" --max-steps 20 --output-dir "$out/sms-resume" > /dev/null
    "$bin" train --model $MINILM "${SMS[@]}" --max-steps 30 --output-dir "$out/sms-resume" > /dev/null
    echo "[refactor_check] sms-lora";   "$bin" train --model $MINILM "${SMS[@]}" --max-steps 30 --lora-r 8 --output-dir "$out/sms-lora" > /dev/null
    echo "[refactor_check] lm-2p";      "${mpi[@]}" "$bin" train --model Tests/ModelTests/Fixtures/gpt2-tiny-lm \
        --train-file data/hamlet-lm/lm.jsonl --max-steps 12 --save-steps 5 --batch-size 8 --learning-rate 1e-3 \
        --max-length 32 --seed 42 --threads 1 --no-report --log-level warning --output-dir "$out/lm-2p" > /dev/null
    echo "[refactor_check] es-1p";      "$bin" train --model Tests/ModelTests/Fixtures/bert-tiny-cls \
        --train-file data/sms-spam/train.jsonl --eval-file data/sms-spam/test.jsonl --max-steps 60 --batch-size 16 \
        --learning-rate 3e-2 --max-length 32 --eval-steps 3 --early-stopping-patience 2 --threads 1 --no-report \
        --log-level warning --output-dir "$out/es-1p" > /dev/null
}

compare() {
    local ref=$1 new=$2 bad=0
    for s in sms-1p sms-2p sms-resume sms-lora lm-2p es-1p; do
        local last
        last=$(cd "$ref/$s" && ls -d checkpoint-* | sort -t- -k2 -n | tail -1)
        for f in $(cd "$ref/$s" && ls *.safetensors "$last"/*.safetensors); do
            if cmp -s "$ref/$s/$f" "$new/$s/$f"; then echo "same      $s/$f"; else echo "DIFFERENT $s/$f"; bad=1; fi
        done
        for f in metrics.jsonl eval_results.json; do
            [ -f "$ref/$s/$f" ] || continue
            if python3 - "$ref/$s/$f" "$new/$s/$f" <<'PY'
import json, sys
# Wall-clock figures (and whether a background save had finished before a log line) vary from run to run.
timing = {"elapsed_s", "tokens_per_s", "allreduce_s", "allreduce_bus_gbps", "optimizer_s", "launch_to_first_step_s",
          "checkpoint_write_s", "checkpoint_mb_per_s", "train_runtime_s", "train_tokens_per_s"}
def load(p):
    return [{k: v for k, v in json.loads(l).items() if k not in timing} for l in open(p) if l.strip()]
a, b = load(sys.argv[1]), load(sys.argv[2])
if a != b:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y: print(f"  line {i + 1}: {x} != {y}"); break
    if len(a) != len(b): print(f"  {len(a)} lines vs {len(b)}")
    sys.exit(1)
PY
            then echo "same      $s/$f (timing fields ignored)"; else echo "DIFFERENT $s/$f"; bad=1; fi
        done
    done
    [ $bad = 0 ] && echo "[refactor_check] identical" || { echo "[refactor_check] DIFFERENCES"; exit 1; }
}

case "${1:-}" in
    run) run "$2" "$3" ;;
    compare) compare "$2" "$3" ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
esac
