#!/usr/bin/env bash
# disttrain vs PyTorch side by side: the same training step at the same shapes and thread counts, in fresh processes,
# interleaved (PyTorch, disttrain, disttrain, PyTorch, ... : the order flips every round so that neither side always
# runs first), RUNS rounds, then one table of medians with the ratio disttrain/PyTorch per row. Not part of CI or
# `swift test`. The PyTorch side (bench/torch_step.py) runs in a venv made here: .venv-bench/ (git-ignored) with
# torch==2.13.0+cpu, transformers==5.23.* and accelerate (the Trainer needs it; pip's find-links holds the CPU wheel).
#   bench/vs_pytorch.sh                     (env: RUNS=3 STEPS=6 ROWS="..." QUICK=1 E2E=1 BIN=... VENV=...)
#   ROWS="minilm-1t minilm-2t"   pick rows (ids below);  QUICK=1: 1 round of 1 timed step, a smoke run
#   ROWS=none E2E=1              only the end-to-end pair
#   ROWS=none DPO=1              only the DPO pair: disttrain vs TRL's DPOTrainer (bench/trl_dpo.py), the preference
#                                pipeline's step (d), DPO_STEPS steps (needs examples/preference-pipeline/run.sh's output)
#   E2E=1                        also the end-to-end pair: Hugging Face Trainer vs `disttrain train` on SMS spam
#                                (E2E_MODES="1p-on 1p-off 2r-on 2r-off": 1 process / 2 ranks, group by length on/off)
# Rows (id: disttrain command | PyTorch):
#   minilm-1t, minilm-2t         MiniLM 32x128 fp32, 1 / 2 threads: `bench --data-parallel` | BertForSequenceClassification
#   minilm-1t-bf16, minilm-2t-bf16   the same with --bf16 | torch.autocast("cpu", dtype=torch.bfloat16)
#   bert-base-2t, bert-base-2t-bf16  BERT-base (bench/configs/bert-base.json) 8x128, 2 threads
#   gpt2-6x384-2t[-bf16], gpt2-12x768-2t[-bf16]   GPT-2 16x128, 2 threads: `generate --bench` | GPT2LMHeadModel
#   bert-base-s256-2t, bert-base-s512-2t   long sequences, BERT-base 4x256 / 2x512, 2 threads (time and peak RSS)
#   gpt2-12x768-s512-2t, gpt2-12x768-s1024-2t   GPT-2 12x768 2x512 / 1x1024, 2 threads, no optimizer (PyTorch: sdpa)
#   minilm-2r                    2 ranks x 1 thread, 16x128 per rank: `mpirun -n 2 --bind-to core bench` | DDP over gloo
#                                (torch.multiprocessing, each rank pinned to one core)
# What is matched: the shape (config), batch, sequence, thread count (torch.set_num_threads, OMP/MKL_NUM_THREADS),
#   random token ids with a full attention mask, dropout 0.1 on (train mode), the loss (cross-entropy over 2 labels,
#   mean over the batch; GPT-2: the shifted LM loss, mean over tokens, tied head), a step of zero grads + forward +
#   loss + backward + clip to norm 1 + AdamW (lr 1e-5, weight decay 0.01) for the encoder rows (disttrain: the
#   trainer's own step, `bench --data-parallel`, also in one process), warm-up steps excluded (2; GPT-2 1), and the
#   statistic: tokens/s = batch x seq x ranks / median step time (torch_step.py also prints batch x seq x steps / total).
# What is not matched: disttrain's AdamW skips weight decay on biases and LayerNorm (PyTorch's plain AdamW decays
#   all: same cost); PyTorch uses its default attention (sdpa) and the for-loop AdamW; disttrain's bf16 is the Linear
#   products in bf16 (AVX512-BF16), PyTorch's autocast also runs attention matmuls and whatever else autocast lists
#   in bf16; disttrain's 2-rank step reduces in node-shared memory with ZeRO-1, DDP all-reduces buckets over gloo.
#   GPT-2 rows: `disttrain generate --bench` times forward + LM loss + backward with NO optimizer, so the PyTorch
#   side runs --optim none there (the 12x768 shape: --bench-config bench/configs/gpt2-12x768.json; bf16: --bf16).
set -euo pipefail
cd "$(dirname "$0")/.."
ALL_ROWS="minilm-1t minilm-2t minilm-1t-bf16 minilm-2t-bf16 bert-base-2t bert-base-2t-bf16 gpt2-6x384-2t gpt2-6x384-2t-bf16 gpt2-12x768-2t gpt2-12x768-2t-bf16 minilm-2r bert-base-s256-2t bert-base-s512-2t gpt2-12x768-s512-2t gpt2-12x768-s1024-2t"
RUNS=${RUNS:-3}
STEPS=${STEPS:-6}
ROWS=${ROWS:-$ALL_ROWS}
QUICK=${QUICK:-0}
E2E=${E2E:-0}
DPO=${DPO:-0}
E2E_THREADS=${E2E_THREADS:-2}
VENV=${VENV:-.venv-bench}
if [ "$QUICK" = 1 ]; then RUNS=1; STEPS=1; fi
[ "$ROWS" = none ] && ROWS=""   # ROWS=none E2E=1: only the end-to-end pair
for r in $ROWS; do
    case " $ALL_ROWS " in *" $r "*) ;; *) echo "vs_pytorch.sh: unknown row '$r' in ROWS; rows: $ALL_ROWS" >&2; exit 2 ;; esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, transformers, accelerate" 2>/dev/null; then
    echo "making $VENV (torch==2.13.0+cpu, transformers==5.23.*, accelerate for the Trainer)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "torch==2.13.0+cpu" "transformers==5.23.*" "accelerate>=1.1.0"
fi
PY="$VENV/bin/python"
if [ -z "${BIN:-}" ]; then
    swift build -c release --product disttrain >/dev/null
    BIN=.build/release/disttrain
    DT_WHAT="disttrain $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Package.swift || echo '+local changes')"
else
    DT_WHAT="disttrain binary $BIN (BIN=, not built here)"
fi
[ -x "$BIN" ] || { echo "vs_pytorch.sh: no disttrain binary at $BIN" >&2; exit 1; }
if [ -n "$(echo "$ROWS" | grep -o bf16 || true)" ] && ! grep -q avx512_bf16 /proc/cpuinfo; then
    echo "vs_pytorch.sh: this CPU lacks AVX512-BF16 (disttrain --bf16 needs it): drop the -bf16 rows from ROWS" >&2; exit 2
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# row id -> LABEL, DT (disttrain argv after the binary, or empty for n/a), DT_MPI (1: under mpirun -n 2),
#           PT (torch_step.py arguments), THREADS
row() {
    local id=$1 prec=fp32 bf=() b
    case $id in *-bf16) prec=bf16; bf=(--bf16) ;; esac
    DT_MPI=0
    case $id in
        minilm-1t*|minilm-2t*)
            THREADS=${id:7:1}
            LABEL="MiniLM 32x128 $prec, $THREADS thread(s), step with AdamW"
            DT=(bench --data-parallel "${bf[@]}" --threads "$THREADS" --batch-size 32 --seq-len 128 --steps "$STEPS")
            PT=(--model minilm --batch 32 --seq 128 --warmup 2 --optim adamw) ;;
        bert-base-s*)
            THREADS=2; b=${id#bert-base-s}; b=${b%%-*}; local n=$((1024 / b))
            LABEL="BERT-base ${n}x$b $prec, 2 threads, step with AdamW (long sequence)"
            DT=(bench --data-parallel "${bf[@]}" --config bench/configs/bert-base.json --threads 2 --batch-size "$n" --seq-len "$b" --steps "$STEPS")
            PT=(--model bert-base --batch "$n" --seq "$b" --warmup 2 --optim adamw) ;;
        gpt2-12x768-s*)
            THREADS=2; b=${id#gpt2-12x768-s}; b=${b%%-*}; local n=$((1024 / b))
            LABEL="GPT-2 12x768 ${n}x$b $prec, 2 threads, step without optimizer (long sequence)"
            DT=(generate --bench --no-generation-bench --bench-config bench/configs/gpt2-12x768.json --bench-batch "$n" --bench-seq "$b" "${bf[@]}" --threads 2 --bench-steps "$STEPS")
            PT=(--model gpt2-12x768 --batch "$n" --seq "$b" --warmup 1 --optim none) ;;
        bert-base-2t*)
            THREADS=2
            LABEL="BERT-base 8x128 $prec, 2 threads, step with AdamW"
            DT=(bench --data-parallel "${bf[@]}" --config bench/configs/bert-base.json --threads 2 --batch-size 8 --seq-len 128 --steps "$STEPS")
            PT=(--model bert-base --batch 8 --seq 128 --warmup 2 --optim adamw) ;;
        gpt2-6x384-2t*|gpt2-12x768-2t*)
            THREADS=2; b=${id%-2t*}
            LABEL="GPT-2 ${b#gpt2-} 16x128 $prec, 2 threads, step without optimizer"
            DT=(generate --bench --no-generation-bench "${bf[@]}" --threads 2 --bench-steps "$STEPS")
            [ "$b" = gpt2-12x768 ] && DT+=(--bench-config bench/configs/gpt2-12x768.json)
            PT=(--model "$b" --batch 16 --seq 128 --warmup 1 --optim none) ;;
        minilm-2r)
            THREADS=1; DT_MPI=1
            LABEL="MiniLM 16x128/rank fp32, 2 ranks x 1 thread vs DDP gloo"
            DT=(bench --threads 1 --batch-size 16 --seq-len 128 --steps "$STEPS")
            PT=(--model minilm --batch 16 --seq 128 --warmup 2 --optim adamw --ranks 2) ;;
    esac
    PT+=(--threads "$THREADS" --steps "$STEPS" --precision "$prec")
}

run_pt() {
    OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "$PY" bench/torch_step.py "${PT[@]}" 2>>"$tmp/stderr" | grep '^{' >> "$tmp/$1.pt" \
        || { echo "vs_pytorch.sh: PyTorch side of $1 failed (see below)" >&2; tail -5 "$tmp/stderr" >&2; exit 1; }
}
run_dt() {
    [ ${#DT[@]} -gt 0 ] || return 0
    local cmd=("$BIN" "${DT[@]}")
    [ "$DT_MPI" = 1 ] && cmd=(mpirun -n 2 --bind-to core "${cmd[@]}")
    "${cmd[@]}" 2>>"$tmp/stderr" | grep '"tokens_per_s"' >> "$tmp/$1.dt" \
        || { echo "vs_pytorch.sh: disttrain side of $1 failed: ${cmd[*]}" >&2; tail -5 "$tmp/stderr" >&2; exit 1; }
}

if [ -n "$ROWS" ]; then
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "vs_pytorch: rows [$ROWS], $RUNS round(s) x $STEPS timed step(s), load $load_before" >&2
for round in $(seq "$RUNS"); do
    for id in $ROWS; do
        row "$id"
        echo "  [$round/$RUNS] $id" >&2
        if [ $((round % 2)) = 1 ]; then run_pt "$id"; run_dt "$id"; else run_dt "$id"; run_pt "$id"; fi
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
for id in $ROWS; do row "$id"; echo "$id	$LABEL"; done > "$tmp/labels"
echo
echo "$(date -u +%Y-%m-%dT%H:%MZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
     "$("$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)');" \
     "$DT_WHAT; load $load_before -> $load_after"
[ "$QUICK" = 1 ] && echo "QUICK=1: loaded machine, smoke run (1 timed step): these figures are not results"
"$PY" - "$tmp" "$RUNS" <<'PY'
import json, os, statistics, sys
tmp, runs = sys.argv[1], int(sys.argv[2])
def load(p): return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
med = lambda xs: statistics.median(xs) if xs else float("nan")
print(f"| row (medians of {runs}) | disttrain tokens/s | PyTorch tokens/s | disttrain / PyTorch | peak RSS MB disttrain / PyTorch | runs disttrain; PyTorch |")
print("|---|---:|---:|---:|---:|---|")
for line in open(f"{tmp}/labels"):
    rid, label = line.rstrip("\n").split("\t")
    dt, pt = load(f"{tmp}/{rid}.dt"), load(f"{tmp}/{rid}.pt")
    d, p = med([r["tokens_per_s"] for r in dt]), med([r["tokens_per_s"] for r in pt])
    rd, rp = med([r["peak_rss_mb"] for r in dt]), med([r["peak_rss_mb"] for r in pt])
    ratio = f"{d / p:.2f}x" if dt and pt else "n/a"
    ds = f"{d:,.0f}" if dt else "n/a (no knob)"
    print(f"| {label} | {ds} | {p:,.0f} | {ratio} | {rd:,.0f} / {rp:,.0f} | "
          f"{[round(r['tokens_per_s']) for r in dt]}; {[round(r['tokens_per_s']) for r in pt]} |")
PY
fi

if [ "$DPO" = 1 ]; then
# DPO end to end: whole-process wall and eval loss of `disttrain train` (examples/preference-pipeline/dpo.yaml) and
# TRL's DPOTrainer (bench/trl_dpo.py) at the same settings, one process with E2E_THREADS threads, DPO_STEPS steps
# (default 20) from the preference pipeline's SFT policy on its pairs (examples/preference-pipeline/run.sh makes
# them), reference log-probs precomputed, then the eval pairs. Different shuffles: losses agree only roughly.
DPO_MODEL=${DPO_MODEL:-runs/preference-pipeline/sft}
DPO_DATA=${DPO_DATA:-runs/preference-pipeline/data}
DPO_STEPS=${DPO_STEPS:-20}
[ "$QUICK" = 1 ] && DPO_STEPS=2
if [ ! -f "$DPO_MODEL/model.safetensors" ] || [ ! -f "$DPO_DATA/pairs-train.jsonl" ]; then
    echo "vs_pytorch.sh: DPO=1 needs an SFT policy and pairs: run examples/preference-pipeline/run.sh (or give DPO_MODEL=, DPO_DATA=)" >&2
    exit 1
fi
"$PY" -c "import trl" 2>/dev/null || "$VENV/bin/pip" install -q "trl==1.16.0"
dpo_record() {  # $1 = output file, $2 = start time; reads $tmp/dpo.json
    python3 -c 'import json,sys,time; d=json.load(open(sys.argv[1])); print(json.dumps({"wall_s": time.time() - float(sys.argv[2]), "eval_loss": d["eval_loss"]}))' \
        "$tmp/dpo.json" "$2" >> "$1"
}
dpo_dt() {
    local t0; t0=$(date +%s.%N)
    "$BIN" train --config examples/preference-pipeline/dpo.yaml --model "$DPO_MODEL" --train-file "$DPO_DATA/pairs-train.jsonl" \
        --eval-file "$DPO_DATA/pairs-test.jsonl" --output-dir "$tmp/dpo-run" --precompute-ref-log-probs true \
        --max-steps "$DPO_STEPS" --threads "$E2E_THREADS" --resume never --no-report --log-level warning 2>>"$tmp/stderr" \
        | grep '"eval_loss"' | tail -1 > "$tmp/dpo.json" \
        || { echo "vs_pytorch.sh: disttrain DPO failed" >&2; tail -5 "$tmp/stderr" >&2; exit 1; }
    dpo_record "$tmp/dpo-dt" "$t0"; rm -rf "$tmp/dpo-run"
}
dpo_trl() {
    local t0; t0=$(date +%s.%N)
    OMP_NUM_THREADS=$E2E_THREADS MKL_NUM_THREADS=$E2E_THREADS "$PY" bench/trl_dpo.py --model "$DPO_MODEL" --data "$DPO_DATA" \
        --threads "$E2E_THREADS" --max-steps "$DPO_STEPS" 2>>"$tmp/stderr" | grep '^{' | tail -1 > "$tmp/dpo.json" \
        || { echo "vs_pytorch.sh: TRL DPO failed" >&2; tail -5 "$tmp/stderr" >&2; exit 1; }
    dpo_record "$tmp/dpo-trl" "$t0"
}
echo "vs_pytorch: DPO, $RUNS round(s) of $DPO_STEPS steps, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$RUNS"); do
    echo "  [$round/$RUNS] DPO" >&2
    if [ $((round % 2)) = 1 ]; then dpo_trl; dpo_dt; else dpo_dt; dpo_trl; fi
done
echo
[ "$QUICK" = 1 ] && echo "QUICK=1: 2 steps only, smoke run: not results"
"$PY" - "$tmp" "$RUNS" "$E2E_THREADS" "$DPO_STEPS" "$DPO_MODEL" "$DPO_DATA" <<'PY'
import json, statistics, sys
tmp, runs, threads, steps, model, data = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
pairs = sum(1 for l in open(f"{data}/pairs-train.jsonl") if l.strip())
d = [json.loads(l) for l in open(f"{tmp}/dpo-dt")]; t = [json.loads(l) for l in open(f"{tmp}/dpo-trl")]
med = statistics.median
dw, tw = med([r["wall_s"] for r in d]), med([r["wall_s"] for r in t])
print(f"| DPO, {steps} steps, 1 process x {threads} threads (medians of {runs}) | disttrain wall s | TRL wall s | disttrain / TRL | eval loss disttrain / TRL | runs |")
print("|---|---:|---:|---:|---|---|")
print(f"| {model}, {pairs:,} pairs of {data}, reference precomputed | {dw:.1f} | {tw:.1f} | {dw / tw:.2f}x | "
      f"{med([r['eval_loss'] for r in d]):.4f} / {med([r['eval_loss'] for r in t]):.4f} | "
      f"{[round(r['wall_s'], 1) for r in d]}; {[round(r['wall_s'], 1) for r in t]} |")
PY
fi

[ "$E2E" = 1 ] || exit 0
# End to end: whole-process wall (launch to exit, tokenisation, model load and the final test evaluation included)
# and test accuracy, SMS spam, all-MiniLM-L6-v2, the README's settings (global batch 32), with and without grouping by
# length (Trainer: train_sampling_strategy="group_by_length"; disttrain groups by default, --no-group-by-length turns
# it off), in one process with E2E_THREADS threads and as 2 ranks x 1 thread (`mpirun -n 2 --bind-to core` vs
# `torchrun --standalone --nproc-per-node 2`, gloo, 16 per rank). QUICK=1 stops both after 3 optimizer steps.
[ -f models/all-MiniLM-L6-v2/model.safetensors ] || { echo "vs_pytorch.sh: E2E needs models/all-MiniLM-L6-v2 (./launch.sh demo fetches it)" >&2; exit 1; }
MAXSTEPS=()
[ "$QUICK" = 1 ] && MAXSTEPS=(--max-steps 3)
E2E_MODES=${E2E_MODES:-"1p-on 1p-off 2r-on 2r-off"}
record() {  # $1 = output file, $2 = start time; reads $tmp/e2e.json
    python3 -c 'import json,sys,time; d=json.load(open(sys.argv[1])); print(json.dumps({"wall_s": time.time() - float(sys.argv[2]), "eval_accuracy": d["eval_accuracy"]}))' \
        "$tmp/e2e.json" "$2" >> "$1"
}
e2e_dt() {  # $1 = mode: 1p|2r-on|off
    local g=() launch=("$BIN") threads=$E2E_THREADS t0
    case $1 in *-off) g=(--no-group-by-length) ;; esac
    case $1 in 2r-*) launch=(mpirun -n 2 --bind-to core "$BIN"); threads=1 ;; esac
    t0=$(date +%s.%N)
    "${launch[@]}" train --model models/all-MiniLM-L6-v2 --train-file data/sms-spam/train.jsonl --eval-file data/sms-spam/test.jsonl \
        --output-dir "$tmp/dt-run" --num-train-epochs 1 --batch-size 32 --learning-rate 1e-4 --warmup-ratio 0.1 --seed 42 \
        --max-length 128 --threads "$threads" --resume never --no-report --log-level warning "${g[@]}" "${MAXSTEPS[@]}" \
        2>>"$tmp/stderr" | grep '"eval_accuracy"' | tail -1 > "$tmp/e2e.json" \
        || { echo "vs_pytorch.sh: disttrain train ($1) failed" >&2; tail -5 "$tmp/stderr" >&2; exit 1; }
    record "$tmp/e2e-dt-$1" "$t0"; rm -rf "$tmp/dt-run"
}
e2e_hf() {
    local g=() launch=("$PY") threads=$E2E_THREADS t0
    case $1 in *-on) g=(--group-by-length) ;; esac
    case $1 in 2r-*) launch=("$VENV/bin/torchrun" --standalone --nproc-per-node 2); threads=1 ;; esac
    t0=$(date +%s.%N)
    OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads "${launch[@]}" bench/hf_train.py --threads "$threads" "${g[@]}" "${MAXSTEPS[@]}" \
        2>>"$tmp/stderr" | grep '^{' | tail -1 > "$tmp/e2e.json" \
        || { echo "vs_pytorch.sh: Hugging Face Trainer run ($1) failed" >&2; tail -5 "$tmp/stderr" >&2; exit 1; }
    record "$tmp/e2e-hf-$1" "$t0"
}
echo "vs_pytorch: end to end [$E2E_MODES], $RUNS round(s), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$RUNS"); do
    for m in $E2E_MODES; do
        echo "  [$round/$RUNS] SMS spam $m" >&2
        if [ $((round % 2)) = 1 ]; then e2e_hf "$m"; e2e_dt "$m"; else e2e_dt "$m"; e2e_hf "$m"; fi
    done
done
echo
[ "$QUICK" = 1 ] && echo "QUICK=1: 3 optimizer steps only, loaded machine, smoke run: not results"
"$PY" - "$tmp" "$RUNS" "$E2E_THREADS" $E2E_MODES <<'PY'
import json, statistics, sys
tmp, runs, threads, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def load(p): return [json.loads(l) for l in open(p)]
med = statistics.median
print(f"| SMS spam, 1 epoch (medians of {runs}) | disttrain wall s | Trainer wall s | disttrain / Trainer | accuracy disttrain / Trainer |")
print("|---|---:|---:|---:|---|")
for m in modes:
    d, h = load(f"{tmp}/e2e-dt-{m}"), load(f"{tmp}/e2e-hf-{m}")
    dw, hw = med([r["wall_s"] for r in d]), med([r["wall_s"] for r in h])
    how = f"1 process x {threads} threads" if m.startswith("1p") else "2 ranks x 1 thread"
    print(f"| {how}, group by length {m.split('-')[1]} | {dw:.1f} | {hw:.1f} | {dw / hw:.2f}x | "
          f"{med([r['eval_accuracy'] for r in d]):.4f} / {med([r['eval_accuracy'] for r in h]):.4f} |")
PY
