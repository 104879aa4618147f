#!/usr/bin/env python3
"""
ner_interop.py -- checks that a token-classification folder written by `disttrain train --task token-classification`
loads in transformers' AutoModelForTokenClassification with no missing or unexpected tensors, and that its loss on a
CoNLL file (run_ner alignment, no truncation) equals `disttrain eval`'s eval_loss on the same file.
Works both ways: FOLDER may also be one transformers' save_pretrained wrote (our `eval` must then match its loss).
Not run by the tests (they never call Python); run by hand and quote the output:
    disttrain eval --model FOLDER --eval-file FILE.conll --max-length 40   # prints eval_loss
    python3 scripts/goldens/ner_interop.py FOLDER FILE.conll
"""
import sys

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

folder, conll = sys.argv[1], sys.argv[2]
model, info = AutoModelForTokenClassification.from_pretrained(folder, output_loading_info=True)
model.eval()
print(type(model).__name__, {k: v for k, v in info.items() if v})
tok = AutoTokenizer.from_pretrained(folder)
label2id = model.config.label2id
sents, words, tags = [], [], []
for line in open(conll, encoding="utf-8"):
    cols = line.split()
    if not cols or cols[0] == "-DOCSTART-":
        if words:
            sents.append((words, tags))
        words, tags = [], []
        continue
    words.append(cols[0]); tags.append(cols[-1])
if words:
    sents.append((words, tags))
total, count = 0.0, 0
for w, t in sents:
    enc = tok(w, is_split_into_words=True, return_tensors="pt")
    labels, prev = [], None
    for wid in enc.word_ids(0):
        labels.append(-100 if wid is None or wid == prev else label2id[t[wid]])
        prev = wid
    labels = torch.tensor([labels])
    with torch.no_grad():
        logits = model(**enc).logits
    total += torch.nn.functional.cross_entropy(logits[0], labels[0], ignore_index=-100, reduction="sum").item()
    count += int((labels != -100).sum())
print(f"eval_loss {total / count:.8f} over {count} labelled tokens")
