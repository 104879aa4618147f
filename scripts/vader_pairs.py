#!/usr/bin/env python3
"""Preference pairs from real human ratings: the VADER tweets (data/vader-tweets, field `score` = the mean rating of
the human raters on -4..+4), for the preference pipeline (examples/preference-pipeline).

What a pair is. The prompt is a tweet's first word ("I", "The", "My", "So", ...) and a response is the rest of a tweet
that starts with that word (with its leading space, as TRL joins prompt + response). Two tweets with the same first
word make a pair when the raters scored one at least --min-gap (1.0) higher: it is "chosen", the other "rejected".
Why this prompt: the pipeline's DPO step needs pairs that share a prompt, and its last step samples completions of
the same prompts from the SFT and the DPO policy and scores them with the reward model; a first word is a prompt both
policies can continue, and "which continuation of `I ...` did people rate more positive" is exactly what the pairs
teach. (Whole tweets as an implicit prompt would leave the policies nothing to continue.)

Pairing, seeded and deterministic: tweets are grouped by first word (exact, case-sensitive; one-word tweets are left
out); groups are visited in sorted order and each group's members in a random.Random(seed) shuffle; each member in
turn is paired with one partner drawn uniformly (same generator) among the group's members rated at least --min-gap
apart that it is not yet paired with; a member with no such partner makes no pair. So every tweet anchors at most
one pair, and a tweet may appear in several. --max-pairs keeps the first N pairs of a seeded shuffle of all pairs.
The test pairs come from the test split (seed + 1), so no test tweet is seen in training.

Writes into OUT: pairs-train.jsonl, pairs-test.jsonl ({"prompt", "chosen", "rejected"}), and prompts.txt (the
distinct prompts of the test pairs, most frequent first: what the pipeline samples from).

  python3 scripts/vader_pairs.py runs/preference-pipeline/data          # defaults: seed 0, gap 1.0
"""
import argparse
import collections
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "vader-tweets")


def read(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                o = json.loads(line)
                if not isinstance(o.get("text"), str) or not isinstance(o.get("score"), (int, float)):
                    sys.exit(f"{path}:{n}: expected {{\"text\": ..., \"score\": number}}")
                rows.append((o["text"], float(o["score"])))
    return rows


def pairs(rows, seed, gap):
    groups = collections.defaultdict(list)
    for text, score in rows:
        parts = text.split(None, 1)
        if len(parts) < 2:
            continue
        word = parts[0]
        rest = text[text.index(word) + len(word):]
        if not text.startswith(word) or not rest.strip():
            continue
        groups[word].append((rest, score))
    rng = random.Random(seed)
    out = []
    for word in sorted(groups):
        members = groups[word]
        order = list(range(len(members)))
        rng.shuffle(order)
        seen = set()
        for a in order:
            cands = [b for b in range(len(members)) if b != a and abs(members[a][1] - members[b][1]) >= gap
                     and (min(a, b), max(a, b)) not in seen and members[a][0] != members[b][0]]
            if not cands:
                continue
            b = rng.choice(cands)
            seen.add((min(a, b), max(a, b)))
            hi, lo = (a, b) if members[a][1] > members[b][1] else (b, a)
            out.append({"prompt": word, "chosen": members[hi][0], "rejected": members[lo][0],
                        "score_chosen": members[hi][1], "score_rejected": members[lo][1]})
    return out


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="folder to write (created)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-gap", type=float, default=1.0, help="chosen rated at least this much higher (default 1.0)")
    ap.add_argument("--max-pairs", type=int, default=0, help="keep at most N training pairs (0 = all)")
    ap.add_argument("--max-test-pairs", type=int, default=0, help="keep at most N test pairs (0 = all)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    train = pairs(read(os.path.join(DATA, "train.jsonl")), a.seed, a.min_gap)
    test = pairs(read(os.path.join(DATA, "test.jsonl")), a.seed + 1, a.min_gap)
    for rows, cap, s in ((train, a.max_pairs, a.seed), (test, a.max_test_pairs, a.seed + 1)):
        random.Random(s).shuffle(rows)
        if cap:
            del rows[cap:]
    write(os.path.join(a.out, "pairs-train.jsonl"), train)
    write(os.path.join(a.out, "pairs-test.jsonl"), test)
    counts = collections.Counter(r["prompt"] for r in test)
    with open(os.path.join(a.out, "prompts.txt"), "w", encoding="utf-8") as f:
        for p, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            f.write(p + "\n")
    gaps = [r["score_chosen"] - r["score_rejected"] for r in train]
    print(f"wrote {a.out}: {len(train)} training pairs ({len({r['prompt'] for r in train})} prompts, mean rating gap "
          f"{sum(gaps) / max(len(gaps), 1):.2f}), {len(test)} test pairs, {len(counts)} test prompts")


if __name__ == "__main__":
    main()
