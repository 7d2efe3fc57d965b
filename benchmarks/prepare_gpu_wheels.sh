#!/usr/bin/env bash
# Fill the ignored folders .whl/ (wheels) and .gpu_data/ (data sets) with what benchmarks/gpu_check.sh
# needs on a GPU machine that has PyTorch but no network and none of our other packages.
#
#   bash benchmarks/prepare_gpu_wheels.sh            # on a machine with network (pip's registry)
#
# The wheels are for CPython 3.12 on x86-64 Linux (the GPU machine); torch is not among them (the
# machine has its own). The set is what llmbook and chapters 1, 2, 4, 5 and 6 import at run time:
# numpy, matplotlib and its dependencies, tqdm, safetensors, tokenizers (about 45 MB). Chapter 3
# also needs scipy and gensim (another 63 MB): over the 64 MiB that travels with the working tree,
# so gpu_check.sh skips chapter 3 unless the machine has them. IPython and ipywidgets are not
# needed: benchmarks/chapter_shims.py stands in for them. Versions: those of our own .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="$ROOT/.whl"
DATA="$ROOT/.gpu_data"
MIRROR="${LLMBOOK_DATA_MIRROR:-$ROOT/../shared/data}"
PYTHON="${PYTHON:-python3}"

PACKAGES=(
  numpy==2.4.6
  matplotlib==3.11.2 contourpy==1.3.3 cycler==0.12.1 fonttools==4.68.0 kiwisolver==1.5.1
  packaging==26.4 pillow==13.0.0 pyparsing==3.3.3 python-dateutil==4.0.0
  tqdm==4.70.1 safetensors==0.8.0 tokenizers==0.23.3
)

mkdir -p "$WHEELS"
"$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$WHEELS" "${PACKAGES[@]}"

# The data sets the chapters load, copied from the offline mirror (checksums are verified on use).
mkdir -p "$DATA/chinese-poetry"
for name in tinyshakespeare.txt brown.zip; do
  cp "$MIRROR/$name" "$DATA/$name"
done
cp "$MIRROR"/chinese-poetry/*.json "$DATA/chinese-poetry/"

du -sh "$WHEELS" "$DATA"
echo "working tree with wheels and data: $(du -sh --exclude=.git "$ROOT" | cut -f1) (must stay under 64 MiB)"
