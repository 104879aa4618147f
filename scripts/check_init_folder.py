#!/usr/bin/env python3
"""Check that transformers loads a model folder that `disttrain train --init-from-config` wrote before learning
anything (a "step-0 save": one step at --learning-rate 0 leaves AdamW's update exactly zero), and that its weights
are distributed as transformers' own initialisation of that config.

  disttrain train --init-from-config examples/gpt2-configs/gpt2-4x256.json --train-file data/hamlet-lm/lm-train.jsonl \
      --output-dir runs/init-step0 --max-steps 1 --learning-rate 0 --batch-size 2 --no-report
  python3 scripts/check_init_folder.py runs/init-step0

Prints transformers' loading report (missing / unexpected / mismatched keys must all be empty), whether every tensor
transformers holds equals the file's bytes, and per tensor our std against a model transformers builds from the same
config (seed 0), failing (exit 1) on a std more than max(5 %, 6/sqrt(2n)) off (n values) or a constant that differs. Needs torch and
transformers (not a build or test requirement).
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoModel


def main():
    folder = sys.argv[1]
    cfg = json.load(open(os.path.join(folder, "config.json")))
    arch = (cfg.get("architectures") or ["GPT2LMHeadModel"])[0]
    auto = AutoModelForSequenceClassification if arch.endswith("ForSequenceClassification") else (
        AutoModelForCausalLM if arch == "GPT2LMHeadModel" else AutoModel)
    model, info = auto.from_pretrained(folder, output_loading_info=True)
    print(f"{folder}: {arch} loaded by transformers; loading info: " + json.dumps({k: sorted(map(str, v)) for k, v in info.items()}))
    ok = not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"))
    ours = load_file(os.path.join(folder, "model.safetensors"))
    sd = model.state_dict()
    same = all(torch.equal(sd[k], v) for k, v in ours.items())
    print(f"every tensor of model.safetensors ({len(ours)}) equals transformers' loaded weights: {same}")
    ok &= same
    torch.manual_seed(0)
    ref = auto.from_config(AutoConfig.from_pretrained(folder)).state_dict()
    worst = (0.0, "")
    for k, v in sorted(ours.items()):
        r = ref[k]
        if r.min() == r.max():
            if not torch.equal(v, r):
                print(f"  {k}: transformers has every value {r.min().item()}, ours differs"); ok = False
            continue
        rel = abs(v.std().item() / r.std().item() - 1)
        worst = max(worst, (rel, k))
        if rel > max(0.05, 6 / (2 * v.numel()) ** 0.5):  # sampling error of a std: 1/sqrt(2n) relative
            print(f"  {k}: std {v.std().item():.6f}, transformers {r.std().item():.6f}"); ok = False
    print(f"constants (biases, LayerNorms) identical; largest std difference from transformers' init: "
          f"{100 * worst[0]:.2f} % ({worst[1]})")
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
