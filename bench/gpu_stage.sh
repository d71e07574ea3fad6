#!/usr/bin/env bash
# Stage a GPU build of faiss onto a device machine that reaches no package registry and takes at
# most 64 MiB of files per call (see README, "GPU indexes").
#
#   bash bench/gpu_stage.sh            # here: download the wheels into .whl/, split them into
#                                      # part folders of at most 60 MiB, print the device calls
#   WITH_CUDA=1 bash bench/gpu_stage.sh  # also the CUDA 13 runtime wheels (only for a device
#                                      # without them; torch built for CUDA 13 ships them)
#   bash bench/gpu_stage.sh --install  # on the device: reassemble the parts, check them against
#                                      # SHA256SUMS and unpack every wheel into /tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."

STAGE=${STAGE:-/tmp/stage}
SITE=${SITE:-/tmp/site}
PART_MIB=${PART_MIB:-60} # lower it if a call refuses a part: the 64 MiB may count more than the part
PYTHON=${PYTHON:-python3}
# faiss-gpu-cu13-cuvs's Requires-Dist that a CUDA 13 torch install does not already bring
WHEELS=(
  faiss-gpu-cu13-cuvs==1.15.0
  libcuvs-cu13==26.6.0
  libraft-cu13==26.6.0
  librmm-cu13==26.6.0
  rapids-logger==0.2.3
)
CUDA_WHEELS=(
  nvidia-cuda-runtime==13.0.48
  nvidia-cublas==13.0.0.19
  nvidia-curand==10.4.0.35
  nvidia-cusolver==12.0.3.29
  nvidia-cusparse==12.6.2.49
  nvidia-nvjitlink==13.0.39
  nvidia-nccl-cu13==2.27.7
)

install_on_device() {
  mkdir -p "$STAGE" "$SITE"
  cp -n .whl/part*/* "$STAGE"/ 2>/dev/null || true # parts carried in this checkout, if still here
  cd "$STAGE"
  for first in *.part-00; do
    [ -e "$first" ] || continue
    whl=${first%.part-00}
    cat "$whl".part-* >"$whl.tmp" && mv "$whl.tmp" "$whl"
  done
  sha256sum -c --ignore-missing SHA256SUMS
  [ "$(grep -c '' SHA256SUMS)" = "$(ls -1 ./*.whl | wc -l)" ] || {
    echo "missing wheels: staged $(ls -1 ./*.whl | wc -l) of $(grep -c '' SHA256SUMS)" >&2
    exit 1
  }
  for whl in ./*.whl; do # a wheel is a zip: no pip, index or network needed
    "$PYTHON" -m zipfile -e "$whl" "$SITE"
  done
  PYTHONPATH="$SITE" "$PYTHON" -c \
    "import faiss; print('faiss', faiss.__version__, 'gpus', faiss.get_num_gpus(), 'cagra', hasattr(faiss, 'GpuIndexCagra'))"
}

if [ "${1:-}" = "--install" ]; then
  install_on_device
  exit 0
fi

rm -rf .whl
mkdir -p .whl/dl
list=("${WHEELS[@]}")
[ "${WITH_CUDA:-0}" = 1 ] && list+=("${CUDA_WHEELS[@]}")
"$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_39_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .whl/dl "${list[@]}"

(cd .whl/dl && sha256sum ./*.whl | sed 's| \./| |' >SHA256SUMS)
# pieces: wheels over PART_MIB are split; then pieces are packed into folders of <= PART_MIB
mkdir -p .whl/pieces
for whl in .whl/dl/*.whl; do
  if [ "$(stat -c %s "$whl")" -gt $((PART_MIB * 1024 * 1024)) ]; then
    split -b "${PART_MIB}m" -d "$whl" ".whl/pieces/$(basename "$whl").part-"
  else
    cp "$whl" .whl/pieces/
  fi
done
n=0
used=$((PART_MIB * 1024 * 1024))
for piece in $(ls -S .whl/pieces); do
  size=$(stat -c %s ".whl/pieces/$piece")
  if [ $((used + size)) -gt $((PART_MIB * 1024 * 1024)) ]; then
    n=$((n + 1))
    used=0
    mkdir -p "$(printf '.whl/part%02d' "$n")"
  fi
  mv ".whl/pieces/$piece" "$(printf '.whl/part%02d' "$n")/"
  used=$((used + size))
done
cp .whl/dl/SHA256SUMS "$(printf '.whl/part%02d' "$n")/"
rm -rf .whl/pieces .whl/dl

echo
echo "staged $(du -sh .whl | cut -f1) in $n part folders:"
du -sh .whl/part*
echo
echo "device calls, one after another (the machine is given back after ~30 s idle; a later call"
echo "starts a bare one and the staging begins again):"
echo
echo "  run(command='nvidia-smi -L; python3 -c \"import nvidia.cu13 as m, torch; print(m.__path__, torch.version.cuda)\"', timeout_s=60)"
echo "      # CUDA 13 runtime wheels present? if not, rerun this script with WITH_CUDA=1"
for dir in .whl/part*; do
  echo "  run(carry=['$dir'], command='mkdir -p $STAGE && cp $dir/* $STAGE/ && ls $STAGE | wc -l', timeout_s=120)"
done
echo "  run(command='bash bench/gpu_stage.sh --install && PYTHONPATH=$SITE:. python3 -m bench.gpu --out \$OUT/gpu.json', timeout_s=600)"
echo
echo "then copy the returned gpu.json to bench/results/gpu.json; python -m bench.gpu --table bench/results/gpu.json"
