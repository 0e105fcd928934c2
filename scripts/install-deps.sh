#!/usr/bin/env bash
# Installs the Debian 12 (bookworm) or Debian 13 (trixie) packages ostrov needs. Idempotent and non-interactive: skips apt
# entirely when everything is already present.
#
#   scripts/install-deps.sh         build + run: the library, `ostrov`, the examples, `make demo`
#   scripts/install-deps.sh --dev   also what `make test`, `make bench` and `make fuzz` need:
#                                   Catch2, Google Benchmark, clang-14 (libFuzzer) and the
#                                   Python parity stack (scipy)
#   scripts/install-deps.sh --docs  only Doxygen, for `make docs`
#   --no-blas-switch                leave the system's BLAS/LAPACK alternatives as they are
#                                   (see below; ostrov still works, its GEMMs are slower)
set -euo pipefail

dev=0
docs=0
blas_switch=1
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --docs) docs=1 ;;
    --no-blas-switch) blas_switch=0 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "install-deps: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

if [ "$docs" -eq 1 ]; then
  packages=(doxygen)
  blas_switch=0
else
packages=(
  build-essential cmake make ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-openmp libopenblas-dev
  libopencv-dev libfmt-dev libspdlog-dev nlohmann-json3-dev libcli11-dev zlib1g-dev libpng-dev
  # make demo: its data, and the torchvision ResNet-18 file it loads from C++ at the end
  dataset-fashion-mnist python3-torch python3-torchvision
)
fi
# The clang that builds the libFuzzer targets: Debian 12's 14, Debian 13's 19.
codename="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")"
case "$codename" in
  trixie) clang_version=19 ;;
  *) clang_version=14 ;;
esac
if [ "$dev" -eq 1 ]; then
  packages+=(
    catch2 libbenchmark-dev
    "clang-$clang_version" "libclang-rt-$clang_version-dev"
    python3-scipy python3-numpy
    # torch.compile's Inductor builds its C++ kernels through torch.utils.cpp_extension
    # (benchmarks/run.py --compile)
    python3-setuptools
  )
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

profile="build + run"
if [ "$dev" -eq 1 ]; then profile="build + run + dev"; fi
if [ "$docs" -eq 1 ]; then profile="docs"; fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present ($profile)"
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# One OpenBLAS, the OpenMP build that shares libgomp (and its thread count) with LibTorch.
# Debian's defaults may be the reference BLAS (GEMM ~10x slower) and, once both OpenBLAS
# builds are installed, libopenblas.so.0 still points at the pthread build: OpenMP's
# liblapack.so.3 then pulls it in and the GEMM kernels run on a second thread pool that
# fights LibTorch's (measured: float32 GEMM 2048³ 30-45 -> 59-61 GFLOP/s on 2 cores).
# This changes a system-wide setting (update-alternatives), so it is announced; skip it with
# --no-blas-switch.
if [ "$blas_switch" -eq 1 ]; then
  arch="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)"
  for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
    cand="/usr/lib/$arch/openblas-openmp/$lib"
    current="$(readlink -f "/usr/lib/$arch/$lib" || true)"
    if [ -e "$cand" ] && [ "$current" != "$(readlink -f "$cand")" ]; then
      echo "install-deps: switching the system's $lib alternative to the OpenMP OpenBLAS" \
           "($cand; --no-blas-switch skips this)"
      $SUDO update-alternatives --set "$lib-$arch" "$cand"
    fi
  done
fi
echo "install-deps: done"
