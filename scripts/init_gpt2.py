#!/usr/bin/env python3
"""Write a randomly initialised GPT-2 model folder, for training GPT-2 from scratch with disttrain.

Why: no package reachable here ships GPT-2 weights, and `disttrain train` starts from a model folder's
model.safetensors (it does not initialise a whole model itself). This script writes that folder:
config.json (transformers' GPT2Config fields), model.safetensors (F32, save_pretrained's `transformer.` names, no
tied lm_head) and the real GPT-2 tokenizer files (copied from Tests/ModelTests/Fixtures/gpt2-tiny-lm, see
/data/README.md for their source). Weights follow transformers' GPT2PreTrainedModel._init_weights: every weight
matrix and embedding N(0, initializer_range), the residual projections (attn.c_proj, mlp.c_proj) N(0,
initializer_range / sqrt(2 * n_layer)), biases 0, LayerNorm weight 1 and bias 0. Same seed, same bytes.
With --classifier the folder is a GPT2ForSequenceClassification (pad_token_id 50256, no score head yet: disttrain
initialises it for the labels of the training data).
Pure Python (no numpy), so it runs wherever python3 does.

  python3 scripts/init_gpt2.py models/gpt2-mini                       # 4 layers, 128 wide, 4 heads, 128 positions
  python3 scripts/init_gpt2.py models/gpt2-mini-cls --classifier
"""
import argparse
import json
import math
import os
import random
import shutil
import struct
import sys
from array import array

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_DIR = os.path.join(HERE, "..", "Tests", "ModelTests", "Fixtures", "gpt2-tiny-lm")
TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]
VOCAB = 50257
EOS = 50256


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="folder to write (created; must not already hold model.safetensors)")
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-positions", type=int, default=128)
    ap.add_argument("--initializer-range", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classifier", action="store_true", help="write a GPT2ForSequenceClassification config")
    ap.add_argument("--force", action="store_true", help="overwrite an existing model.safetensors")
    a = ap.parse_args()
    for name in ("n_layer", "n_embd", "n_head", "n_positions"):
        if getattr(a, name) <= 0:
            sys.exit(f"init_gpt2.py: --{name.replace('_', '-')} must be positive")
    if a.n_embd % a.n_head:
        sys.exit(f"init_gpt2.py: --n-embd {a.n_embd} is not divisible by --n-head {a.n_head}; pick a head count that divides it")
    weights = os.path.join(a.out, "model.safetensors")
    if os.path.exists(weights) and not a.force:
        sys.exit(f"init_gpt2.py: {weights} already exists; pass --force to overwrite it")
    os.makedirs(a.out, exist_ok=True)

    C, L, P, std = a.n_embd, a.n_layer, a.n_positions, a.initializer_range
    rng = random.Random(a.seed)

    def normal(n, s):
        g = rng.gauss
        return array("f", (g(0.0, s) for _ in range(n)))

    def const(n, v):
        return array("f", [v]) * n

    tensors = []  # (name, shape, array) in the order they are drawn
    tensors.append(("transformer.wte.weight", [VOCAB, C], normal(VOCAB * C, std)))
    tensors.append(("transformer.wpe.weight", [P, C], normal(P * C, std)))
    proj_std = std / math.sqrt(2 * L)
    for l in range(L):
        p = f"transformer.h.{l}."
        tensors += [
            (p + "ln_1.weight", [C], const(C, 1.0)), (p + "ln_1.bias", [C], const(C, 0.0)),
            (p + "attn.c_attn.weight", [C, 3 * C], normal(C * 3 * C, std)), (p + "attn.c_attn.bias", [3 * C], const(3 * C, 0.0)),
            (p + "attn.c_proj.weight", [C, C], normal(C * C, proj_std)), (p + "attn.c_proj.bias", [C], const(C, 0.0)),
            (p + "ln_2.weight", [C], const(C, 1.0)), (p + "ln_2.bias", [C], const(C, 0.0)),
            (p + "mlp.c_fc.weight", [C, 4 * C], normal(C * 4 * C, std)), (p + "mlp.c_fc.bias", [4 * C], const(4 * C, 0.0)),
            (p + "mlp.c_proj.weight", [4 * C, C], normal(4 * C * C, proj_std)), (p + "mlp.c_proj.bias", [C], const(C, 0.0)),
        ]
    tensors += [("transformer.ln_f.weight", [C], const(C, 1.0)), ("transformer.ln_f.bias", [C], const(C, 0.0))]

    # safetensors: u64 header length, JSON header (names sorted, as safetensors writes them), raw little-endian data.
    tensors.sort(key=lambda t: t[0])
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, data in tensors:
        assert len(data) == math.prod(shape), name
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * len(data)]}
        offset += 4 * len(data)
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * (-len(hbytes) % 8)
    tmp = weights + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for _, _, data in tensors:
            if sys.byteorder != "little":
                data.byteswap()
            data.tofile(f)
    os.replace(tmp, weights)

    config = {
        "activation_function": "gelu_new", "architectures": ["GPT2ForSequenceClassification" if a.classifier else "GPT2LMHeadModel"],
        "attn_pdrop": 0.1, "bos_token_id": EOS, "embd_pdrop": 0.1, "eos_token_id": EOS,
        "initializer_range": std, "layer_norm_epsilon": 1e-5, "model_type": "gpt2", "n_embd": C, "n_head": a.n_head,
        "n_inner": None, "n_layer": L, "n_positions": P, "resid_pdrop": 0.1, "scale_attn_weights": True,
        "tie_word_embeddings": True, "vocab_size": VOCAB,
    }
    if a.classifier:
        config["pad_token_id"] = EOS
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    for name in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(TOKENIZER_DIR, name), os.path.join(a.out, name))
    n = sum(len(t[2]) for t in tensors)
    print(f"wrote {a.out}: GPT-2 {L} layers x {C} wide, {a.n_head} heads, {P} positions, {n:,} parameters, seed {a.seed}"
          + (" (sequence classifier)" if a.classifier else ""))


if __name__ == "__main__":
    main()
