"""Differential fuzz: disttrain tokenize vs the PyPI `tokenizers` wheel on seeded random Unicode strings.

usage: python differential.py DISTTRAIN_BIN FIXTURES_DIR [N] [SEED]
Writes N random texts (all planes, controls, combining marks, CJK, emoji, whitespace runs, literal specials)
plus pairs, runs `disttrain tokenize` and `tokenizers` on them for BERT and GPT-2, and prints every mismatch.
Exit status 1 on any mismatch. Not part of `swift test` (needs the wheel); run it by hand after changes.
"""
import json, os, random, subprocess, sys, tempfile
from tokenizers import Tokenizer

binary, fix = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 7)
frags = ["[CLS]", "[SEP]", "[MASK]", "<|endoftext|>", "'s", "'ll", "'RE", " '", "\r\n", "  ", "\u200d", "\ufeff",
         "\ufffd", "e\u0301", "\U0001F469\u200d\U0001F4BB", "1\ufe0f\u20e3", "##", "\x00", "\x85", "İ", "ß", "Σ", "ﬁ"]
ranges = [(0x20, 0x7E)] * 3 + [(0, 0x1F), (0x7F, 0xFF), (0x300, 0x36F), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
          (0x1F300, 0x1FAFF), (0x100, 0x2FFF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF), (0x3000, 0x30FF), (0x2000, 0x206F)]

def scalar():
    while True:
        lo, hi = rng.choice(ranges)
        v = rng.randint(lo, hi)
        if not 0xD800 <= v <= 0xDFFF:
            return chr(v)

def text():
    k = rng.randint(100, 300) if rng.random() < 0.05 else rng.randint(0, 30)
    out = []
    while len(out) < k:
        r = rng.random()
        if r < 0.08: out.append(rng.choice(frags))
        elif r < 0.12: out.append(scalar() * rng.randint(2, 120))
        else: out.append(scalar())
    return "".join(out)

records = []
for i in range(n):
    r = {"text": text()}
    if i % 4 == 0: r["text_pair"] = text()
    records.append(r)
tmp = tempfile.mkdtemp()
inp = os.path.join(tmp, "in.jsonl")
with open(inp, "w", encoding="utf-8") as f:
    for r in records: f.write(json.dumps(r) + "\n")

bad = 0
for name, folder, tj in [("bert", "bert-base-uncased", "bert-base-uncased/tokenizer.json"),
                         ("gpt2", "gpt2", "gpt2-tokenizer-json/tokenizer.json")]:
    tok = Tokenizer.from_file(os.path.join(fix, tj)); tok.no_padding(); tok.no_truncation()
    for extra, trunc in [([], None), (["--max-length", "12"], 12)]:
        out = subprocess.run([binary, "tokenize", "--tokenizer", os.path.join(fix, folder), "--input", inp] + extra,
                             capture_output=True, text=True, check=True).stdout.splitlines()
        if trunc: tok.enable_truncation(trunc, strategy="longest_first")
        else: tok.no_truncation()
        mism = 0
        for r, line in zip(records, out):
            got = json.loads(line)
            got.setdefault("token_type_ids", [0] * len(got["input_ids"]))  # GPT-2's: transformers returns none
            e = tok.encode(r["text"], r.get("text_pair"), add_special_tokens=True)
            if got["input_ids"] != e.ids or got["tokens"] != e.tokens or got["token_type_ids"] != e.type_ids:
                mism += 1
                if mism <= 5:
                    print(name, extra, "MISMATCH", ascii(r)[:300])
                    for k, h in [("input_ids", e.ids), ("tokens", e.tokens), ("token_type_ids", e.type_ids)]:
                        if got[k] != h:
                            i = next((j for j, (x, y) in enumerate(zip(got[k], h)) if x != y), min(len(got[k]), len(h)))
                            print("  ", k, "first difference at", i, "swift", got[k][max(0, i - 3):i + 8], "hf", h[max(0, i - 3):i + 8],
                                  "lengths", len(got[k]), len(h))
            if name == "gpt2" and not trunc and "text_pair" not in r and tok.decode(e.ids, skip_special_tokens=False) != r["text"]:
                print("hf round trip differs", ascii(r["text"])[:200])
        print(f"{name} {extra}: {len(out)} lines, {mism} mismatches")
        bad += mism + abs(len(out) - len(records))
sys.exit(1 if bad else 0)
