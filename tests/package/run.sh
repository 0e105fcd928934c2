#!/usr/bin/env bash
# Installs the build tree into a prefix, then configures, builds and runs an outside project
# that finds it with find_package(ostrov). Args: BUILD_DIR PROJECT_DIR WORK_DIR
set -euo pipefail
build="$1"; project="$2"; work="$3"
rm -rf "$work"
cmake --install "$build" --prefix "$work/prefix" > "$work.install.log" 2>&1 || { cat "$work.install.log"; exit 1; }
cmake -S "$project" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release \
  ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER}
cmake --build "$work/build" -j 2
"$work/build/app"
