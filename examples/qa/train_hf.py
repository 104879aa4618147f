#!/usr/bin/env python3
"""
train_hf.py -- the Hugging Face Trainer side of the side-by-side run (examples/qa/README.md): the same data, model and
settings as `disttrain train --config examples/qa/train.yaml`, with run_qa's preprocessing (question.lstrip(),
only_second truncation with stride, overflow windows, padding to max_length, prepare_train_features targets,
prepare_validation_features offsets), run_qa's post-processing (postprocess_qa_predictions from transformers'
examples/pytorch/question-answering/utils_qa.py, passed as UTILS_QA=path: the examples are not in the wheel) and the
official SQuAD v1.1 EM/F1 (compute_exact / compute_f1 of transformers 4's squad_metrics.py, SQUAD_METRICS=path; see
scripts/goldens/qa_goldens.py for how to get both).
Usage: UTILS_QA=... SQUAD_METRICS=... python3 examples/qa/train_hf.py OUTPUT_DIR [EPOCHS] [LR] [SEED]
Not a test dependency: run by hand to quote its eval_exact_match / eval_f1 next to disttrain's.
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import set_seed, AutoModelForQuestionAnswering, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

HERE = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1]
epochs = float(sys.argv[2]) if len(sys.argv) > 2 else 10
lr = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 42
L, S = 384, 128
model_dir = os.path.join(HERE, "..", "..", "models", "all-MiniLM-L6-v2")


def reference(path, names):
    src = "\n".join(l for l in open(path, encoding="utf-8").read().splitlines() if not l.startswith("from ..."))
    import logging, types
    ns = {"__name__": "ref", "logging": types.SimpleNamespace(get_logger=logging.getLogger)}   # squad_metrics' package logger
    exec(compile(src, path, "exec"), ns)
    return [ns[n] for n in names]


postprocess, = reference(os.environ["UTILS_QA"], ["postprocess_qa_predictions"])
compute_exact, compute_f1 = reference(os.environ["SQUAD_METRICS"], ["compute_exact", "compute_f1"])
examples = [json.loads(l) for l in open(os.path.join(HERE, "data", "all.jsonl"), encoding="utf-8")]
tok = AutoTokenizer.from_pretrained(model_dir)


def tokenize(exs):
    return tok([e["question"].lstrip() for e in exs], [e["context"] for e in exs], truncation="only_second", max_length=L,
               stride=S, return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")


enc = tokenize(examples)
train_feats, eval_feats = [], []
for i in range(len(enc["input_ids"])):
    ex = examples[enc["overflow_to_sample_mapping"][i]]
    ids, offsets, seq = enc["input_ids"][i], enc["offset_mapping"][i], enc.sequence_ids(i)
    sc = ex["answers"]["answer_start"][0]
    ec = sc + len(ex["answers"]["text"][0])
    ts = 0
    while seq[ts] != 1:
        ts += 1
    te = len(ids) - 1
    while seq[te] != 1:
        te -= 1
    sp = ep = 0
    if offsets[ts][0] <= sc and offsets[te][1] >= ec:
        while ts < len(offsets) and offsets[ts][0] <= sc:
            ts += 1
        sp = ts - 1
        while offsets[te][1] >= ec:
            te -= 1
        ep = te + 1
    f = {"input_ids": ids, "attention_mask": enc["attention_mask"][i], "token_type_ids": enc["token_type_ids"][i]}
    train_feats.append(dict(f, start_positions=sp, end_positions=ep))
    eval_feats.append({"example_id": ex["id"], "offset_mapping": [o if seq[k] == 1 else None for k, o in enumerate(offsets)]})
print(len(examples), "questions,", len(train_feats), "windows")

torch.set_num_threads(1)
set_seed(seed)   # as run_qa/run_ner: seeded before the model, so the fresh head is the same on every run
model = AutoModelForQuestionAnswering.from_pretrained(model_dir)
args = TrainingArguments(output_dir=out, num_train_epochs=epochs, per_device_train_batch_size=8, per_device_eval_batch_size=32,
                         learning_rate=lr, warmup_steps=0.1, weight_decay=0.0,   # transformers 5: a float < 1 is the warmup ratio
                         lr_scheduler_type="linear", seed=seed,
                         logging_steps=5, save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0)
trainer = Trainer(model=model, args=args, train_dataset=train_feats, data_collator=default_data_collator)
train_out = trainer.train()
pred = trainer.predict([{k: v for k, v in f.items() if k not in ("start_positions", "end_positions")} for f in train_feats])
starts, ends = pred.predictions


class Ex(list):
    def __getitem__(self, k):
        return [e[k] for e in self] if isinstance(k, str) else list.__getitem__(self, k)


res = postprocess(Ex(examples), eval_feats, (starts, ends))
answers = res[0] if isinstance(res, tuple) else res
em = np.mean([max(compute_exact(g, answers[e["id"]]) for g in e["answers"]["text"]) for e in examples]) * 100
f1 = np.mean([max(compute_f1(g, answers[e["id"]]) for g in e["answers"]["text"]) for e in examples]) * 100
result = {"eval_exact_match": em, "eval_f1": f1, "train_loss": train_out.training_loss, "train_runtime_s": train_out.metrics["train_runtime"]}
print(json.dumps(result))
os.makedirs(out, exist_ok=True)
json.dump(result, open(os.path.join(out, "eval_results.json"), "w"))
with open(os.path.join(out, "predictions.jsonl"), "w", encoding="utf-8") as f:   # per question, to compare with predict
    for e in examples:
        f.write(json.dumps({"id": e["id"], "question": e["question"], "answer": answers[e["id"]]}, ensure_ascii=False) + "\n")
