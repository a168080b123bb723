#!/usr/bin/env bash
# Install every Debian package kdlib needs to build, test and run its demos.
# Idempotent: installs only what is missing.  Run as root (or with sudo).
set -euo pipefail
PKGS=(
  cmake make gcc pkg-config         # build
  libopenblas-dev zlib1g-dev libpng-dev  # CBLAS, IDX (gzip) reading, PNG output
  check libsubunit-dev              # unit tests
  python3 python3-numpy python3-torch    # Python binding and parity tests
  python3-venv python3-pip python3-setuptools python3-wheel  # the binding installed in a fresh venv (tests)
  dataset-fashion-mnist             # the examples' data
  libopenmpi-dev openmpi-bin        # examples/mpi (data-parallel kd-mpi and its 2-rank test)
  clang libclang-rt-14-dev libomp-14-dev  # libFuzzer, TSan, LLVM OpenMP + Archer (fuzz/, scripts/tsan.sh)
  valgrind abigail-tools            # memcheck of the examples' smoke runs, ABI baseline (abi/)
  clang-format clang-tidy           # scripts/format.sh (checked by scripts/test.sh), CONTRIBUTING.md
)
PKGS+=(${KD_EXTRA_PACKAGES:-})
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
