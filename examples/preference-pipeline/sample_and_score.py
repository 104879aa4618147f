#!/usr/bin/env python3
"""Step (e) of the preference pipeline: sample completions from the SFT and the DPO policy with the same prompts and
seeds (`disttrain generate`), score them with the reward model (`disttrain predict`), and estimate the KL divergence of
the DPO policy from its reference (the SFT policy) with `disttrain eval`. Standard library only; every number comes from
a disttrain command.

Sampling: plain ancestral sampling (temperature 1, no top-k/top-p), so the samples follow each policy's own
distribution, stopping at <|endoftext|> or after --max-new-tokens. Sample k of prompt p uses --seed k for both
policies.

Reward: the reward model scores prompt + completion as one text (`predict`, {"reward": x} per line). We report, per
policy, the mean reward of each seed's samples (over the prompts) and the mean and standard deviation of those
per-seed means.

KL(π ‖ π_ref) = E_{y~π}[log π(y|x) − log π_ref(y|x)] for each policy π other than SFT (DPO, GRPO and each GRPO
checkpoint, whose reference is the SFT policy), estimated by Monte Carlo over π's own samples: the samples go into a {"prompt", "response"} file, and `disttrain eval` on it reports, for each model, the mean negative
log-likelihood of the response tokens (`eval_loss`) and their count (`eval_tokens`), so the summed log-probability of
all samples is −eval_loss·eval_tokens, and
    KL ≈ (eval_tokens / n_samples) · (eval_loss_ref − eval_loss_π).
The GRPO checkpoints (grpo/checkpoint-N, every save-steps) give the reward/KL frontier of the on-line run; the
checkpoint whose KL is closest to DPO's is the like-for-like comparison ("at similar KL").
Caveats, kept honest: `eval` re-tokenizes the decoded completion (byte-level BPE almost always gives back the
sampled ids; we count the samples where it would not be guaranteed — none are dropped) and appends <|endoftext|> to
every response, so a sample cut at --max-new-tokens is scored with a final <|endoftext|> it did not sample (we report
how many were cut); the estimate is unbiased for samples that ended at <|endoftext|>.

  python3 examples/preference-pipeline/sample_and_score.py --out runs/preference-pipeline [--disttrain PATH]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

EOS_TEXT = "<|endoftext|>"


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"sample_and_score.py: `{' '.join(cmd)}` failed ({r.returncode}):\n{r.stderr.strip()}")
    return r.stdout


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(f"sample_and_score.py: no JSON line in:\n{text}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/preference-pipeline", help="the pipeline's folder (sft/, dpo/, reward/, data/)")
    ap.add_argument("--disttrain", default=os.environ.get("DISTTRAIN", "disttrain"))
    ap.add_argument("--prompts", type=int, default=16, help="the first N prompts of data/prompts.txt")
    ap.add_argument("--seeds", default="1,2,3", help="sampling seeds (one sample per prompt and seed)")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--no-grpo-checkpoints", dest="grpo_checkpoints", action="store_false",
                    help="score only the final GRPO policy, not each of its checkpoints")
    a = ap.parse_args()
    dt, out = a.disttrain, a.out
    seeds = [int(s) for s in a.seeds.split(",")]
    with open(os.path.join(out, "data", "prompts.txt"), encoding="utf-8") as f:
        prompts = [l.rstrip("\n") for l in f if l.strip()][: a.prompts]
    policies = {"sft": os.path.join(out, "sft")}
    if os.path.isfile(os.path.join(out, "dpo", "model.safetensors")):
        policies["dpo"] = os.path.join(out, "dpo")
    if os.path.isfile(os.path.join(out, "grpo", "model.safetensors")):
        policies["grpo"] = os.path.join(out, "grpo")   # step (f), when run.sh ran it

    # Step (f)'s checkpoints (grpo/checkpoint-N): each sampled and scored as a policy of its own, so the GRPO run's
    # reward can be read at the KL DPO reached (the reward/KL frontier), not only at its last step.
    grpo_ckpts = []
    if a.grpo_checkpoints and "grpo" in policies:
        d = os.path.join(out, "grpo")
        for n in os.listdir(d):
            if n.startswith("checkpoint-") and n[len("checkpoint-"):].isdigit() and \
                    os.path.isfile(os.path.join(d, n, "model.safetensors")):
                grpo_ckpts.append(int(n[len("checkpoint-"):]))
        grpo_ckpts.sort()
        for step in grpo_ckpts:
            policies[f"grpo@{step}"] = os.path.join(d, f"checkpoint-{step}")

    samples, rewards, kls = {}, {}, {}
    for name, model in policies.items():
        rows = []
        for seed in seeds:
            for p in prompts:
                g = last_json(run([dt, "generate", "--model", model, "--prompt", p, "--max-new-tokens", str(a.max_new_tokens),
                                   "--temperature", "1", "--seed", str(seed), "--stop-at-eos", "--json"]))
                text = g["new_text"]
                ended = bool(g["new_ids"]) and g["new_ids"][-1] == 50256
                if text.endswith(EOS_TEXT):
                    text = text[: -len(EOS_TEXT)]
                rows.append({"prompt": p, "seed": seed, "completion": text, "ended_at_eos": ended})
        samples[name] = rows
        # Rewards: one predict call per policy over all its samples, in order.
        tag = name.replace("@", "-")
        texts = os.path.join(out, f"samples-{tag}.jsonl")
        with open(texts, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"text": r["prompt"] + r["completion"]}, ensure_ascii=False) + "\n")
        lines = [json.loads(l) for l in run([dt, "predict", "--model", os.path.join(out, "reward"), "--input", texts,
                                               "--max-length", "128"]).splitlines() if l.startswith("{")]
        if len(lines) != len(rows):
            sys.exit(f"sample_and_score.py: predict returned {len(lines)} rewards for {len(rows)} samples")
        for r, l in zip(rows, lines):
            r["reward"] = l["reward"]
        per_seed = [statistics.mean(r["reward"] for r in rows if r["seed"] == s) for s in seeds]
        rewards[name] = {"per_seed": per_seed, "mean": statistics.mean(per_seed),
                         "std_over_seeds": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0}
        with open(texts, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        if name != "sft":
            # KL of this policy to the reference (the SFT policy), Monte Carlo over this policy's own samples.
            kl_file = os.path.join(out, f"kl-samples-{tag}.jsonl")
            with open(kl_file, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps({"prompt": r["prompt"], "response": r["completion"]}, ensure_ascii=False) + "\n")
            ev = {k: last_json(run([dt, "eval", "--model", m, "--eval-file", kl_file]))
                  for k, m in (("sft", policies["sft"]), (name, model))}
            if ev[name]["eval_tokens"] != ev["sft"]["eval_tokens"]:
                sys.exit("sample_and_score.py: the two evals counted different tokens")
            kls[name] = {"kl": ev[name]["eval_tokens"] / len(rows) * (ev["sft"]["eval_loss"] - ev[name]["eval_loss"]),
                         "cut_at_max_new_tokens": sum(not r["ended_at_eos"] for r in rows), "eval": ev}

    summary = {"prompts": len(prompts), "seeds": seeds, "samples_per_policy": len(prompts) * len(seeds),
               "mean_reward": rewards, "kl_to_ref": kls}
    if "dpo" in kls:
        summary["kl_dpo_to_ref"] = kls["dpo"]["kl"]
    if "grpo" in kls:
        summary["kl_grpo_to_ref"] = kls["grpo"]["kl"]
    if grpo_ckpts:
        frontier = [{"step": s, "kl": kls[f"grpo@{s}"]["kl"], "reward": rewards[f"grpo@{s}"]["mean"],
                     "reward_std_over_seeds": rewards[f"grpo@{s}"]["std_over_seeds"]} for s in grpo_ckpts]
        summary["grpo_frontier"] = frontier
        if "dpo" in kls:
            # The GRPO checkpoint whose KL to the reference is closest to DPO's: the like-for-like comparison.
            summary["grpo_at_dpo_kl"] = min(frontier, key=lambda f: abs(f["kl"] - kls["dpo"]["kl"]))
    with open(os.path.join(out, "summary-samples.json"), "w") as f:
        json.dump(summary, f, indent=1)
    n = summary["samples_per_policy"]
    for name in policies:
        r = rewards[name]
        kl = f"; KL to SFT ≈ {kls[name]['kl']:.3f} nats per completion ({kls[name]['cut_at_max_new_tokens']} of {n} cut at {a.max_new_tokens} tokens)" if name in kls else ""
        print(f"mean reward of {name.upper()} samples: {r['mean']:.3f} ± {r['std_over_seeds']:.3f} over seeds "
              f"({', '.join(f'{x:.3f}' for x in r['per_seed'])}; {len(prompts)} prompts × {len(seeds)} seeds){kl}")
    if "grpo_at_dpo_kl" in summary:
        g, d = summary["grpo_at_dpo_kl"], kls["dpo"]["kl"]
        print(f"at similar KL: DPO {rewards['dpo']['mean']:.3f} (KL {d:.3f}) vs GRPO step {g['step']} {g['reward']:.3f} (KL {g['kl']:.3f})")


if __name__ == "__main__":
    main()
