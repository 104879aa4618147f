#!/usr/bin/env python3
"""
check_reward_interop.py -- does transformers load our reward models and score texts as we do?

Trains a small reward model with `disttrain train --task reward` from each model folder given (default: the tiny BERT
and GPT-2 classifier fixtures, plus models/all-MiniLM-L6-v2 when that folder exists: a base encoder that gets a fresh
one-output head), then
  1. loads the saved folder with transformers' AutoModelForSequenceClassification (num_labels must be 1),
  2. scores a few texts with it, tokenized as TRL's RewardTrainer tokenizes a response (the tokenizer's EOS appended
     when it has one and the text does not end with it; BERT-family tokenizers have none), and compares with
     `disttrain predict` ({"reward": x} per line): max |difference| must be <= 1e-4,
  3. computes pairwise accuracy and the loss -log sigmoid(r_chosen - r_rejected - margin) over the eval pairs and
     compares with `disttrain eval`.
Needs torch and transformers (the reference venv); not part of CI. Exit status 1 on any mismatch.

    python3 scripts/check_reward_interop.py [--binary .build/debug/disttrain] [MODEL_DIR ...]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FIX = os.path.join(ROOT, "Tests", "ModelTests", "Fixtures")

TRAIN = [
    {"prompt": "Rate the reply:", "chosen": " clear and kind", "rejected": " rude", "margin": 0.5},
    {"prompt": "Rate the reply:", "chosen": " helpful, thanks", "rejected": " wrong and slow"},
    {"prompt": "Is it good?", "chosen": " yes, lovely", "rejected": " broken"},
    {"prompt": "Is it good?", "chosen": " correct answer", "rejected": " vague answer"},
]
EVAL = [
    {"prompt": "Rate the reply:", "chosen": " kind", "rejected": " rude and wrong"},
    {"prompt": "Is it good?", "chosen": " lovely and clear", "rejected": " sad"},
    {"prompt": "Rate:", "chosen": " great<|endoftext|>", "rejected": " bad", "margin": 1.0},
]
TEXTS = ["the answer is great", "the answer is rude", "hello there", "Is it good? yes, lovely<|endoftext|>", "ünïcode ✓ text"]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def with_eos(text, tok):
    eos = tok.eos_token
    return text if eos is None or text.endswith(eos) else text + eos


def check(binary, model_dir, work):
    name = os.path.basename(os.path.normpath(model_dir))
    out = os.path.join(work, name)
    train, evalf, texts = (os.path.join(work, f) for f in ("train.jsonl", "eval.jsonl", "texts.jsonl"))
    write_jsonl(train, TRAIN)
    write_jsonl(evalf, EVAL)
    write_jsonl(texts, [{"text": t} for t in TEXTS])
    run([binary, "train", "--task", "reward", "--model", model_dir, "--train-file", train, "--output-dir", out,
         "--max-length", "32", "--batch-size", "2", "--max-steps", "4", "--learning-rate", "1e-3", "--no-dropout"])
    ours = [json.loads(l)["reward"] for l in run([binary, "predict", "--model", out, "--input", texts, "--max-length", "32"]).splitlines()]
    our_eval = json.loads(run([binary, "eval", "--model", out, "--eval-file", evalf, "--max-length", "32"]))

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    assert model.config.num_labels == 1, model.config.num_labels

    def score(text):
        enc = tok(with_eos(text, tok), return_tensors="pt")
        with torch.no_grad():
            return model(**enc).logits[0, 0].item()

    theirs = [score(t) for t in TEXTS]
    diff = max(abs(a - b) for a, b in zip(ours, theirs))
    rc = [score(p["prompt"] + p["chosen"]) for p in EVAL]
    rr = [score(p["prompt"] + p["rejected"]) for p in EVAL]
    acc = sum(c > r for c, r in zip(rc, rr)) / len(EVAL)
    loss = sum(-F.logsigmoid(torch.tensor(c - r - p.get("margin", 0.0))).item() for c, r, p in zip(rc, rr, EVAL)) / len(EVAL)
    ok = diff <= 1e-4 and acc == our_eval["eval_accuracy"] and abs(loss - our_eval["eval_loss"]) <= 1e-4
    print(f"{name}: {type(model).__name__} num_labels=1; predict max |ours - transformers| = {diff:.2e} over {len(TEXTS)} texts; "
          f"eval accuracy ours {our_eval['eval_accuracy']:.4f} transformers {acc:.4f}, loss ours {our_eval['eval_loss']:.6f} "
          f"transformers {loss:.6f} -> {'OK' if ok else 'MISMATCH'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "debug", "disttrain"))
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    models = a.models or [os.path.join(FIX, "bert-tiny-cls"), os.path.join(FIX, "gpt2-tiny-cls")] + \
        [m for m in [os.path.join(ROOT, "models", "all-MiniLM-L6-v2")] if os.path.isdir(m)]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        results = [check(a.binary, m, work) for m in models]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
