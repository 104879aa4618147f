#!/usr/bin/env bash
# Tokenizer throughput, single thread: disttrain's Swift Tokenizers vs the PyPI `tokenizers` (Rust) wheel,
# side by side on the repository's Hamlet text (data/hamlet-lm/lm.jsonl) and SMS-spam texts (data/sms-spam/all.jsonl),
# WordPiece (bert-base-uncased) and byte-level BPE (GPT-2). Medians of RUNS runs; MB/s counts UTF-8 input bytes,
# tokens/s counts ids incl. specials. The wheel is installed with pip into a scratch virtualenv (a fresh `mktemp -d`
# folder, removed at the end, unless VENV names one to reuse); the project never depends on it.
#   bench/tokenizer_throughput.sh            (env: RUNS=5 DATA=<repo>/data VENV=<a virtualenv to reuse>)
# Needs `Tokenize` registered in disttrain's root command (main.swift).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
DATA=${DATA:-$(pwd)/data}
if [ -z "${VENV:-}" ]; then
    VENV=$(mktemp -d)
    trap 'rm -rf "$VENV"' EXIT
fi
FIX=Tests/TokenizersTests/Fixtures

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import tokenizers" 2>/dev/null; then
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q tokenizers
fi
swift build -c release --product disttrain >/dev/null
BIN=.build/release/disttrain
"$BIN" tokenize --help >/dev/null 2>&1 || { echo "disttrain has no 'tokenize' subcommand: register Tokenize in main.swift" >&2; exit 1; }

export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
printf "%-6s %-10s %-15s %9s %12s %9s\n" model input impl "MB/s" "tokens/s" median_s
for model in bert gpt2; do
    if [ $model = bert ]; then dir=$FIX/bert-base-uncased; json=$FIX/bert-base-uncased/tokenizer.json
    else dir=$FIX/gpt2; json=$FIX/gpt2-tokenizer-json/tokenizer.json; fi
    for input in "$DATA/hamlet-lm/lm.jsonl" "$DATA/sms-spam/all.jsonl"; do
        s=$("$BIN" tokenize --tokenizer "$dir" --input "$input" --bench --bench-runs "$RUNS")
        h=$("$VENV/bin/python" bench/tokenizers/hf_throughput.py "$json" "$input" "$RUNS")
        for line in "$s" "$h"; do
            python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%-6s %-10s %-15s %9.3f %12.0f %9.4f  (%d texts, %d bytes, %d tokens)" % (sys.argv[2], sys.argv[3], d["impl"], d["mb_per_s"], d["tokens_per_s"], d["median_s"], d["texts"], d["bytes"], d["tokens"]))' "$line" $model "$(basename "$input")"
        done
        python3 -c 'import json,sys; s=json.loads(sys.argv[1]); h=json.loads(sys.argv[2]); print("       speed-up swift/hf: %.2fx%s" % (h["median_s"]/s["median_s"], "" if s["tokens"]==h["tokens"] else "   WARNING: token counts differ"))' "$s" "$h"
    done
done
