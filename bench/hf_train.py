# The Hugging Face side of bench/vs_pytorch.sh's end-to-end pair (E2E=1): fine-tune all-MiniLM-L6-v2 on SMS spam with
# transformers' Trainer at the README's settings (1 epoch, batch 32, lr 1e-4, linear schedule with 10 % warm-up,
# seed 42, max length 128, weight decay 0, clipping at 1, dropout on), then accuracy on the test file. Prints one
# JSON line; the driver times the whole process. Run under torchrun for data parallelism (per-device batch =
# 32 / world size, gloo).
#   python bench/hf_train.py --threads 2 [--group-by-length] [--max-steps 3]
import argparse
import json
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--group-by-length", action="store_true")
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--model", default=os.path.join(ROOT, "models/all-MiniLM-L6-v2"))
    p.add_argument("--data", default=os.path.join(ROOT, "data/sms-spam"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    train, test = read(os.path.join(args.data, "train.jsonl")), read(os.path.join(args.data, "test.jsonl"))
    labels = sorted({r["label"] for r in train})
    label2id = {l: i for i, l in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)

    def encode(rows):
        enc = tok([r["text"] for r in rows], truncation=True, max_length=128)
        return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                 "labels": label2id[r["label"]]} for i, r in enumerate(rows)]

    train_ds, test_ds = encode(train), encode(test)
    out = tempfile.mkdtemp(prefix="hf-sms-")
    targs = TrainingArguments(
        output_dir=out, num_train_epochs=1, max_steps=args.max_steps, per_device_train_batch_size=32 // world,
        per_device_eval_batch_size=64, learning_rate=1e-4, warmup_steps=0.1, lr_scheduler_type="linear",
        weight_decay=0.0, max_grad_norm=1.0, seed=42, use_cpu=True, report_to="none", save_strategy="no",
        eval_strategy="no", logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if args.group_by_length else "random",
        ddp_backend="gloo" if world > 1 else None)

    def accuracy(ev):
        return {"accuracy": float((ev.predictions.argmax(-1) == ev.label_ids).mean())}

    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, eval_dataset=test_ds,
                      data_collator=DataCollatorWithPadding(tok), compute_metrics=accuracy)
    t0 = time.perf_counter()
    tr = trainer.train()
    train_s = time.perf_counter() - t0
    ev = trainer.evaluate()
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"impl": "hf-trainer", "world_size": world, "threads": args.threads,
                          "group_by_length": args.group_by_length, "steps": tr.global_step,
                          "train_runtime_s": train_s, "eval_accuracy": ev["eval_accuracy"],
                          "train_loss": tr.training_loss}, sort_keys=True), flush=True)


if __name__ == "__main__":
    sys.exit(main())
