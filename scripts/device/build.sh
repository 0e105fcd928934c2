#!/usr/bin/env bash
# Builds ostrov against a LibTorch and the dependency prefix of scripts/device/bundle.sh, on a
# machine that has neither OpenCV's C++ libraries nor the other dependencies: a GPU machine
# with CUDA, CMake, ninja and Python's torch (its LibTorch is inside the package).
#
#   scripts/device/build.sh [BUILD_DIR]        (default build-device)
#
#   OSTROV_DEVICE_DEPS   the prefix (default: deps/device in the checkout)
#   OSTROV_TORCH_PREFIX  LibTorch's CMake prefix (default: Python torch's
#                        torch.utils.cmake_prefix_path; Debian's LibTorch when Python has none)
#   OSTROV_NCCL_INCLUDE_DIR  the folder of nccl.h (default: Python's nvidia-nccl package)
#   JOBS                 parallel compile jobs (default: the number of cores)
# Fails, naming the library, when CMake picks a dependency from outside the prefix, or when
# LibTorch's C++ ABI is not the prefix's.
set -euo pipefail

checkout="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-build-device}"
deps="${OSTROV_DEVICE_DEPS:-$checkout/deps/device}"
jobs="${JOBS:-$(nproc)}"
python="${PYTHON:-python3}"

[ -e "$deps/README" ] || { echo "device-build: no dependency prefix at $deps (scripts/device/bundle.sh)" >&2; exit 1; }
deps="$(cd "$deps" && pwd)"  # absolute: CMake's cache holds absolute paths, compared below

torch_prefix="${OSTROV_TORCH_PREFIX:-}"
if [ -z "$torch_prefix" ] && "$python" -c "import torch" 2> /dev/null; then
  torch_prefix=$("$python" -c "import torch; print(torch.utils.cmake_prefix_path)")
  torch_abi=$("$python" -c "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))")
  deps_abi=$(sed -n 's/.*_GLIBCXX_USE_CXX11_ABI=\([01]\).*/\1/p' "$deps/README")
  if [ "$torch_abi" != "$deps_abi" ]; then
    echo "device-build: Python's torch uses _GLIBCXX_USE_CXX11_ABI=$torch_abi, the prefix $deps" \
         "was built with $deps_abi; rebuild it with OSTROV_DEVICE_ABI=$torch_abi scripts/device/bundle.sh" >&2
    exit 1
  fi
fi
# NCCL's header: Python torch's CUDA wheels bring it as the nvidia-nccl package
# (site-packages/nvidia/nccl/include); CMake looks in the system's folders too.
nccl_include="${OSTROV_NCCL_INCLUDE_DIR:-}"
if [ -z "$nccl_include" ]; then
  nccl_include=$("$python" -c "import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], 'include'))" 2> /dev/null || true)
fi
echo "device-build: LibTorch from ${torch_prefix:-the system}, dependencies from $deps," \
     "nccl.h from ${nccl_include:-the system include folders}"

generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
cmake -S "$checkout" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$deps${torch_prefix:+;$torch_prefix}" \
  -DCMAKE_CXX_COMPILER_LAUNCHER="$(command -v ccache || true)" \
  ${nccl_include:+-DOSTROV_NCCL_INCLUDE_DIR="$nccl_include"}

# Every dependency must come from the prefix: a system copy would not exist on the device.
for pkg in OpenCV fmt spdlog nlohmann_json CLI11 Catch2 benchmark; do
  dir=$(sed -n "s|^${pkg}_DIR:PATH=||p" "$build/CMakeCache.txt")
  case "$dir" in
    "$deps"/*) ;;
    *) echo "device-build: $pkg was found at '$dir', not in $deps" >&2; exit 1 ;;
  esac
done
for lib in ZLIB_LIBRARY_RELEASE PNG_LIBRARY_RELEASE; do
  path=$(sed -n "s|^${lib}:FILEPATH=||p" "$build/CMakeCache.txt")
  case "$path" in
    "$deps"/*) ;;
    *) echo "device-build: $lib is '$path', not in $deps" >&2; exit 1 ;;
  esac
done

cmake --build "$build" -j "$jobs"
echo "device-build: built $build"
