"""Reference timing for bench/tokenizer_throughput.sh: the PyPI `tokenizers` (Rust) library, one thread.

usage: python hf_throughput.py TOKENIZER_JSON INPUT [RUNS]
Texts are read exactly as `disttrain tokenize --bench` reads them: for .jsonl the "text" fields, otherwise the
non-empty lines. Each run encodes them all with special tokens via encode_batch; the caller sets
RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false so the batch is encoded serially on one thread.
Prints one JSON object shaped like the Swift side's (median of RUNS runs).
"""
import json, sys, time
from tokenizers import Tokenizer

path, inp = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
tok = Tokenizer.from_file(path)
tok.no_padding()
tok.no_truncation()
if inp.endswith(".jsonl"):
    texts = [json.loads(l)["text"] for l in open(inp, encoding="utf-8") if l.strip()]
else:
    texts = [l for l in open(inp, encoding="utf-8", newline="").read().split("\n") if l]
nbytes = sum(len(t.encode("utf-8")) for t in texts)
times, ntok = [], 0
for _ in range(runs):
    t0 = time.perf_counter()
    encs = tok.encode_batch(texts, add_special_tokens=True)
    times.append(time.perf_counter() - t0)
    ntok = sum(len(e.ids) for e in encs)
med = sorted(times)[len(times) // 2]
print(json.dumps({"impl": "hf-tokenizers", "input": inp, "texts": len(texts), "bytes": nbytes, "tokens": ntok,
                  "runs_s": [round(t, 4) for t in times], "median_s": round(med, 4),
                  "mb_per_s": round(nbytes / 1e6 / med, 3), "tokens_per_s": round(ntok / med)}))
