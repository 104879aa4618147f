"""Split lm.jsonl and pairs.jsonl into train and held-out test files for the GPT-2 examples.

Rows whose index % 10 != 9 go to *-train.jsonl, the others to *-test.jsonl (the rule of every set in data/).
Deterministic; no dependencies. Run from this folder: python3 split.py
"""
for name in ("lm", "pairs"):
    rows = open(f"{name}.jsonl", encoding="utf-8").read().splitlines(keepends=True)
    for part, keep in (("train", lambda i: i % 10 != 9), ("test", lambda i: i % 10 == 9)):
        with open(f"{name}-{part}.jsonl", "w", encoding="utf-8") as out:
            out.writelines(r for i, r in enumerate(rows) if keep(i))
    print(name, len(rows), "rows")
