#!/usr/bin/env python3
"""
train_hf.py -- the Hugging Face Trainer side of the side-by-side run (examples/ner/README.md): the same data, model
and settings as `disttrain train --task token-classification` there, with run_ner's preprocessing (is_split_into_words,
first sub-token labelled, -100 elsewhere, max_length truncation) and run_ner's seqeval metrics (default mode).
Usage: python3 examples/ner/train_hf.py OUTPUT_DIR [EPOCHS] [LR]
Not a test dependency: run by hand to quote its eval_f1 next to disttrain's.
"""
import json
import os
import sys

import numpy as np
import torch
from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
from transformers import (set_seed, AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification, Trainer,
                          TrainingArguments)

HERE = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1]
epochs = float(sys.argv[2]) if len(sys.argv) > 2 else 3
lr = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
model_dir = os.path.join(HERE, "..", "..", "models", "all-MiniLM-L6-v2")


def load(name):
    return [json.loads(l) for l in open(os.path.join(HERE, "data", name), encoding="utf-8")]


train, test = load("train.jsonl"), load("test.jsonl")
labels = sorted({t for r in train for t in r["tags"]})          # run_ner's get_label_list
l2i = {l: i for i, l in enumerate(labels)}
tok = AutoTokenizer.from_pretrained(model_dir)


def encode(rows):
    feats = []
    for r in rows:
        e = tok(r["tokens"], is_split_into_words=True, truncation=True, max_length=128)
        prev, lab = None, []
        for w in e.word_ids():
            lab.append(-100 if w is None or w == prev else l2i[r["tags"][w]])
            prev = w
        e["labels"] = lab
        feats.append(dict(e))
    return feats


set_seed(42)   # as run_qa/run_ner: seeded before the model, so the fresh head is the same on every run
model = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                                        label2id=l2i)


def metrics(p):
    preds = np.argmax(p.predictions, axis=2)
    tp = [[labels[q] for q, l in zip(pr, la) if l != -100] for pr, la in zip(preds, p.label_ids)]
    tl = [[labels[l] for q, l in zip(pr, la) if l != -100] for pr, la in zip(preds, p.label_ids)]
    return {"precision": precision_score(tl, tp), "recall": recall_score(tl, tp), "f1": f1_score(tl, tp),
            "accuracy": accuracy_score(tl, tp)}


args = TrainingArguments(output_dir=out, num_train_epochs=epochs, per_device_train_batch_size=16, per_device_eval_batch_size=64,
                         learning_rate=lr, warmup_steps=0.1,   # transformers 5: a float < 1 is the warmup ratio
                         weight_decay=0.0, seed=42, logging_steps=20, save_strategy="no",
                         eval_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0)
torch.set_num_threads(2)
trainer = Trainer(model=model, args=args, train_dataset=encode(train), eval_dataset=encode(test),
                  data_collator=DataCollatorForTokenClassification(tok), compute_metrics=metrics)
trainer.train()
res = trainer.evaluate()
print(json.dumps(res))
json.dump(res, open(os.path.join(out, "eval_results_hf.json"), "w"), indent=1)
