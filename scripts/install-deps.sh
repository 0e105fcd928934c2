#!/usr/bin/env bash
# Installs every Debian 12 package ostrov needs to build, test, benchmark and run its demo.
# Idempotent and non-interactive: skips apt entirely when everything is already present.
set -euo pipefail

packages=(
  build-essential cmake make ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-openmp libopenblas-dev
  libopencv-dev libfmt-dev libspdlog-dev nlohmann-json3-dev libcli11-dev zlib1g-dev
  catch2 libbenchmark-dev
  python3-torch python3-torchvision python3-scipy python3-numpy
  dataset-fashion-mnist
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

# Debian's default BLAS alternative may be the reference implementation (11x slower GEMM);
# point libblas.so.3 at the OpenMP OpenBLAS, which shares libgomp with LibTorch.
arch_dir="/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)"
for cand in "$arch_dir/openblas-openmp/libblas.so.3"; do
  if [ -e "$cand" ]; then
    $SUDO update-alternatives --set "libblas.so.3-$(basename "$arch_dir")" "$cand" || true
  fi
done
for cand in "$arch_dir/openblas-openmp/liblapack.so.3"; do
  if [ -e "$cand" ]; then
    $SUDO update-alternatives --set "liblapack.so.3-$(basename "$arch_dir")" "$cand" || true
  fi
done
echo "install-deps: done"
