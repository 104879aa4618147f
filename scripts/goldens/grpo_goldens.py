#!/usr/bin/env python3
"""
grpo_goldens.py -- GRPO and RLOO goldens for disttrain, recorded from TRL 1.16.0's GRPOTrainer and RLOOTrainer.

Run:   /work/venv/bin/python scripts/goldens/grpo_goldens.py      (from the repository root)
Needs: torch 2.13 (CPU), transformers 5.23, peft 0.21, trl 1.16.0, safetensors. No network.
Writes Tests/ModelTests/Fixtures/grpo-golden/{golden.json, golden.safetensors}.

What it drives (no GRPO/RLOO arithmetic is written here: every number comes out of TRL's code):
  * the tiny GPT-2 LM fixture (Tests/ModelTests/Fixtures/gpt2-tiny-lm, its tokenizer), float32, dropout off;
  * two prompts of different lengths (TRL tokenizes them and left-pads), three completions each, FIXED: the trainer's
    `_generate_single_turn` is replaced by one returning our token ids (some end with EOS, some stop at
    max_completion_length), so TRL's own `_generate_and_score_completions` pads them, computes old and reference
    log-probs, calls the reward function (fixed numbers per completion) and forms the advantages;
  * the reference: for full fine-tuning TRL's reference copy is perturbed (seeded N(0, 0.02) added to every weight) so
    the KL is not zero; with LoRA (peft, r=4, alpha 8, c_attn, from gpt2-tiny-lora/adapter-init) it is TRL's own
    reference, the base with the adapter disabled;
  * num_iterations 2: TRL computes old_per_token_logps at generation; they are then shifted by seeded noise
    (U(-0.4, 0.4) per token; RLOO: its summed old_logps recomputed from the shifted tokens) to stand for a policy that
    moved since sampling, so the ratio is not 1 and clipping happens;
  * `_compute_loss` on those inputs (current_gradient_accumulation_steps 1, one process), then backward: the loss,
    TRL's metrics (kl, entropy, clip ratios) and every parameter gradient; and the policy's per-token log-probs and
    entropies from TRL's `_get_per_token_logps_and_entropies` (temperature applied as TRL applies it).
Cases: GRPO with loss types dapo (TRL's default), grpo, bnpo, dr_grpo; beta 0 and > 0; num_iterations 1 and 2;
scale_rewards group, batch, none; temperature 0.8 and 1; epsilon_high 0.28 once; RLOO with beta 0 and 0.05,
num_iterations 1 and 2, normalize_advantages on and off; full and LoRA.

Size: transformer.wte's gradient is dense (tied head), so for wte only the rows of the batch's tokens plus 32 seeded
random rows are stored ("wte_rows"), with the full tensor's column sums and sum of squares (float64). Everything else
whole.
"""
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file

import peft
import trl
from datasets import Dataset
from peft import LoraConfig, set_peft_model_state_dict
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "Tests", "ModelTests", "Fixtures")
LM = os.path.join(FIX, "gpt2-tiny-lm")
ADAPTER = os.path.join(FIX, "gpt2-tiny-lora", "adapter-init")
OUT = os.path.join(FIX, "grpo-golden")

NUM_GENERATIONS = 3
MAX_COMPLETION = 6
PROMPTS = ["The movie was", "Write one word about the sea, please:"]
# Completion texts per prompt (tokenized with the fixture's tokenizer, cut to MAX_COMPLETION tokens); "<eos>" = EOS.
COMPLETIONS = [
    [" great fun<eos>", " really bad and far too long for me", " ok<eos>"],
    [" blue<eos>", " waves crash on the rocks all night", " salt water<eos>"],
]
REWARDS = [0.5, -1.0, 0.2, 1.5, 0.3, -0.7]

CASES = [
    # name, trainer, lora, loss_type, beta, num_iterations, scaling, temperature, epsilon_high
    ("grpo_dapo", "grpo", False, "dapo", 0.0, 1, "group", 0.8, None),
    ("grpo_grpo_iter2", "grpo", False, "grpo", 0.0, 2, "group", 0.8, None),
    ("grpo_bnpo_kl", "grpo", False, "bnpo", 0.1, 1, "group", 0.8, None),
    ("grpo_drgrpo_kl_iter2", "grpo", False, "dr_grpo", 0.1, 2, "group", 0.8, None),
    ("grpo_dapo_kl_iter2_batch", "grpo", False, "dapo", 0.1, 2, "batch", 0.8, 0.28),
    ("grpo_grpo_kl_none_t1", "grpo", False, "grpo", 0.1, 2, "none", 1.0, None),
    ("lora_grpo_dapo_kl_iter2", "grpo", True, "dapo", 0.1, 2, "group", 0.8, None),
    ("lora_grpo_grpo_kl", "grpo", True, "grpo", 0.1, 1, "group", 0.8, None),
    ("rloo", "rloo", False, None, 0.0, 1, "none", 0.8, None),
    ("rloo_kl", "rloo", False, None, 0.05, 1, "none", 0.8, None),
    ("rloo_kl_iter2_norm", "rloo", False, None, 0.05, 2, "batch", 0.8, None),
    ("lora_rloo_kl_iter2", "rloo", True, None, 0.05, 2, "none", 0.8, None),
]


def setup():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)


def fl(x):
    return float(x.item() if torch.is_tensor(x) else x)


def completion_ids(tok):
    out = []
    for texts in COMPLETIONS:
        for t in texts:
            eos = t.endswith("<eos>")
            ids = tok(t.replace("<eos>", ""), add_special_tokens=False)["input_ids"]
            ids = ids + [tok.eos_token_id] if eos else ids
            out.append(ids[:MAX_COMPLETION])
    return out


def make_trainer(case, tmp, tok, fixed):
    name, kind, lora, loss_type, beta, iters, scaling, temp, eps_high = case
    model = AutoModelForCausalLM.from_pretrained(LM, dtype=torch.float32, attn_implementation="eager")
    common = dict(output_dir=tmp, beta=beta, num_iterations=iters, temperature=temp, epsilon=0.2,
                  epsilon_high=eps_high, num_generations=NUM_GENERATIONS, max_completion_length=MAX_COMPLETION,
                  per_device_train_batch_size=len(REWARDS), gradient_accumulation_steps=1, learning_rate=1e-2,
                  bf16=False, fp16=False, use_cpu=True, report_to=[], logging_steps=1, save_strategy="no", seed=0,
                  dataloader_num_workers=0)
    if kind == "grpo":
        args = GRPOConfig(loss_type=loss_type, scale_rewards=scaling, **common)
        cls = GRPOTrainer
    else:
        args = RLOOConfig(normalize_advantages=(scaling == "batch"), **common)
        cls = RLOOTrainer

    def reward(completions, completion_ids, **kw):
        return [REWARDS[fixed.index(list(ids))] for ids in completion_ids]

    kw = {}
    if lora:
        kw["peft_config"] = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0,
                                       target_modules=["c_attn"], fan_in_fan_out=True, bias="none")
    ds = Dataset.from_list([{"prompt": p} for p in PROMPTS])
    t = cls(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok, **kw)
    if lora:
        res = set_peft_model_state_dict(t.model, load_file(os.path.join(ADAPTER, "adapter_model.safetensors")))
        assert not res.unexpected_keys, res

    def single_turn(prompt_ids, images, multimodal_fields, *rest, **kw2):
        ids = [list(x) for x in fixed]
        assert len(prompt_ids) == len(ids)
        return (ids, None) if kind == "grpo" else ids
    t._generate_single_turn = single_turn
    if t.ref_model is not None:   # full fine-tuning with beta > 0: move the reference away from the policy
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in t.ref_model.parameters():
                p.add_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * 0.02)
    t.current_gradient_accumulation_steps = 1
    return t


def wte_rows(ids):
    g = torch.Generator().manual_seed(1234)
    rnd = torch.randint(0, 50257, (32,), generator=g).tolist()
    return sorted(set(ids) | set(rnd) | {50256})


def grads_of(model, rows, prefix, T):
    for n, p in model.named_parameters():
        if p.grad is None:
            continue
        name = n.replace("base_model.model.", "")
        g = p.grad.detach().float()
        if name == "transformer.wte.weight":
            T[f"{prefix}/wte_rows"] = g[rows].contiguous()
            T[f"{prefix}/wte_colsum"] = g.double().sum(0).contiguous()
            T[f"{prefix}/wte_sumsq"] = (g.double() ** 2).sum().reshape(1)
        else:
            T[f"{prefix}/{name}"] = g.contiguous()


def one_case(case, tmp, tok, fixed, rows, T):
    name, kind, lora, loss_type, beta, iters, scaling, temp, eps_high = case
    t = make_trainer(case, tmp, tok, fixed)
    model = t.model
    model.train()
    inputs = [{"prompt": p} for p in PROMPTS for _ in range(NUM_GENERATIONS)]
    t._metrics["train"].clear()
    out = t._generate_and_score_completions(inputs)
    gen_metrics = {k: v[-1] for k, v in t._metrics["train"].items()}
    pid, pmask, cid, cmask = out["prompt_ids"], out["prompt_mask"], out["completion_ids"], out["completion_mask"]
    ids = torch.cat([pid, cid], 1)
    att = torch.cat([pmask, cmask], 1)
    keep = cid.size(1)
    rec = {"trainer": kind, "lora": lora, "loss_type": loss_type, "beta": beta, "num_iterations": iters,
           "scaling": scaling, "temperature": temp, "epsilon": 0.2, "epsilon_high": eps_high if eps_high else 0.2,
           "max_completion_length": MAX_COMPLETION,
           "prompt_ids": pid.tolist(), "prompt_mask": pmask.tolist(), "completion_ids": cid.tolist(),
           "completion_mask": cmask.tolist(), "rewards": REWARDS, "advantages": out["advantages"].tolist(),
           "generation_metrics": gen_metrics}
    g = torch.Generator().manual_seed(99)
    if kind == "grpo":
        ref = out.get("ref_per_token_logps")
        rec["ref_per_token_logps"] = ref.tolist() if ref is not None else None
        old = out.get("old_per_token_logps")
        if iters > 1:
            assert old is not None
            rec["old_per_token_logps_at_sampling"] = old.tolist()
            old = old + (torch.rand(old.shape, generator=g, dtype=torch.float32).to(old.dtype) * 0.8 - 0.4)
            out["old_per_token_logps"] = old
        rec["old_per_token_logps"] = old.tolist() if old is not None else None
    else:
        # RLOO keeps only sums in its inputs: the per-token old (sampling) and reference log-probs behind them,
        # recomputed with RLOO's own function on the same models (the reference: TRL's copy, or the adapter disabled)
        rec["old_logps_at_sampling"] = out["old_logps"].tolist()
        with torch.no_grad():
            old_tok, _, _ = t._get_per_token_logps_and_entropies(model, ids, att, keep)
            ref = None
            if beta != 0.0:
                if t.ref_model is not None:
                    ref, _, _ = t._get_per_token_logps_and_entropies(t.ref_model, ids, att, keep)
                else:
                    with model.disable_adapter():
                        ref, _, _ = t._get_per_token_logps_and_entropies(model, ids, att, keep)
        assert torch.allclose((old_tok * cmask).sum(1), out["old_logps"], atol=1e-5)
        rec["ref_per_token_logps"] = ref.tolist() if ref is not None else None
        rec["old_per_token_logps_at_sampling"] = old_tok.tolist()
        if iters > 1:
            shifted = old_tok + (torch.rand(old_tok.shape, generator=g, dtype=torch.float32).to(old_tok.dtype) * 0.8 - 0.4)
            rec["old_per_token_logps"] = shifted.tolist()
            out["old_logps"] = (shifted * cmask).sum(1)
        else:
            rec["old_per_token_logps"] = None
        rec["old_logps"] = out["old_logps"].tolist()
    with torch.no_grad():
        lp, ent, _ = t._get_per_token_logps_and_entropies(model, ids, att, keep, compute_entropy=True)
    rec["per_token_logps"] = lp.tolist()
    rec["entropies"] = ent.tolist()
    t._metrics["train"].clear()
    loss = t._compute_loss(model, out)
    loss.backward()
    rec["loss"] = fl(loss)
    rec["metrics"] = {k: v[-1] for k, v in t._metrics["train"].items()}
    grads_of(model, rows, f"{name}/grad", T)
    return rec


def main():
    setup()
    tmp = os.path.join(OUT, ".tmp")
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(tmp)
    tok = AutoTokenizer.from_pretrained(LM)
    fixed = completion_ids(tok)
    assert len(set(map(tuple, fixed))) == len(fixed)
    prompt_tok = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    rows = wte_rows([i for c in fixed for i in c] + [i for p in prompt_tok for i in p])
    T = {"wte_rows": torch.tensor(rows, dtype=torch.int64)}
    golden = {"versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                           "transformers": transformers.__version__, "peft": peft.__version__, "trl": trl.__version__},
              "model": "gpt2-tiny-lm", "adapter": "gpt2-tiny-lora/adapter-init", "prompts": PROMPTS,
              "num_generations": NUM_GENERATIONS, "max_completion_length": MAX_COMPLETION,
              "completions": fixed, "rewards": REWARDS, "wte_rows": len(rows), "cases": {}}
    for case in CASES:
        golden["cases"][case[0]] = one_case(case, tmp, tok, fixed, rows, T)
        c = golden["cases"][case[0]]
        print(case[0], c["loss"], c["metrics"])
    shutil.rmtree(tmp)
    save_file({k: v.contiguous() for k, v in T.items()}, os.path.join(OUT, "golden.safetensors"))
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print("wrote", OUT, sum(v.numel() for v in T.values()), "floats")


if __name__ == "__main__":
    main()
