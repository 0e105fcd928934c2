#!/usr/bin/env bash
# Builds the C++ libraries a bare GPU machine lacks — OpenCV (core, imgproc, imgcodecs with
# PNG, JPEG, TIFF and WebP: torchvision's image extensions, which ostrov reads), zlib, libpng,
# libjpeg-turbo, libtiff, libwebp, fmt, spdlog, nlohmann-json, CLI11, Catch2 and
# Google Benchmark — from Debian 12's source packages into one relocatable prefix: static,
# position-independent libraries (they link into ostrov's shared libraries) and the header-only
# ones, each with its CMake package files. That prefix travels with a device call
# (`deps/device`, about 30 MiB, ignored by git) and scripts/device/build.sh builds ostrov
# against it and the machine's own LibTorch. See docs/building.md, "A GPU machine".
#
#   scripts/device/bundle.sh            build into deps/device (skips what is already there)
#
#   OSTROV_DEVICE_DEPS   the prefix (default: deps/device in the checkout)
#   OSTROV_DEVICE_SRC    where the source packages are fetched and built
#                        (default /var/cache/ostrov/device-src)
#   OSTROV_DEVICE_ABI    _GLIBCXX_USE_CXX11_ABI of the LibTorch it will meet (default 1, as
#                        pytorch.org's builds since 2.7 and Debian's; 0 for older pip wheels)
#   JOBS                 parallel compile jobs (default: the number of cores)
# Needs Debian's apt with a deb-src entry for bookworm (added to
# /etc/apt/sources.list.d/ostrov-src.sources when missing, hence root), cmake, ninja, gcc.
set -euo pipefail

checkout="$(cd "$(dirname "$0")/../.." && pwd)"
prefix="${OSTROV_DEVICE_DEPS:-$checkout/deps/device}"
src="${OSTROV_DEVICE_SRC:-/var/cache/ostrov/device-src}"
abi="${OSTROV_DEVICE_ABI:-1}"
jobs="${JOBS:-$(nproc)}"
packages=(zlib libpng1.6 libjpeg-turbo tiff libwebp opencv fmtlib spdlog nlohmann-json3 cli11 catch2 benchmark)

say() { echo "device-bundle: $*"; }

fetch() {
  mkdir -p "$src"
  local missing=()
  for p in "${packages[@]}"; do
    compgen -G "$src/${p}_*.orig.tar.*" > /dev/null || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  if ! apt-get source --download-only --print-uris "${missing[0]}" > /dev/null 2>&1; then
    say "adding a deb-src entry for bookworm (/etc/apt/sources.list.d/ostrov-src.sources)"
    cat > /etc/apt/sources.list.d/ostrov-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt-get update -qq
  fi
  say "fetching ${missing[*]}"
  (cd "$src" && apt-get source --download-only "${missing[@]}" 2> >(grep -v "unsandboxed" >&2))
}

# Unpacks package $1's upstream tarball into $src/tree/$1 and prints that folder.
unpack() {
  local tree="$src/tree/$1"
  if [ ! -d "$tree" ]; then
    local tarball
    tarball=$(compgen -G "$src/${1}_*.orig.tar.*" | grep -v -e "-contrib" -e "\.asc$" | head -1)
    # (a command substitution does not inherit set -e: each step checks itself)
    rm -rf "$tree.partial" && mkdir -p "$tree.partial" || exit 1
    tar -xf "$tarball" -C "$tree.partial" --strip-components=1 || { echo "cannot unpack $tarball" >&2; exit 1; }
    mv "$tree.partial" "$tree" || exit 1
  fi
  echo "$tree"
}

# Configures, builds and installs package $1 with the CMake options that follow, once.
build() {
  local name="$1"
  shift
  if [ -e "$prefix/.built-$name" ]; then return; fi
  local tree
  tree=$(unpack "$name") || exit 1
  say "building $name"
  rm -rf "$src/build/$name"
  cmake -S "$tree" -B "$src/build/$name" -G Ninja -Wno-dev \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DCMAKE_INSTALL_LIBDIR=lib \
    -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    -DCMAKE_CXX_FLAGS="-D_GLIBCXX_USE_CXX11_ABI=$abi" \
    -DBUILD_SHARED_LIBS=OFF \
    "$@" > "$src/build-$name.log" 2>&1 || { tail -30 "$src/build-$name.log"; exit 1; }
  cmake --build "$src/build/$name" -j "$jobs" >> "$src/build-$name.log" 2>&1 ||
    { tail -30 "$src/build-$name.log"; exit 1; }
  cmake --install "$src/build/$name" >> "$src/build-$name.log" 2>&1
  touch "$prefix/.built-$name"
}

fetch
mkdir -p "$prefix"
start=$(date +%s)

# The image codecs first, static, so that OpenCV and ostrov find these and not the system's.
# zlib by its own configure script: Debian's repacked source lacks the files its CMake build
# lists for Windows.
if [ ! -e "$prefix/.built-zlib" ]; then
  say "building zlib"
  tree=$(unpack zlib) || exit 1
  rm -rf "$src/build/zlib" && mkdir -p "$src/build" && cp -r "$tree" "$src/build/zlib"
  (cd "$src/build/zlib" && CFLAGS="-O2 -fPIC" ./configure --static --prefix="$prefix" &&
    make -j "$jobs" libz.a && make install) > "$src/build-zlib.log" 2>&1 ||
    { tail -30 "$src/build-zlib.log"; exit 1; }
  touch "$prefix/.built-zlib"
fi
build libpng1.6 -DPNG_SHARED=OFF -DPNG_STATIC=ON -DPNG_TESTS=OFF -DPNG_EXECUTABLES=OFF \
  -DZLIB_ROOT="$prefix" -DZLIB_LIBRARY="$prefix/lib/libz.a" -DZLIB_INCLUDE_DIR="$prefix/include"
# (libjpeg-turbo reads a relative CMAKE_INSTALL_LIBDIR against its own default, hence absolute)
build libjpeg-turbo -DCMAKE_INSTALL_LIBDIR="$prefix/lib" -DENABLE_SHARED=OFF -DENABLE_STATIC=ON \
  -DWITH_TURBOJPEG=OFF \
  -DWITH_SIMD="$(command -v nasm > /dev/null && echo ON || echo OFF)"

build tiff -Dtiff-tools=OFF -Dtiff-tests=OFF -Dtiff-contrib=OFF -Dtiff-docs=OFF -Djbig=OFF \
  -Dlzma=OFF -Dzstd=OFF -Dwebp=OFF -Dlerc=OFF -Dlibdeflate=OFF -Dpixarlog=OFF -Dold-jpeg=OFF \
  -Djpeg=ON -Dzlib=ON -DZLIB_LIBRARY="$prefix/lib/libz.a" -DZLIB_INCLUDE_DIR="$prefix/include" \
  -DJPEG_LIBRARY="$prefix/lib/libjpeg.a" -DJPEG_INCLUDE_DIR="$prefix/include"
build libwebp -DWEBP_BUILD_ANIM_UTILS=OFF -DWEBP_BUILD_CWEBP=OFF -DWEBP_BUILD_DWEBP=OFF \
  -DWEBP_BUILD_GIF2WEBP=OFF -DWEBP_BUILD_IMG2WEBP=OFF -DWEBP_BUILD_VWEBP=OFF \
  -DWEBP_BUILD_WEBPINFO=OFF -DWEBP_BUILD_WEBPMUX=OFF -DWEBP_BUILD_EXTRAS=OFF

build opencv \
  -DBUILD_LIST=core,imgproc,imgcodecs \
  -DBUILD_ZLIB=OFF -DBUILD_PNG=OFF -DBUILD_JPEG=OFF \
  -DZLIB_LIBRARY="$prefix/lib/libz.a" -DZLIB_INCLUDE_DIR="$prefix/include" \
  -DPNG_LIBRARY="$prefix/lib/libpng16.a" -DPNG_PNG_INCLUDE_DIR="$prefix/include" \
  -DJPEG_LIBRARY="$prefix/lib/libjpeg.a" -DJPEG_INCLUDE_DIR="$prefix/include" \
  -DBUILD_TIFF=OFF -DBUILD_WEBP=OFF \
  -DTIFF_LIBRARY="$prefix/lib/libtiff.a" -DTIFF_INCLUDE_DIR="$prefix/include" \
  -DWEBP_LIBRARY="$prefix/lib/libwebp.a" -DWEBP_INCLUDE_DIR="$prefix/include" \
  -DWITH_PNG=ON -DWITH_JPEG=ON -DWITH_TIFF=ON -DWITH_WEBP=ON -DWITH_OPENJPEG=OFF \
  -DWITH_JASPER=OFF -DWITH_OPENEXR=OFF -DWITH_IMGCODEC_HDR=OFF -DWITH_IMGCODEC_SUNRASTER=OFF \
  -DWITH_IMGCODEC_PXM=ON -DWITH_IMGCODEC_PFM=OFF -DWITH_GDAL=OFF -DWITH_GDCM=OFF \
  -DWITH_IPP=OFF -DWITH_ITT=OFF -DWITH_OPENCL=OFF -DWITH_VA=OFF -DWITH_VA_INTEL=OFF \
  -DWITH_CUDA=OFF -DWITH_EIGEN=OFF -DWITH_LAPACK=OFF -DWITH_PROTOBUF=OFF -DWITH_OPENMP=OFF \
  -DWITH_GTK=OFF -DWITH_QT=OFF -DWITH_FFMPEG=OFF -DWITH_GSTREAMER=OFF -DWITH_V4L=OFF \
  -DWITH_1394=OFF -DWITH_ADE=OFF -DWITH_QUIRC=OFF -DWITH_TBB=OFF -DWITH_VTK=OFF \
  -DBUILD_TESTS=OFF -DBUILD_PERF_TESTS=OFF -DBUILD_EXAMPLES=OFF -DBUILD_DOCS=OFF \
  -DBUILD_opencv_apps=OFF -DBUILD_JAVA=OFF -DBUILD_opencv_python3=OFF \
  -DBUILD_opencv_python2=OFF -DOPENCV_GENERATE_PKGCONFIG=OFF -DINSTALL_C_EXAMPLES=OFF \
  -DOPENCV_LIB_INSTALL_PATH=lib -DOPENCV_3P_LIB_INSTALL_PATH=lib/opencv4/3rdparty \
  -DOPENCV_CONFIG_INSTALL_PATH=lib/cmake/opencv4
# A static OpenCV's package names the codec archives it was built against by absolute path;
# make them relative to the package, so the prefix works wherever a device call unpacks it.
sed -i "s|$prefix/|\${_IMPORT_PREFIX}/|g" "$prefix"/lib/cmake/opencv4/OpenCVModules*.cmake

build fmtlib -DFMT_TEST=OFF -DFMT_DOC=OFF -DFMT_INSTALL=ON
build spdlog -DSPDLOG_FMT_EXTERNAL=ON -DSPDLOG_BUILD_EXAMPLE=OFF -DSPDLOG_BUILD_TESTS=OFF \
  -DSPDLOG_BUILD_BENCH=OFF -DSPDLOG_INSTALL=ON
build nlohmann-json3 -DJSON_BuildTests=OFF -DJSON_Install=ON
build cli11 -DCLI11_BUILD_TESTS=OFF -DCLI11_BUILD_EXAMPLES=OFF -DCLI11_BUILD_DOCS=OFF \
  -DCLI11_INSTALL=ON
build catch2 -DCATCH_BUILD_TESTING=OFF -DCATCH_INSTALL_DOCS=OFF -DCATCH_INSTALL_HELPERS=ON
build benchmark -DBENCHMARK_ENABLE_TESTING=OFF -DBENCHMARK_ENABLE_GTEST_TESTS=OFF \
  -DBENCHMARK_ENABLE_INSTALL=ON -DBENCHMARK_INSTALL_DOCS=OFF -DBENCHMARK_ENABLE_WERROR=OFF

# What travels needs no documentation, binaries or debug sections.
rm -rf "$prefix/share/doc" "$prefix/share/man" "$prefix/bin" \
  "$prefix"/share/opencv4/{haarcascades,lbpcascades,valgrind*}
find "$prefix/lib" -name "*.a" -exec strip --strip-debug {} +
cat > "$prefix/README" <<EOF
ostrov's device dependencies, built by scripts/device/bundle.sh from Debian 12's source
packages ($(cd "$src" && ls ./*.dsc | sed 's|^\./||; s|\.dsc$||' | tr '\n' ' '))
with $(gcc --version | head -1), _GLIBCXX_USE_CXX11_ABI=$abi, on $(date -u +%Y-%m-%d).
Their licences are those of the packages (BSD/MIT/zlib/IJG/Apache-2.0/BSL-1.0).
EOF
say "done in $(( $(date +%s) - start )) s: $prefix ($(du -sh "$prefix" | cut -f1))"
