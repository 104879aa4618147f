#!/usr/bin/env python3
"""
qa_interop.py -- checks that a question-answering folder written by `disttrain train --task question-answering` loads in
transformers' AutoModelForQuestionAnswering with no missing or unexpected tensors, that its loss on a QA file (run_qa
training features: only_second truncation, stride, padding to max_length) equals `disttrain eval`'s eval_loss, and
that run_qa's post-processing of its logits gives the answers `disttrain predict` gives.
Works both ways: FOLDER may also be one transformers' save_pretrained wrote (`--write-hf DIR BASE` writes such a
folder: BASE with a fresh qa_outputs, seeded), and our eval/predict must then match it.
Not run by the tests (they never call Python); run by hand and quote the output:
    disttrain eval --model FOLDER --eval-file FILE --max-length L --doc-stride S        # eval_loss, EM, F1
    disttrain predict --model FOLDER --input FILE --max-length L --doc-stride S --output preds.jsonl
    UTILS_QA=/path/to/utils_qa.py python3 scripts/goldens/qa_interop.py FOLDER FILE L S preds.jsonl
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

if sys.argv[1] == "--write-hf":
    out, base = sys.argv[2], sys.argv[3]
    torch.manual_seed(0)
    m = AutoModelForQuestionAnswering.from_pretrained(base, num_labels=2)
    m.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    print("wrote", out, type(m).__name__)
    sys.exit(0)

folder, path, L, S = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
preds_file = sys.argv[5] if len(sys.argv) > 5 else None
model, info = AutoModelForQuestionAnswering.from_pretrained(folder, output_loading_info=True)
model.eval()
print(type(model).__name__, {k: v for k, v in info.items() if v})
tok = AutoTokenizer.from_pretrained(folder)

examples = []
text = open(path, encoding="utf-8").read()
if text.lstrip().startswith("{") and '"data"' in text[:2000] and not text.lstrip().startswith('{"question'):
    for art in json.loads(text)["data"]:
        for p in art["paragraphs"]:
            for q in p["qas"]:
                examples.append({"id": q["id"], "question": q["question"], "context": p["context"],
                                 "answers": {"text": [a["text"] for a in q["answers"]], "answer_start": [a["answer_start"] for a in q["answers"]]}})
else:
    for i, line in enumerate(l for l in text.splitlines() if l.strip()):
        o = json.loads(line)
        a = o.get("answers", {"text": [], "answer_start": []})
        examples.append({"id": str(o.get("id", i)), "question": o["question"], "context": o["context"], "answers": a})

enc = tok([e["question"].lstrip() for e in examples], [e["context"] for e in examples], truncation="only_second", max_length=L,
          stride=S, return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
starts, ends, feats = [], [], []
total, count = 0.0, 0
for i in range(len(enc["input_ids"])):
    ex = examples[enc["overflow_to_sample_mapping"][i]]
    ids, offsets, seq = enc["input_ids"][i], enc["offset_mapping"][i], enc.sequence_ids(i)
    sp = ep = 0
    if ex["answers"]["answer_start"]:
        sc = ex["answers"]["answer_start"][0]
        ec = sc + len(ex["answers"]["text"][0])
        ts = 0
        while seq[ts] != 1:
            ts += 1
        te = len(ids) - 1
        while seq[te] != 1:
            te -= 1
        if offsets[ts][0] <= sc and offsets[te][1] >= ec:
            while ts < len(offsets) and offsets[ts][0] <= sc:
                ts += 1
            sp = ts - 1
            while offsets[te][1] >= ec:
                te -= 1
            ep = te + 1
    kw = {"input_ids": torch.tensor([ids]), "attention_mask": torch.tensor([enc["attention_mask"][i]])}
    if "token_type_ids" in enc and model.config.model_type == "bert":
        kw["token_type_ids"] = torch.tensor([enc["token_type_ids"][i]])
    with torch.no_grad():
        out = model(**kw, start_positions=torch.tensor([sp]), end_positions=torch.tensor([ep]))
    total += out.loss.item(); count += 1
    starts.append(out.start_logits[0].numpy()); ends.append(out.end_logits[0].numpy())
    feats.append({"example_id": ex["id"], "offset_mapping": [o if seq[k] == 1 else None for k, o in enumerate(offsets)]})
print(f"eval_loss {total / count:.8f} over {count} windows")

if preds_file and os.environ.get("UTILS_QA"):
    import types
    src = open(os.environ["UTILS_QA"], encoding="utf-8").read()
    ns = {"__name__": "ref"}
    exec(compile(src, os.environ["UTILS_QA"], "exec"), ns)

    class Ex(list):
        def __getitem__(self, k):
            return [e[k] for e in self] if isinstance(k, str) else list.__getitem__(self, k)
    res = ns["postprocess_qa_predictions"](Ex(examples), feats, (starts, ends))
    answers = res[0] if isinstance(res, tuple) else res
    ours = [json.loads(l) for l in open(preds_file, encoding="utf-8") if l.strip()]
    ours = [o for o in ours if "answer" in o]
    same = sum(1 for e, o in zip(examples, ours) if answers[e["id"]] == o["answer"])
    print(f"answers equal to disttrain predict: {same} of {len(examples)}")
    for e, o in zip(examples, ours):
        if answers[e["id"]] != o["answer"]:
            print("  differs:", e["id"], repr(answers[e["id"]]), "vs", repr(o["answer"]))
