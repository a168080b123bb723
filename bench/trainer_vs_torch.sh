#!/usr/bin/env bash
# The example trainer against PyTorch eager on the same nets, batch and
# thread counts, in one run: kd-bench-trainer (bench/trainer.c) and
# bench/trainer_torch.py alternate, ROUNDS times each (default 3), and the
# table shows the best seconds per 60,000 images of each and the ratio
# (PyTorch / kdlib: > 1 means the trainer is faster).
#   bash bench/trainer_vs_torch.sh [BUILD_DIR] [ROUNDS] [STEPS]
# Also times the trainer on OpenBLAS's Prescott (SSE3) kernels, what Debian's
# OpenBLAS 0.3.21 falls back to on CPUs it does not know (before
# examples/trainer/blas_core.c re-executed the programs on a proper core).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ROUNDS=${2:-3}
STEPS=${3:-200}
BIN="$BUILD/bench/kd-bench-trainer"
[ -x "$BIN" ] || { echo "trainer_vs_torch.sh: $BIN not built" >&2; exit 2; }
PY=/usr/bin/python3
best() { sort -g | head -1; }
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; OpenBLAS core: $("$BIN" --net fc8 --steps 1 | sed -n 's/^kd-bench-trainer: OpenBLAS \([^ ]*\) kernels.*/\1/p')"
echo "batch 64, $STEPS steps after 2 warm-up steps, best of $ROUNDS alternating rounds; seconds per 60,000 images"
echo
echo "| net | threads | PyTorch eager | kdlib trainer | PyTorch / kdlib | kdlib on Prescott kernels |"
echo "|---|---:|---:|---:|---:|---:|"
for net in conv32-conv64-fc128 conv16-conv32-fc64; do
  for thr in 1 2; do
    k=(); t=(); p=()
    for r in $(seq "$ROUNDS"); do
      k+=("$("$BIN" --net $net --threads $thr --steps "$STEPS" | awk -F'\t' '$1=="kdlib"{print $7}')")
      t+=("$("$PY" bench/trainer_torch.py --net $net --threads $thr --steps "$STEPS" | awk -F'\t' '{print $7}')")
    done
    p="$(OPENBLAS_CORETYPE=Prescott "$BIN" --net $net --threads $thr --steps "$STEPS" | awk -F'\t' '$1=="kdlib"{print $7}')"
    kb=$(printf '%s\n' "${k[@]}" | best); tb=$(printf '%s\n' "${t[@]}" | best)
    printf '| %s | %d | %.1f | %.1f | %.2fx | %.1f |\n' $net $thr "$tb" "$kb" "$(awk -v a="$tb" -v b="$kb" 'BEGIN{print a / b}')" "$p"
  done
done
