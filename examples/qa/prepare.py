#!/usr/bin/env python3
"""
prepare.py -- the real extractive-QA questions this repository ships (data/qa-allennlp: 5 SQuAD v1.1 questions on
the "University of Notre Dame" article and 12 QuAC questions on "The break" of hip hop, both CC BY-SA 4.0, as shipped
in the PyPI wheel allennlp 0.9.0, Apache-2.0, allennlp/tests/fixtures/data/{squad,quac_sample}.json) as JSONL
{"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}} lines, the format of
`disttrain train --task question-answering` (it reads the SQuAD JSON directly too).
QuAC marks unanswerable questions with the answer "CANNOTANSWER", a word appended to every context: it is kept as
an ordinary span (the way extractive models are trained on QuAC), so the set is SQuAD v1-style.
Writes examples/qa/data/all.jsonl (17 questions). Standard library only.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "data", "qa-allennlp")
out = []
for name in ["squad-notre-dame.json", "quac-sample.json"]:
    for article in json.load(open(os.path.join(DATA, name), encoding="utf-8"))["data"]:
        for p in article["paragraphs"]:
            for q in p["qas"]:
                ans = q["answers"]
                out.append({"id": q["id"], "question": q["question"], "context": p["context"],
                            "answers": {"text": [a["text"] for a in ans], "answer_start": [a["answer_start"] for a in ans]}})
os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
with open(os.path.join(HERE, "data", "all.jsonl"), "w", encoding="utf-8") as f:
    for e in out:
        f.write(json.dumps(e, ensure_ascii=False) + "\n")
print(len(out), "questions ->", os.path.join("examples", "qa", "data", "all.jsonl"))
