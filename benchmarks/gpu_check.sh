#!/usr/bin/env bash
# One command for the day a GPU is lent: about 5 minutes on one H100/H200.
#
#   bash benchmarks/gpu_check.sh            # run everything
#   bash benchmarks/gpu_check.sh --dry-run  # resolve every step, train nothing (works on a CPU machine)
#
# Steps:
#   1. the device (nvidia-smi when present) and the torch version;
#   2. the packages llmbook needs that this Python lacks, installed from the wheels in .whl/
#      (benchmarks/prepare_gpu_wheels.sh fills it beforehand; no network needed) into $SITE;
#   3. the `gpu` character GPT benchmark (nanoGPT's shakespeare_char) with torch.compile, bf16
#      autocast (fp16 with loss scaling on a T4), for at most $BENCH_SECONDS s of training:
#      tokens/s, MFU, peak memory, time to validation 1.47;
#   4. the chapters at the `gpu` budget as plain Python (benchmarks/run_chapters.py), within
#      $CHAPTER_SECONDS s for all of them;
#   5. a one-table summary, also written to $OUT/summary.md.
# Environment: PYTHON (default python3), OUT (default /tmp/llmbook-gpu-check), SITE (default
# /tmp/llmbook-site), BENCH_SECONDS (default 75), CHAPTER_SECONDS (default 120).
set -uo pipefail

DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown option $arg (use --dry-run or nothing)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-/tmp/llmbook-gpu-check}"
SITE="${SITE:-/tmp/llmbook-site}"
BENCH_SECONDS="${BENCH_SECONDS:-75}"
CHAPTER_SECONDS="${CHAPTER_SECONDS:-120}"
mkdir -p "$OUT"
START=$(date +%s)
FAILED=0
step() { echo; echo "== $* ($(( $(date +%s) - START )) s)"; }

step "1. device"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
  echo "nvidia-smi: not found (no NVIDIA driver on this machine)"
fi
if ! "$PYTHON" -c "import torch; print('torch', torch.__version__, '| CUDA available:', torch.cuda.is_available())"; then
  echo "PyTorch cannot be imported by $PYTHON: install it first (the GPU machine should have it)" >&2
  exit 1
fi
if [ "$DRY" = 0 ] && ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA GPU visible to PyTorch: this check needs one (use --dry-run to check the steps on a CPU)" >&2
  exit 1
fi

step "2. packages"
# wheel file prefix -> module it provides; only what this Python lacks is installed.
declare -A MODULE=(
  [numpy]=numpy [matplotlib]=matplotlib [contourpy]=contourpy [cycler]=cycler [fonttools]=fontTools
  [kiwisolver]=kiwisolver [packaging]=packaging [pillow]=PIL [pyparsing]=pyparsing
  [python_dateutil]=dateutil [tqdm]=tqdm [safetensors]=safetensors [tokenizers]=tokenizers
)
NEEDED=()
MISSING_WHEELS=()
for prefix in $(printf '%s\n' "${!MODULE[@]}" | sort); do
  module="${MODULE[$prefix]}"
  wheel=$(ls "$ROOT"/.whl/"$prefix"-[0-9]*.whl 2>/dev/null | head -n 1)
  if "$PYTHON" -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('$module') else 1)" 2>/dev/null; then
    echo "  $module: present${wheel:+ (wheel ready: $(basename "$wheel"))}${wheel:- (no wheel in .whl/: a GPU machine without $module would stop here)}"
    continue
  fi
  if [ -n "$wheel" ]; then
    echo "  $module: missing, will install $(basename "$wheel")"
    NEEDED+=("$wheel")
  else
    echo "  $module: missing, and no $prefix wheel in .whl/ (run benchmarks/prepare_gpu_wheels.sh where there is network)"
    MISSING_WHEELS+=("$prefix")
  fi
done
if [ "${#MISSING_WHEELS[@]}" -gt 0 ]; then
  echo "cannot go on: no wheel for ${MISSING_WHEELS[*]}" >&2
  exit 1
fi
if [ "${#NEEDED[@]}" -gt 0 ] && [ "$DRY" = 0 ]; then
  "$PYTHON" -m pip install --quiet --no-index --no-deps --target "$SITE" "${NEEDED[@]}" || exit 1
fi
export PYTHONPATH="$ROOT/code${NEEDED:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
if [ -d "$ROOT/.gpu_data" ]; then
  export LLMBOOK_DATA_MIRROR="$ROOT/.gpu_data"
elif [ -z "${LLMBOOK_DATA_MIRROR:-}" ]; then
  for candidate in "$ROOT/shared/data" "$ROOT/../shared/data" "$ROOT/../../shared/data"; do
    if [ -d "$candidate" ]; then export LLMBOOK_DATA_MIRROR="$(cd "$candidate" && pwd)"; break; fi
  done
fi
export LLMBOOK_DATA_DIR="$OUT/data-cache"
echo "  data mirror: ${LLMBOOK_DATA_MIRROR:-none (the data cache or the network)}"
if [ "$DRY" = 1 ] && [ "${#NEEDED[@]}" -gt 0 ]; then
  echo "  (dry run: nothing installed; the checks below use this machine's own packages)"
fi
"$PYTHON" -c "import llmbook, llmbook.train, llmbook.models; print('  llmbook from', llmbook.__file__)" || exit 1

SKIP=()
if ! "$PYTHON" -c "import scipy, gensim" 2>/dev/null; then
  SKIP=(03)
  echo "  chapter 3 will be skipped: it needs scipy and gensim (63 MB of wheels, more than can travel)"
fi

step "3. gpu benchmark: character GPT, nanoGPT's shakespeare_char"
BENCH_ARGS=(--budget gpu --compile --max-seconds "$BENCH_SECONDS" --target 1.47 --json "$OUT/benchmark.json")
if [ "$DRY" = 1 ]; then
  BENCH_ARGS+=(--dry-run)
fi
if ! "$PYTHON" "$ROOT/benchmarks/train_char_gpt.py" "${BENCH_ARGS[@]}" 2>&1 | tee "$OUT/benchmark.log"; then
  if [ "$DRY" = 1 ]; then
    FAILED=1
  else
    echo "the compiled run failed (log: $OUT/benchmark.log); once more without torch.compile"
    EAGER_ARGS=()
    for arg in "${BENCH_ARGS[@]}"; do [ "$arg" = --compile ] || EAGER_ARGS+=("$arg"); done
    "$PYTHON" "$ROOT/benchmarks/train_char_gpt.py" "${EAGER_ARGS[@]}" 2>&1 | tee -a "$OUT/benchmark.log" || FAILED=1
  fi
fi

step "4. chapters at the gpu budget, as plain Python"
CHAPTER_ARGS=(--budget gpu --out "$OUT/chapters" --deadline "$CHAPTER_SECONDS" --json "$OUT/chapters.json")
[ "${#SKIP[@]}" -gt 0 ] && CHAPTER_ARGS+=(--skip "${SKIP[@]}")
[ "$DRY" = 1 ] && CHAPTER_ARGS+=(--dry-run)
"$PYTHON" "$ROOT/benchmarks/run_chapters.py" "${CHAPTER_ARGS[@]}" || FAILED=1

step "5. summary"
"$PYTHON" - "$OUT" "$DRY" <<'PYTHON' | tee "$OUT/summary.md"
import json, sys
from pathlib import Path
import torch
out, dry = Path(sys.argv[1]), sys.argv[2] == "1"
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (no CUDA GPU)"
rows = [("device", device), ("torch", torch.__version__)]
bench = json.loads((out / "benchmark.json").read_text()) if (out / "benchmark.json").exists() else {}
if bench.get("dry_run"):
    plan = bench["plan"][0]
    rows.append(("benchmark", f"dry run: {plan['parameters'] / 1e6:.2f} M parameters, compile {plan['compile']}, "
                              f"autocast {plan['amp']}"))
elif bench:
    run = bench["runs"][0]
    reached = run["time_to_target"]
    rows += [
        ("tokens/s", f"{bench['tokens_per_second']:,.0f}"),
        ("MFU", f"{100 * bench['mfu']:.1f}% of {bench['peak_flops'] / 1e12:.0f} TFLOP/s (data sheet); "
                f"{100 * bench['mfu_vs_measured_matmul']:.1f}% of a measured {bench['measured_matmul_flops'] / 1e12:.0f}"),
        ("peak memory", f"{bench['peak_memory_mb']:,.0f} MB"),
        ("steps in the time limit", f"{run['steps']} ({run['training_seconds']:.1f} s of training)"),
        ("best validation loss", f"{run['best_periodic_val']:.4f} (final, {run['eval_batches']} batches: {run['val_loss']:.4f})"),
        ("time to 1.47", f"{reached:.1f} s" if reached is not None else "not reached"),
    ]
else:
    rows.append(("benchmark", "no result (see benchmark.log)"))
chapters = json.loads((out / "chapters.json").read_text()) if (out / "chapters.json").exists() else {}
for name, entry in chapters.items():
    rows.append((f"chapter {name}", f"{entry['status']}" + ("" if dry else f", {entry['seconds']:.1f} s")))
print("| item | value |\n|---|---|")
for key, value in rows:
    print(f"| {key} | {value} |")
PYTHON
echo
echo "total: $(( $(date +%s) - START )) s; logs, figures and JSON in $OUT"
exit $FAILED
