#!/usr/bin/env python3
"""
reward_goldens.py -- goldens for `disttrain train --task reward`, computed by TRL 1.16.0's RewardTrainer itself.

Run (from the repo root, with the reference venv):
    python3 scripts/goldens/reward_goldens.py
Writes Tests/ModelTests/Fixtures/reward-golden/{golden.json, golden.safetensors}. Needs torch, transformers 5.23,
trl 1.16.0, datasets, safetensors. No network.

What it does, for each of the tiny fixtures bert-tiny-cls and gpt2-tiny-cls (Tests/ModelTests/Fixtures):
  1. Loads the classifier with num_labels=1 (ignore_mismatched_sizes: the 3-class head is dropped) and re-initialises
     the one-output head from a fixed torch seed (normal(0, 0.5), bias 0.1 — larger than the fixture's init so the
     rewards differ visibly); for BERT every matrix but the word table is redrawn N(0, 0.3) too (the fixture's init
     gives near-identical rewards). Every parameter but the word table is stored as `<model>/init/<name>`; the Swift
     test builds the same reward folder from the fixture's word table plus these.
  2. Builds TRL's RewardTrainer (dropout off: RewardConfig.disable_dropout=True, fp32, max_length=24) on two fixed
     preference sets: "explicit" (prompt/chosen/rejected with a margin column) and "implicit" (chosen/rejected,
     no margin, one pair longer than max_length that TRL filters out), and "center": the explicit set with
     center_rewards_coefficient=0.1.
     TRL appends the tokenizer's eos_token to chosen/rejected (unless already there), joins prompt + response, and
     tokenizes with the tokenizer's special tokens; it drops (does not truncate) pairs longer than max_length.
     BERT tokenizers have no eos_token, and TRL 1.16.0 then fails (`str.endswith(None)`: checked below); for them
     disttrain appends nothing, so here the BERT datasets are handed to TRL pre-tokenized (chosen_ids/rejected_ids =
     tokenizer(prompt + response)), which TRL's own max_length filter and collator then process.
  3. Records the token ids TRL's dataset holds, and for one batch of all kept pairs (TRL's collator): the rewards,
     trainer.compute_loss (train mode) and its metrics, every parameter gradient (the word-embedding table only in the
     rows the batch uses, with the row ids), trainer.evaluate() on the same set.
  4. Runs trainer.train() for 3 steps (batch = all pairs, lr 1e-3 linear, no warmup, AdamW eps 1e-6, max_grad_norm 1.0) and
     records the logged per-step loss and grad_norm, the learning rates, and the final parameters (tables: used rows).
"""
import copy
import json
import os
import shutil
import tempfile

import numpy as np
import torch
import transformers
import trl
from datasets import Dataset
from safetensors.torch import save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "Tests", "ModelTests", "Fixtures")
OUT = os.path.join(FIX, "reward-golden")
MAX_LENGTH = 24
STEPS = 3
LR = 1e-3
# Adam's first steps are lr·sign(g) for any |g| >> eps. Several parameters have an exactly zero true gradient here (the
# head bias and GPT-2's ln_f bias: r_chosen − r_rejected does not depend on them; attention key biases), so with the
# default eps 1e-8 float rounding noise (~1e-9) would move them by ±lr and the comparison would test the noise.
# eps 1e-6 keeps noise-sized gradients from moving anything measurably and leaves real gradients (>= 1e-4) sign-like.
ADAM_EPS = 1e-6

EXPLICIT = [
    {"prompt": "The movie was", "chosen": " great fun.", "rejected": " boring.", "margin": 0.5},
    {"prompt": "Q: capital of France? A:", "chosen": " Paris", "rejected": " Berlin", "margin": 0.0},
    {"prompt": "Say hi:", "chosen": " hello there friend", "rejected": " go away", "margin": 1.0},
]
# (name, rows, center_rewards_coefficient): the third set is the first with TRL's centring term on.
SETS = None
IMPLICIT = [
    {"chosen": "I love this phone.", "rejected": "I hate this phone."},
    {"chosen": "Thanks for the help!<|endoftext|>", "rejected": "whatever"},
    {"chosen": "a b c d e f g h i j k l m n o p q r s t u v w x y z a b c d e f", "rejected": "short"},
    {"chosen": "good answer", "rejected": "bad answer that rambles on"},
]

SETS = [("explicit", EXPLICIT, None), ("implicit", IMPLICIT, None), ("center", EXPLICIT, 0.1)]

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def table_names(model):
    return {n for n, p in model.named_parameters() if p.dim() == 2 and p.shape[0] > 1000}


def load_reward_model(src):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, ignore_mismatched_sizes=True,
                                                               dtype=torch.float32)
    head = "classifier" if model.config.model_type == "bert" else "score"
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        if model.config.model_type == "bert":
            # The fixture's N(0, 0.02) init leaves BERT's [CLS] output nearly independent of the text (rewards would
            # differ by ~1e-5, so accuracy would hang on rounding): redraw every matrix but the word table larger.
            for n, p in model.named_parameters():
                if p.dim() == 2 and p.shape[0] <= 1000:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        w = getattr(model, head).weight
        w.copy_(torch.randn(w.shape, generator=g) * 0.5)
        if getattr(model, head).bias is not None:
            getattr(model, head).bias.fill_(0.1)
    model.config.problem_type = "regression"
    model.config.id2label = {0: "LABEL_0"}
    model.config.label2id = {"LABEL_0": 0}
    return model, head


def trainer_for(model, tok, data, out_dir, steps=0, center=None):
    args = RewardConfig(output_dir=out_dir, max_length=MAX_LENGTH, bf16=False, fp16=False, gradient_checkpointing=False,
                        per_device_train_batch_size=len(data), per_device_eval_batch_size=len(data),
                        learning_rate=LR, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
                        max_grad_norm=1.0, adam_epsilon=ADAM_EPS, max_steps=max(steps, 1), logging_steps=1, report_to=[], save_strategy="no",
                        seed=42, disable_dropout=True, use_cpu=True, dataloader_drop_last=False,
                        center_rewards_coefficient=center)
    return RewardTrainer(model=model, args=args, train_dataset=data, eval_dataset=data, processing_class=tok)


def dataset_for(rows, tok, bert):
    if not bert:
        return Dataset.from_list(copy.deepcopy(rows))
    # BERT: TRL cannot add an EOS (the tokenizer has none); hand it ids tokenized as disttrain does (no EOS).
    out = []
    for r in rows:
        p = r.get("prompt", "")
        d = {"chosen_ids": tok(p + r["chosen"])["input_ids"], "rejected_ids": tok(p + r["rejected"])["input_ids"]}
        if "margin" in r:
            d["margin"] = r["margin"]
        out.append(d)
    return Dataset.from_list(out)


def check_trl_refuses_bert_without_eos(model, tok, tmp):
    try:
        trainer_for(copy.deepcopy(model), tok, Dataset.from_list(copy.deepcopy(IMPLICIT)), tmp)
    except TypeError as e:
        return str(e)
    raise SystemExit("expected TRL 1.16.0 to fail on a tokenizer without eos_token; re-check the BERT EOS handling")


def record(name, src, tensors, golden):
    tok = AutoTokenizer.from_pretrained(src)
    bert = tok.eos_token is None
    entry = {"source": os.path.basename(src), "eos_token": tok.eos_token, "datasets": {}}
    base, head = load_reward_model(src)
    tables = table_names(base)
    for n, p in base.named_parameters():   # every parameter but the word table: the Swift test rebuilds the model
        if n not in tables:
            tensors[f"{name}/init/{n}"] = p.detach().clone().contiguous()
    entry["head"] = [n for n, _ in base.named_parameters() if n.startswith(head + ".")]
    with tempfile.TemporaryDirectory() as tmp:
        if bert:
            entry["trl_without_eos_token"] = check_trl_refuses_bert_without_eos(base, tok, tmp)
        for setname, rows, center in SETS:
            model = copy.deepcopy(base)
            trainer = trainer_for(model, tok, dataset_for(rows, tok, bert), tmp, steps=STEPS, center=center)
            ds = trainer.train_dataset
            d = {"chosen_ids": [list(x) for x in ds["chosen_ids"]], "rejected_ids": [list(x) for x in ds["rejected_ids"]],
                 "kept": len(ds), "rows": len(rows), "file": f"{'explicit' if rows is EXPLICIT else 'implicit'}.jsonl",
                 "center_rewards_coefficient": center}
            if "margin" in ds.column_names:
                d["margin"] = list(ds["margin"])
            # One batch of every kept pair, as TRL's collator builds it (chosen first, then rejected).
            batch = trainer.data_collator([ds[i] for i in range(len(ds))])
            model.train()
            model.zero_grad()
            loss = trainer.compute_loss(model, dict(batch))
            loss.backward()
            with torch.no_grad():
                rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
            k = len(ds)
            d["rewards_chosen"] = rewards[:k].tolist()
            d["rewards_rejected"] = rewards[k:].tolist()
            d["loss"] = loss.item()
            d["train_metrics"] = {key: sum(v) / len(v) for key, v in trainer._metrics["train"].items()}
            trainer._metrics["train"].clear()
            used = sorted(set(batch["input_ids"].flatten().tolist()))
            d["table_rows"] = used
            for n, p in model.named_parameters():
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                tensors[f"{name}/{setname}/grad/{n}"] = (g[used] if n in tables else g).detach().clone().contiguous()
            model.zero_grad()
            d["eval"] = trainer.evaluate()
            # A few optimizer steps through TRL's (transformers') training loop.
            trainer.train()
            d["steps"] = [{"loss": h["loss"], "grad_norm": h["grad_norm"], "learning_rate": h["learning_rate"]}
                          for h in trainer.state.log_history if "loss" in h and "grad_norm" in h]
            assert len(d["steps"]) == STEPS, trainer.state.log_history
            for n, p in trainer.model.named_parameters():
                tensors[f"{name}/{setname}/final/{n}"] = (p[used] if n in tables else p).detach().clone().contiguous()
            entry["datasets"][setname] = d
    entry["tables"] = sorted(tables)
    golden[name] = entry


def main():
    os.makedirs(OUT, exist_ok=True)
    tensors, golden = {}, {}
    golden["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}
    golden["settings"] = {"max_length": MAX_LENGTH, "steps": STEPS, "learning_rate": LR, "schedule": "linear, no warmup",
                          "weight_decay": 0.0, "max_grad_norm": 1.0, "adam": [0.9, 0.999, ADAM_EPS],
                          "batch": "all kept pairs of the set, one micro-batch", "dropout": "off"}
    golden["data"] = {"explicit": EXPLICIT, "implicit": IMPLICIT}
    record("bert", os.path.join(FIX, "bert-tiny-cls"), tensors, golden)
    record("gpt2", os.path.join(FIX, "gpt2-tiny-cls"), tensors, golden)
    save_file({k: v.float() for k, v in tensors.items()}, os.path.join(OUT, "golden.safetensors"))
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1, sort_keys=True)
    for setname in ["explicit", "implicit"]:
        with open(os.path.join(OUT, f"{setname}.jsonl"), "w") as f:
            for r in golden["data"][setname]:
                f.write(json.dumps(r) + "\n")
    print("wrote", OUT, {k: (v["datasets"]["explicit"]["loss"], v["datasets"]["implicit"]["loss"])
                         for k, v in golden.items() if k in ("bert", "gpt2")})


if __name__ == "__main__":
    main()
