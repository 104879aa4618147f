#!/usr/bin/env bash
# Data-parallel scaling at the MiniLM shape (seq 128, fp32, 1 thread per rank): one process vs `mpirun -n 2`, per-rank
# batch 16 and 32, RUNS runs each, interleaved (1, 2, 1, 2, ...) so that a change in the machine's load hits both.
# Each run is `disttrain bench --data-parallel`: forward, backward, the Trainer's all-reduce (per layer as backward
# finishes it, word embeddings row-sparse), clipping and AdamW. Prints the medians, the aggregate speed-up, and the
# reducer's bus bandwidth against a bare MPI_Allreduce of the same bytes timed in the same 2-rank run.
#   bench/scaling.sh                  (env: RUNS=3 STEPS=6 BATCHES="16 32" BIND="--bind-to core" EXTRA="")
# EXTRA="--no-shared-memory" measures MPI's message path instead of the in-place node-shared-memory reduction.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
STEPS=${STEPS:-6}
BATCHES=${BATCHES:-"16 32"}
BIND=${BIND:---bind-to core}
EXTRA=${EXTRA:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift build -c release --product disttrain >/dev/null
BIN=.build/release/disttrain
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for b in $BATCHES; do
    for r in $(seq "$RUNS"); do
        "$BIN" bench --data-parallel --threads 1 --batch-size "$b" --steps "$STEPS" >> "$tmp/1-$b.jsonl"
        mpirun -n 2 $BIND "$BIN" bench --threads 1 --batch-size "$b" --steps "$STEPS" $EXTRA >> "$tmp/2-$b.jsonl"
    done
done
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp" $BATCHES <<'PY'
import json, statistics, sys
tmp, batches = sys.argv[1], sys.argv[2:]
def rows(w, b): return [json.loads(l) for l in open(f"{tmp}/{w}-{b}.jsonl")]
med = lambda xs: statistics.median(xs)
print(f"{'batch/rank':>10} {'1 proc tok/s':>13} {'2 ranks tok/s':>14} {'speed-up':>9} {'eff':>6} "
      f"{'AR MB/step':>10} {'AR s/step':>10} {'AR bus GB/s':>11} {'bare GB/s':>10} {'vs bare':>8} {'RSS MB':>7}")
for b in batches:
    one, two = rows(1, b), rows(2, b)
    t1 = med([r["tokens_per_s"] for r in one]); t2 = med([r["tokens_per_s"] for r in two])
    print(f"{b:>10} {t1:>13.0f} {t2:>14.0f} {t2 / t1:>8.2f}x {t2 / t1 / 2:>6.1%} "
          f"{med([r['allreduce_bytes'] for r in two]) / 1e6:>10.1f} {med([r['allreduce_s_median'] for r in two]):>10.4f} "
          f"{med([r['allreduce_bus_gbps'] for r in two]):>11.2f} {med([r['bare_allreduce_bus_gbps'] for r in two]):>10.2f} "
          f"{med([r['allreduce_vs_bare'] for r in two]):>8.2f} {med([r['peak_rss_mb'] for r in two]):>7.0f}")
    print(f"{'':>10} all-reduce path: {sorted(set(r['allreduce_path'] for r in two))}")
    print(f"{'':>10} runs (tokens/s): 1 proc {[round(r['tokens_per_s']) for r in one]}, 2 ranks {[round(r['tokens_per_s']) for r in two]}")
PY
