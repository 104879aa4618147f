# Golden for `disttrain tokenize` (CommandFrictionTests): what a transformers tokenizer call returns
# (input_ids, attention_mask, token_type_ids when the tokenizer's model_input_names has it) for each line of
# input.jsonl, with the fixture tokenizers of bert-tiny-cls and gpt2-tiny-lm, untruncated and at max_length 6.
# Run from the repository root: python3 Tests/ModelTests/Fixtures/tokenize-hf/generate.py
import json, os
from transformers import AutoTokenizer

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.dirname(here)
rows = [json.loads(l) for l in open(os.path.join(here, "input.jsonl")) if l.strip()]
out = {}
for name in ["bert-tiny-cls", "gpt2-tiny-lm"]:
    tok = AutoTokenizer.from_pretrained(os.path.join(fixtures, name))
    for max_length in [None, 6]:
        key = f"{name}/{max_length or 'full'}"
        out[key] = []
        for r in rows:
            kw = {"truncation": "longest_first", "max_length": max_length} if max_length else {}
            enc = tok(r["text"], r.get("text_pair"), **kw)
            out[key].append({k: list(v) for k, v in enc.items()})
with open(os.path.join(here, "golden.json"), "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
