#!/usr/bin/env bash
# The Debian 13 ("trixie") leg: a Debian 13 root (debootstrap --variant=minbase) kept at a
# fixed cache path outside the checkout, with ostrov's dependencies installed by
# scripts/install-deps.sh inside it; the checkout is bind-mounted at /src and built into
# build-debian13/.
#
#   scripts/debian13.sh root          create the root (once; reused while it exists)
#   scripts/debian13.sh test          `make test-debian13`: the dependencies (install-deps.sh
#                                     --dev, skipped when present), a build in build-debian13
#                                     and the whole CTest suite, inside the root
#   scripts/debian13.sh shell [CMD]   run CMD (default: an interactive shell) inside it, at /src
#   scripts/debian13.sh clean         remove the root
#
#   OSTROV_DEBIAN13_ROOT   where the root lives (default /var/cache/ostrov/debian13)
#   OSTROV_DEBIAN_MIRROR   the mirror (default http://deb.debian.org/debian)
# Needs root (debootstrap, mount, chroot) and Debian's debootstrap package.
set -euo pipefail

root="${OSTROV_DEBIAN13_ROOT:-/var/cache/ostrov/debian13}"
mirror="${OSTROV_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
src="$(cd "$(dirname "$0")/.." && pwd)"
cmd="${1:-root}"
shift || true

if [ "$(id -u)" -ne 0 ]; then
  echo "debian13: needs root (debootstrap, mount, chroot)" >&2
  exit 1
fi

create_root() {
  if [ -e "$root/.ostrov-ready" ]; then return; fi
  command -v debootstrap > /dev/null || {
    echo "debian13: installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
  }
  local partial="$root.partial"
  rm -rf "$partial"
  mkdir -p "$(dirname "$root")"
  echo "debian13: debootstrap --variant=minbase trixie $partial $mirror"
  debootstrap --variant=minbase trixie "$partial" "$mirror"
  rm -rf "$root"
  mv "$partial" "$root"
  touch "$root/.ostrov-ready"
}

mounted=()
unmount_all() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" || true; done
}

bind() {  # bind SOURCE TARGET-inside-root
  mkdir -p "$root$2"
  mount --bind "$1" "$root$2"
  mounted+=("$root$2")
}

in_root() {
  trap unmount_all EXIT
  bind /proc /proc
  bind /dev /dev
  bind /sys /sys
  bind "$src" /src
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2> /dev/null || true
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    TERM="${TERM:-dumb}" LANG=C.UTF-8 bash -c "cd /src && $*"
}

case "$cmd" in
  root) create_root ;;
  test)
    create_root
    start=$(date +%s)
    jobs="${JOBS:-2}"
    in_root "set -e
      bash scripts/install-deps.sh --dev
      mkdir -p build-debian13
      if ! cmake --preset dev -B build-debian13 > build-debian13/configure.log 2>&1; then
        cat build-debian13/configure.log; exit 1
      fi
      grep '^-- ostrov:' build-debian13/configure.log || true
      cmake --build build-debian13 -j $jobs
      ctest --test-dir build-debian13 -j $jobs --output-on-failure --no-tests=error"
    echo "debian13: build and tests passed in $(($(date +%s) - start)) s"
    ;;
  shell)
    create_root
    in_root "${*:-bash}"
    ;;
  clean) rm -rf "$root" "$root.partial" ;;
  *)
    echo "debian13: unknown command $cmd (root, test, shell, clean)" >&2
    exit 2
    ;;
esac
