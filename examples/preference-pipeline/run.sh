#!/usr/bin/env bash
# The preference pipeline of issue 16, with one command, on real human ratings (the VADER tweets):
#   (a) preference pairs from the ratings         scripts/vader_pairs.py
#   (b) a reward model from all-MiniLM-L6-v2      train --task reward, then eval (pairwise test accuracy)
#   (c) a small GPT-2 pre-trained from scratch    train --init-from-config (the SFT policy)
#   (d) DPO of the SFT policy on the pairs        train --task dpo
#   (e) samples of both policies, their rewards and the DPO policy's KL to its reference   sample_and_score.py
#   (f) GRPO of the SFT policy against the reward model (on-line RL)  train --task grpo, then step (e) again with
#       the GRPO policy beside SFT and DPO (set GRPO=0 to skip it)
# Usage: examples/preference-pipeline/run.sh [OUTPUT_FOLDER]       (default runs/preference-pipeline)
# Environment: DISTTRAIN (default: disttrain on PATH, else .build/release/disttrain), RANKS (default 2: training runs
# under `mpirun -n RANKS --bind-to none`; 1 = no mpirun), PAIRS (training pairs kept, default 2000), GRPO (default 1:
# run step (f); 0: stop after (e) as before).
# Needs models/all-MiniLM-L6-v2 (./launch.sh fetch-model) and python3 (standard library only). Reads only the
# repository's own data (data/vader-tweets).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/preference-pipeline}
RANKS=${RANKS:-2}
PAIRS=${PAIRS:-2000}
GRPO=${GRPO:-1}
if [ -z "${DISTTRAIN:-}" ]; then
    if command -v disttrain >/dev/null; then DISTTRAIN=disttrain; else DISTTRAIN=.build/release/disttrain; fi
fi
[ -x "$(command -v "$DISTTRAIN")" ] || { echo "error: $DISTTRAIN not found; build it (swift build -c release) or set DISTTRAIN" >&2; exit 2; }
[ -f models/all-MiniLM-L6-v2/model.safetensors ] || { echo "error: models/all-MiniLM-L6-v2 is missing; run ./launch.sh fetch-model" >&2; exit 2; }
LAUNCH=()
[ "$RANKS" -gt 1 ] && LAUNCH=(mpirun -n "$RANKS" --bind-to none)
mkdir -p "$OUT"
LOG="$OUT/pipeline.log"
: > "$LOG"
start=$(date +%s)
step() {  # step NAME COMMAND...: runs it, its output appended to the log, and prints its wall time
    local name=$1; shift
    local t0; t0=$(date +%s)
    echo "== $name: $*" >> "$LOG"
    "$@" >> "$LOG" 2>&1 || { echo "error: step $name failed; see $LOG" >&2; tail -5 "$LOG" >&2; exit 1; }
    echo "$name: $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
}
D="$OUT/data"
step "(a) pairs" python3 scripts/vader_pairs.py "$D" --max-pairs "$PAIRS"
step "(b) reward model" "${LAUNCH[@]}" "$DISTTRAIN" train --config examples/preference-pipeline/reward.yaml \
    --train-file "$D/pairs-train.jsonl" --eval-file "$D/pairs-test.jsonl" --output-dir "$OUT/reward" --overwrite-output-dir --no-report
"$DISTTRAIN" eval --model "$OUT/reward" --eval-file "$D/pairs-test.jsonl" --max-length 64 > "$OUT/reward-eval.json" 2>> "$LOG"
step "(c) SFT policy from scratch" "${LAUNCH[@]}" "$DISTTRAIN" train --config examples/preference-pipeline/train.yaml \
    --output-dir "$OUT/sft" --overwrite-output-dir --no-report
step "(d) DPO" "${LAUNCH[@]}" "$DISTTRAIN" train --config examples/preference-pipeline/dpo.yaml --model "$OUT/sft" \
    --train-file "$D/pairs-train.jsonl" --eval-file "$D/pairs-test.jsonl" --output-dir "$OUT/dpo" \
    --precompute-ref-log-probs true --overwrite-output-dir --no-report
if [ "$GRPO" = 1 ]; then
    # The GRPO prompts: the prompt of every training pair (the openers DPO saw, as often as it saw them).
    python3 -c 'import json,sys
for l in open(sys.argv[1], encoding="utf-8"):
    if l.strip(): print(json.dumps({"prompt": json.loads(l)["prompt"]}, ensure_ascii=False))' "$D/pairs-train.jsonl" > "$D/grpo-prompts.jsonl"
    step "(f) GRPO" "${LAUNCH[@]}" "$DISTTRAIN" train --config examples/preference-pipeline/grpo.yaml --model "$OUT/sft" \
        --reward-model "$OUT/reward" --train-file "$D/grpo-prompts.jsonl" --output-dir "$OUT/grpo" --overwrite-output-dir
fi
step "(e) sample and score" python3 examples/preference-pipeline/sample_and_score.py --out "$OUT" --disttrain "$DISTTRAIN"

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rm = json.loads(open(f"{out}/reward-eval.json").read().strip().splitlines()[-1])
sft = json.loads(open(f"{out}/sft/eval_results.json").read())
dpo = json.loads(open(f"{out}/dpo/eval_results.json").read())
s = json.load(open(f"{out}/summary-samples.json"))
print(f"reward model: pairwise accuracy {rm['eval_accuracy']:.3f} on {int(rm['eval_samples'])} test pairs (chance 0.5)")
print(f"SFT policy: held-out tweet loss {sft['eval_loss']:.3f} (perplexity {sft['eval_perplexity']:.0f})")
print(f"DPO: test rewards/accuracies {dpo.get('eval_rewards/accuracies', float('nan')):.3f}, margins {dpo.get('eval_rewards/margins', float('nan')):.3f}")
for k in ("sft", "dpo"):
    r = s["mean_reward"][k]
    print(f"mean reward of {k.upper()} samples: {r['mean']:.3f} ± {r['std_over_seeds']:.3f} over seeds {s['seeds']}")
print(f"KL(DPO || SFT reference): {s['kl_dpo_to_ref']:.3f} nats per completion ({s['samples_per_policy']} samples)")
if "grpo" in s["mean_reward"]:
    m = [json.loads(l) for l in open(f"{out}/grpo/metrics.jsonl") if '"reward"' in l]
    k = min(5, len(m) // 2) or 1
    first, last = sum(r["reward"] for r in m[:k]) / k, sum(r["reward"] for r in m[-k:]) / k
    gen = sum(r["time/generation_s"] for r in m); upd = sum(r["time/update_s"] + r["optimizer_s"] for r in m); rw = sum(r["time/reward_s"] for r in m)
    print(f"GRPO: on-line mean reward of fresh samples {first:.3f} (steps 1-{k}) -> {last:.3f} (last {k} of {len(m)} steps); "
          f"k3 KL per token at the end {m[-1].get('kl', float('nan')):.4f}; time in generation {gen:.0f} s, reward model {rw:.0f} s, update {upd:.0f} s")
    print(f"KL(GRPO || SFT reference): {s['kl_grpo_to_ref']:.3f} nats per completion")
    for f in s.get("grpo_frontier", []):
        print(f"  GRPO checkpoint {f['step']:>3}: mean reward {f['reward']:.3f} ± {f['reward_std_over_seeds']:.3f}, KL {f['kl']:.3f}")
    if "grpo_at_dpo_kl" in s:
        g = s["grpo_at_dpo_kl"]
        print(f"at similar KL: DPO {s['mean_reward']['dpo']['mean']:.3f} at KL {s['kl_dpo_to_ref']:.3f} vs "
              f"GRPO step {g['step']} {g['reward']:.3f} at KL {g['kl']:.3f}")
PY
echo "total wall: $(( $(date +%s) - start )) s (log: $LOG)"
