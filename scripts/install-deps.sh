#!/usr/bin/env bash
# Installs every Debian 12 package ostrov needs to build, test, benchmark, fuzz (clang-14) and
# run its demo.
# Idempotent and non-interactive: skips apt entirely when everything is already present.
set -euo pipefail

packages=(
  build-essential cmake make ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-openmp libopenblas-dev
  libopencv-dev libfmt-dev libspdlog-dev nlohmann-json3-dev libcli11-dev zlib1g-dev
  catch2 libbenchmark-dev
  clang-14 libclang-rt-14-dev
  python3-torch python3-torchvision python3-scipy python3-numpy
  dataset-fashion-mnist
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
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
arch="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)"
for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  cand="/usr/lib/$arch/openblas-openmp/$lib"
  current="$(readlink -f "/usr/lib/$arch/$lib" || true)"
  if [ -e "$cand" ] && [ "$current" != "$(readlink -f "$cand")" ]; then
    $SUDO update-alternatives --set "$lib-$arch" "$cand"
  fi
done
echo "install-deps: done"
