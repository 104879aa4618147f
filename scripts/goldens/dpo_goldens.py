#!/usr/bin/env python3
"""
dpo_goldens.py -- DPO goldens for disttrain, recorded from TRL 1.16.0's DPOTrainer itself.

Run:   python3 scripts/goldens/dpo_goldens.py      (from the repository root)
Needs: torch 2.13 (CPU), transformers 5.23, peft 0.21, trl 1.16.0, safetensors. No network.
Writes Tests/ModelTests/Fixtures/dpo-golden/{golden.json, golden.safetensors, train.jsonl}.

What it drives (no DPO arithmetic is written here: every number comes out of TRL's code):
  * the tiny GPT-2 LM fixture (Tests/ModelTests/Fixtures/gpt2-tiny-lm, its tokenizer), dropout off (TRL's
    disable_dropout default), float32;
  * seven preference pairs (train.jsonl): explicit and implicit prompts, a chosen that already ends with
    <|endoftext|>, a prompt whose last word merges with the response's first characters (TRL's common-prefix rule),
    one pair that max_length truncates, and one whose prompt alone fills max_length (the last: TRL drops it);
  * TRL's `_prepare_dataset` (prompt extraction, EOS appended, tokenization, dropping) and its collator
    (keep_start truncation to max_length) -> the token ids and completion masks;
  * `DPOTrainer.compute_loss` on one batch of all pairs for loss types sigmoid, ipo and robust (label_smoothing 0.1,
    TRL 1.16's label-smoothed loss: its `sigmoid` ignores label_smoothing), full fine-tuning and LoRA (peft, r=4,
    alpha 8, c_attn, starting from gpt2-tiny-lora/adapter-init; the reference is the base with the adapter disabled,
    as TRL does for a peft_config): policy and reference log-probs of chosen and rejected, the loss, TRL's metrics,
    and every parameter gradient after backward;
  * three optimizer steps (the Trainer's own AdamW and linear schedule from `create_optimizer_and_scheduler`,
    grad-norm clipping at 1.0 as the Trainer does) for sigmoid, full and LoRA: loss per step and the parameters after.

Size: transformer.wte is 50257 x 16, and its gradient is dense (the tied head's softmax touches every row), so for
wte only the rows the batch's tokens use plus 64 seeded random rows are stored ("wte_rows"), together with the full
tensor's column sums and sum of squares (float64). Every other tensor is stored whole.
"""
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file

import peft
import trl
from datasets import Dataset
from peft import LoraConfig, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "Tests", "ModelTests", "Fixtures")
LM = os.path.join(FIX, "gpt2-tiny-lm")
ADAPTER = os.path.join(FIX, "gpt2-tiny-lora", "adapter-init")
OUT = os.path.join(FIX, "dpo-golden")

MAX_LENGTH = 24
BETA = 0.1
LR = 1e-2
STEPS = 3
ROBUST_SMOOTHING = 0.1

PAIRS = [
    {"prompt": "Question: What is the capital of France? Answer:", "chosen": " Paris.", "rejected": " London, I think."},
    {"prompt": "The food was", "chosen": " delicious and fresh.", "rejected": " cold.<|endoftext|>"},
    {"prompt": "Hello wor", "chosen": "ld, nice to meet you.", "rejected": "ld."},
    {"prompt": "Write a story about a dragon:", "chosen": " Once upon a time a small green dragon lived in a cave near the sea and slept all day long.",
     "rejected": " Dragons are big."},
    {"prompt": "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen",
     "chosen": " eighteen", "rejected": " twenty"},
    {"prompt": "Thanks", "chosen": " a lot!", "rejected": ""},
    {"prompt": "a b c d e f g h i j k l m n o p q r s t u v w x y z and then the alphabet starts again",
     "chosen": " yes", "rejected": " no"},
]
IMPLICIT = [
    {"chosen": "I loved this movie, it was great.", "rejected": "I loved this movie, it was awful."},
    {"chosen": "The weather today is sunny and warm.", "rejected": "The weather today is terrible."},
]


def setup():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)


def fl(x):
    return float(x.item() if torch.is_tensor(x) else x)


def dpo_args(out, loss_type, smoothing=0.0, batch=16):
    return DPOConfig(output_dir=out, beta=BETA, loss_type=[loss_type], label_smoothing=smoothing, max_length=MAX_LENGTH,
                     per_device_train_batch_size=batch, per_device_eval_batch_size=batch, learning_rate=LR,
                     lr_scheduler_type="linear", warmup_steps=0, max_steps=STEPS, weight_decay=0.0, max_grad_norm=1.0,
                     bf16=False, fp16=False, use_cpu=True, gradient_checkpointing=False, report_to=[],
                     logging_steps=1, save_strategy="no", seed=0, dataloader_num_workers=0, remove_unused_columns=True)


def datasets():
    # TRL reads one layout per dataset (the first row decides whether "prompt" exists), so the explicit and the
    # implicit pairs are two datasets; the Swift test reads the same two files.
    return Dataset.from_list(PAIRS), Dataset.from_list(IMPLICIT)


def make_trainer(loss_type, smoothing, lora, ds, tmp):
    tok = AutoTokenizer.from_pretrained(LM)
    model = AutoModelForCausalLM.from_pretrained(LM, dtype=torch.float32, attn_implementation="eager")
    kw = {}
    if lora:
        kw["peft_config"] = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["c_attn"],
                                       fan_in_fan_out=True, bias="none")
    t = DPOTrainer(model=model, args=dpo_args(tmp, loss_type, smoothing), train_dataset=ds, processing_class=tok, **kw)
    if lora:
        sd = load_file(os.path.join(ADAPTER, "adapter_model.safetensors"))
        res = set_peft_model_state_dict(t.model, sd)
        assert not [k for k in res.unexpected_keys], res
    return t


def batch_of(t):
    ds = t.train_dataset
    return t.data_collator([ds[i] for i in range(len(ds))])


def wte_rows(batches):
    g = torch.Generator().manual_seed(1234)
    rnd = torch.randint(0, 50257, (64,), generator=g).tolist()
    used = set()
    for b in batches:
        used |= set(b["input_ids"].flatten().tolist())
    return sorted(used | set(rnd) | {50256})


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


def params_of(model, rows, prefix, T, trainable_only):
    for n, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        name = n.replace("base_model.model.", "")
        v = p.detach().float()
        if name == "transformer.wte.weight":
            T[f"{prefix}/wte_rows"] = v[rows].contiguous()
        else:
            T[f"{prefix}/{name}"] = v.contiguous()


def one_case(name, loss_type, smoothing, lora, ds, rows, T, tmp):
    t = make_trainer(loss_type, smoothing, lora, ds, tmp)
    model = t.model
    model.train()
    inputs = batch_of(t)
    t._metrics["train"].clear()
    loss = t.compute_loss(model, inputs)
    loss.backward()
    m = {k: v[-1] for k, v in t._metrics["train"].items()}
    grads_of(model, rows, f"{name}/grad", T)
    # The per-sequence log-probs, recomputed with TRL's own reference path (compute_ref_log_probs: no_grad, labels
    # masked by completion_mask) on the policy and on the reference.
    with torch.no_grad():
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels,
                    fused_lm_head=True, use_cache=False)
        pol = out.log_probs.sum(1)
    ref_c, ref_r = t.compute_ref_log_probs(t.ref_model if t.ref_model is not None else model, inputs)
    n = inputs["input_ids"].shape[0] // 2
    case = {"loss": fl(loss), "metrics": m,
            "policy_chosen_logps": pol[:n].tolist(), "policy_rejected_logps": pol[n:].tolist(),
            "ref_chosen_logps": ref_c.tolist(), "ref_rejected_logps": ref_r.tolist(),
            "loss_type": loss_type, "label_smoothing": smoothing, "lora": lora}
    model.zero_grad(set_to_none=True)
    return case, t


def steps_case(name, lora, ds, rows, T, tmp):
    t = make_trainer("sigmoid", 0.0, lora, ds, tmp)
    model = t.model
    model.train()
    t.create_optimizer_and_scheduler(num_training_steps=STEPS)
    opt, sch = t.optimizer, t.lr_scheduler
    inputs = batch_of(t)
    log = []
    for s in range(STEPS):
        opt.zero_grad(set_to_none=True)
        t._metrics["train"].clear()
        loss = t.compute_loss(model, inputs)
        m = {k: v[-1] for k, v in t._metrics["train"].items()}
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        lr = sch.get_last_lr()[0]
        opt.step()
        sch.step()
        log.append({"step": s + 1, "loss": fl(loss), "grad_norm": fl(norm), "lr": lr, "metrics": m})
    params_of(model, rows, f"{name}/final", T, trainable_only=lora)
    return log


def main():
    setup()
    tmp = os.path.join(OUT, ".tmp")
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(tmp)
    with open(os.path.join(OUT, "train.jsonl"), "w") as f:
        for p in PAIRS:
            f.write(json.dumps(p) + "\n")
    with open(os.path.join(OUT, "implicit.jsonl"), "w") as f:
        for p in IMPLICIT:
            f.write(json.dumps(p) + "\n")
    explicit, implicit = datasets()

    T = {}
    golden = {"versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                           "transformers": transformers.__version__, "peft": peft.__version__, "trl": trl.__version__},
              "model": "gpt2-tiny-lm", "adapter": "gpt2-tiny-lora/adapter-init", "max_length": MAX_LENGTH, "beta": BETA,
              "learning_rate": LR, "steps": STEPS, "lr_scheduler": "linear", "max_grad_norm": 1.0, "robust_label_smoothing": ROBUST_SMOOTHING,
              "files": {"explicit": "train.jsonl", "implicit": "implicit.jsonl"}}

    # Tokenization as TRL prepares it (both layouts), and the collated batch (keep_start truncation).
    probe = make_trainer("sigmoid", 0.0, False, explicit, tmp)
    probe_i = make_trainer("sigmoid", 0.0, False, implicit, tmp)
    tok_rows = {}
    for key, tr in (("explicit", probe), ("implicit", probe_i)):
        ds = tr.train_dataset
        b = batch_of(tr)
        tok_rows[key] = {
            "kept": len(ds), "given": len(PAIRS) if key == "explicit" else len(IMPLICIT),
            "rows": [{"prompt_ids": ds[i]["prompt_ids"], "chosen_ids": ds[i]["chosen_ids"], "rejected_ids": ds[i]["rejected_ids"]}
                     for i in range(len(ds))],
            "input_ids": b["input_ids"].tolist(), "attention_mask": b["attention_mask"].tolist(),
            "completion_mask": b["completion_mask"].tolist()}
    golden["tokenized"] = tok_rows
    rows = wte_rows([batch_of(probe), batch_of(probe_i)])
    T["wte_rows"] = torch.tensor(rows, dtype=torch.int64)
    golden["wte_rows"] = len(rows)

    cases = {}
    for name, lt, ls, lora in (("sigmoid", "sigmoid", 0.0, False), ("ipo", "ipo", 0.0, False),
                               ("robust", "robust", ROBUST_SMOOTHING, False), ("lora_sigmoid", "sigmoid", 0.0, True),
                               ("lora_ipo", "ipo", 0.0, True),
                               ("lora_robust", "robust", ROBUST_SMOOTHING, True)):
        cases[name], _ = one_case(name, lt, ls, lora, explicit, rows, T, tmp)
    cases["implicit_sigmoid"], _ = one_case("implicit_sigmoid", "sigmoid", 0.0, False, implicit, rows, T, tmp)
    # TRL 1.16's sigmoid loss ignores label_smoothing (only robust, exo_pair and aot read it): recorded to show it
    # (LoRA, where policy != reference); its gradients are not kept.
    cases["lora_sigmoid_label_smoothing"], _ = one_case("lora_sigmoid_ls", "sigmoid", ROBUST_SMOOTHING, True, explicit, rows, T, tmp)
    for k in [k for k in T if k.startswith("lora_sigmoid_ls/")]:
        del T[k]
    golden["cases"] = cases
    golden["steps"] = {"full_sigmoid": steps_case("steps_full", False, explicit, rows, T, tmp),
                       "lora_sigmoid": steps_case("steps_lora", True, explicit, rows, T, tmp)}
    shutil.rmtree(tmp)
    save_file({k: v.contiguous() for k, v in T.items()}, os.path.join(OUT, "golden.safetensors"))
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print("wrote", OUT, sum(v.numel() for v in T.values()), "floats")
    for k, c in cases.items():
        print(k, c["loss"], c["metrics"])


if __name__ == "__main__":
    main()
