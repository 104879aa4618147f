#!/usr/bin/env bash
# render_report.sh: renders a run's report.html with headless Chromium into a PNG, to check it displays.
# Not part of the default test run (needs Chromium: `apt-get install -y chromium`).
#   scripts/render_report.sh [OUTPUT_DIR] [PNG]
# Without OUTPUT_DIR it first trains the tiny test fixture for a few steps into a temporary folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-}"
png="${2:-${out:-/tmp}/report.png}"
bin="$root/.build/debug/disttrain"
browser="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$browser" ] || { echo "error: chromium not found; install it with: apt-get install -y chromium" >&2; exit 2; }

if [ -z "$out" ]; then
  [ -x "$bin" ] || (cd "$root" && swift build)
  work="$(mktemp -d)"
  out="$work/run"
  png="${2:-$work/report.png}"
  for i in $(seq 0 39); do
    if [ $((i % 2)) -eq 0 ]; then echo "{\"text\": \"free prize $i call now to claim\", \"label\": \"spam\"}"
    else echo "{\"text\": \"see you at lunch on day $i\", \"label\": \"ham\"}"; fi
  done > "$work/train.jsonl"
  "$bin" train --model "$root/Tests/ModelTests/Fixtures/bert-tiny-cls" --train-file "$work/train.jsonl" \
    --eval-file "$work/train.jsonl" --output-dir "$out" --batch-size 4 --num-train-epochs 3 --max-length 32 \
    --logging-steps 2 --eval-steps 5 --learning-rate 1e-3 --log-level warning
fi
[ -f "$out/report.html" ] || { echo "error: $out/report.html not found; train with disttrain first" >&2; exit 1; }

"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --screenshot="$png" \
  --window-size=1200,1600 "file://$(cd "$out" && pwd)/report.html" >/dev/null 2>&1
size=$(stat -c %s "$png" 2>/dev/null || echo 0)
[ "$size" -gt 20000 ] || { echo "error: $png is only $size bytes; the page did not render" >&2; exit 1; }
echo "$png ($size bytes) from $out/report.html"
