#!/usr/bin/env python3
"""Record the per-tensor statistics of transformers' own initialisation of models built from a config, for
GPT2InitTests (Tests/ModelTests/GPT2InitTests.swift), which checks `train --init-from-config`'s initialisation
(Sources/Model/WeightInit.swift) against them.

Our generator is SplitMix64 + Box-Muller, not torch's, so the bytes differ by design; what must match is the
distribution of every tensor: the test compares each tensor's mean and standard deviation with these (within a
tolerance from the sampling error) and requires exact zeros and ones where transformers has constants.

Models (transformers 5.23, torch 2.13 CPU, fp32), each over seeds 0, 1, 2 (torch.manual_seed before construction):
  gpt2-lm   GPT2LMHeadModel, 4 layers x 256 wide, 4 heads, 128 positions, the real GPT-2 vocabulary (50257)
  gpt2-cls  GPT2ForSequenceClassification, 2 layers x 64, 3 labels (the `score` head)
  bert-cls  BertForSequenceClassification, 2 layers x 64, 3 labels, pad_token_id 0 (its word-embedding row is zero)

  python3 scripts/goldens/init_stats.py   # writes Tests/ModelTests/Fixtures/init-stats/init_stats.json
"""
import json
import os

import torch
import transformers
from transformers import (BertConfig, BertForSequenceClassification, GPT2Config, GPT2ForSequenceClassification,
                          GPT2LMHeadModel)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "Tests", "ModelTests", "Fixtures", "init-stats", "init_stats.json")
SEEDS = [0, 1, 2]

MODELS = {
    "gpt2-lm": (GPT2LMHeadModel, GPT2Config, dict(
        architectures=["GPT2LMHeadModel"], n_layer=4, n_embd=256, n_head=4, n_positions=128, vocab_size=50257,
        initializer_range=0.02)),
    "gpt2-cls": (GPT2ForSequenceClassification, GPT2Config, dict(
        architectures=["GPT2ForSequenceClassification"], n_layer=2, n_embd=64, n_head=2, n_positions=64,
        vocab_size=50257, initializer_range=0.02, pad_token_id=50256,
        id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})),
    "bert-cls": (BertForSequenceClassification, BertConfig, dict(
        architectures=["BertForSequenceClassification"], hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=64, vocab_size=1000, pad_token_id=0, initializer_range=0.02,
        id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})),
}


def stats(t):
    t = t.detach().double().flatten()
    out = {"count": t.numel(), "mean": t.mean().item(), "std": t.std(unbiased=False).item(),
           "min": t.min().item(), "max": t.max().item()}
    if out["min"] == out["max"]:
        out["constant"] = out["min"]
    return out


def main():
    result = {"generator": "scripts/goldens/init_stats.py", "transformers": transformers.__version__,
              "torch": torch.__version__, "seeds": SEEDS, "models": {}}
    for name, (cls, cfg_cls, kw) in MODELS.items():
        config = cfg_cls(**kw)
        per_seed = []
        for seed in SEEDS:
            torch.manual_seed(seed)
            model = cls(config).eval()
            # state_dict names as save_pretrained writes them (the tied lm_head is not saved)
            tensors = {k: stats(v) for k, v in model.state_dict().items()
                       if k != "lm_head.weight" and not k.endswith("position_ids")}
            extra = {}
            if name == "bert-cls":
                row = model.bert.embeddings.word_embeddings.weight[config.pad_token_id]
                extra["pad_row_max_abs"] = row.abs().max().item()
            if name == "gpt2-lm":
                extra["lm_head_tied"] = model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
            per_seed.append({"seed": seed, "tensors": tensors, **extra})
        cj = json.loads(config.to_json_string())
        result["models"][name] = {"config": cj, "runs": per_seed}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {os.path.relpath(OUT)}: " + ", ".join(f"{k} ({len(v['runs'][0]['tensors'])} tensors)"
                                                   for k, v in result["models"].items()))


if __name__ == "__main__":
    main()
