# The TRL side of bench/vs_pytorch.sh's DPO pair (DPO=1): TRL 1.16's DPOTrainer on the preference pipeline's pairs,
# from its SFT policy (a transformers GPT-2 folder), at examples/preference-pipeline/dpo.yaml's settings: beta 0.1,
# sigmoid loss, max length 64, global batch 32, lr 1e-4, linear schedule with 10 % warm-up, seed 42, clipping at 1,
# the reference log-probs precomputed; --max-steps steps (0: 1 epoch); then the eval pairs' loss. Prints one JSON
# line; the driver times the whole process.
#   python bench/trl_dpo.py --model runs/preference-pipeline/sft --data runs/preference-pipeline/data --threads 2
import argparse
import json
import os
import sys
import tempfile
import time

import torch


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer
    keep = ("prompt", "chosen", "rejected")
    train = Dataset.from_list([{k: r[k] for k in keep} for r in read(os.path.join(args.data, "pairs-train.jsonl"))])
    test = Dataset.from_list([{k: r[k] for k in keep} for r in read(os.path.join(args.data, "pairs-test.jsonl"))])
    tok = AutoTokenizer.from_pretrained(args.model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    out = tempfile.mkdtemp(prefix="trl-dpo-")
    cfg = DPOConfig(output_dir=out, beta=0.1, loss_type=["sigmoid"], max_length=64, per_device_train_batch_size=32,
                    per_device_eval_batch_size=32, learning_rate=1e-4, lr_scheduler_type="linear", warmup_steps=0.1,
                    num_train_epochs=1, max_steps=args.max_steps if args.max_steps > 0 else -1, weight_decay=0.0,
                    max_grad_norm=1.0, seed=42, use_cpu=True, report_to=[], save_strategy="no", eval_strategy="no",
                    logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0, precompute_ref_log_probs=True)
    trainer = DPOTrainer(model=model, args=cfg, train_dataset=train, eval_dataset=test, processing_class=tok)
    t0 = time.perf_counter()
    tr = trainer.train()
    train_s = time.perf_counter() - t0
    ev = trainer.evaluate()
    print(json.dumps({"impl": "trl-dpo", "threads": args.threads, "steps": tr.global_step, "train_runtime_s": train_s,
                      "train_loss": tr.training_loss, "eval_loss": ev["eval_loss"]}, sort_keys=True), flush=True)


if __name__ == "__main__":
    sys.exit(main())
