"""Derive prompt->response pairs from Hamlet for supervised fine-tuning tests and demos.

Each pair is one exchange of the play: the prompt is "SPEAKER: line" and the response is the next speaker's
"SPEAKER: line". Reads lm.jsonl (the play in chunks), writes pairs.jsonl. Deterministic; no dependencies.
"""
import json

speeches = []  # (speaker, text)
for raw in open("lm.jsonl", encoding="utf-8"):
    lines = json.loads(raw)["text"].split("\n")
    speaker, buf = None, []
    for ln in lines:
        s = ln.strip()
        if s.isupper() and 1 < len(s) < 30 and not s.startswith(("ACT", "SCENE")):
            if speaker and buf:
                speeches.append((speaker, " ".join(buf)))
            speaker, buf = s, []
        elif speaker and s:
            buf.append(s)
    if speaker and buf:
        speeches.append((speaker, " ".join(buf)))

with open("pairs.jsonl", "w", encoding="utf-8") as out:
    n = 0
    for (a, ta), (b, tb) in zip(speeches, speeches[1:]):
        if a == b or len(ta) > 300 or len(tb) > 300:
            continue
        out.write(json.dumps({"prompt": f"{a.title()}: {ta}\n", "response": f"{b.title()}: {tb}"}) + "\n")
        n += 1
print(n, "pairs")
