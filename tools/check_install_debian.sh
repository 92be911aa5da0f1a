#!/usr/bin/env bash
# Checks README's Linux install steps on a clean Debian 12 (bookworm): a
# chroot that has only debootstrap's minimal system plus exactly the Debian
# package list in README.md, in which the workspace builds and trains.
#
# Run as root from the repository root (not part of `cargo test`):
#
#   tools/check_install_debian.sh prepare   # debootstrap + apt-get install README's list + library check
#   tools/check_install_debian.sh toolchain # the lent toolchain runs inside, crates all there (no build)
#   tools/check_install_debian.sh build     # cargo build --release and a 5-step `train` inside (~20 min on 2 cores)
#   tools/check_install_debian.sh app       # optional: the app under Xvfb for 15 s (installs xvfb first)
#   tools/check_install_debian.sh clean     # unmount whatever a stopped run left; `clean --remove` deletes the chroot
#
# The chroot cannot reach rustup's servers or crates.io, so `build` lends it
# this machine's toolchain and crates: ~/.rustup bind-mounted read-only,
# ~/.cargo as an overlay (read-only below, the chroot's writes kept apart),
# the repository bind-mounted read-only at /src. The build goes to
# /build/target inside the chroot and cargo runs with --offline --locked.
# Every mount is undone when the command ends, also on failure or Ctrl-C.
# Run `build` while no other cargo runs: it takes both cores, and the crates
# overlay reads the host's ~/.cargo as it is.
#
# Environment: CHROOT (default /work/chroot-check), MIRROR (default
# http://deb.debian.org/debian), RUSTUP_HOME / CARGO_HOME (default ~/.rustup,
# ~/.cargo).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
chroot_dir=${CHROOT:-/work/chroot-check}
mirror=${MIRROR:-http://deb.debian.org/debian}
host_rustup=${RUSTUP_HOME:-$HOME/.rustup}
host_cargo=${CARGO_HOME:-$HOME/.cargo}
say() { printf 'check-install: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mount need it)"

# README's Debian list: the `apt-get install` block after the
# `<!-- debian-packages` marker, up to the closing fence.
readme_packages() {
  awk '/<!-- debian-packages/ {on = 1; next}
       on && /^```/ {if (seen) exit; seen = 1; next}
       on && seen {print}' "$repo/README.md" |
    tr '\\\n' '  ' | sed -e 's/.*apt-get install//' -e 's/ -y / /' | xargs -n1 | grep -v '^-' | xargs
}

# --- mounts, undone in reverse order on exit --------------------------------
mounted=()
mount_at() { # mount_at TARGET MOUNT-ARGS...
  local target=$1; shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounted+=("$target")
}
bind_ro() { # bind_ro SOURCE TARGET
  mount_at "$2" --bind "$1"
  mount -o remount,bind,ro "$2"
}
unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" || umount -l "${mounted[i]}" || say "could not unmount ${mounted[i]}"
  done
  mounted=()
}
trap unmount_all EXIT
system_mounts() {
  mount_at "$chroot_dir/proc" -t proc proc
  mount_at "$chroot_dir/dev" --bind /dev
  bind_ro /sys "$chroot_dir/sys"
}
in_chroot() { chroot "$chroot_dir" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

# --- phases ------------------------------------------------------------------
prepare() {
  if [ ! -x "$chroot_dir/usr/bin/apt-get" ]; then
    command -v debootstrap >/dev/null || apt-get install -y debootstrap
    say "debootstrap bookworm (minbase) into $chroot_dir"
    debootstrap --variant=minbase bookworm "$chroot_dir" "$mirror"
  fi
  local packages
  packages=$(readme_packages)
  [ -n "$packages" ] || die "no Debian package list found in README.md (the <!-- debian-packages --> block)"
  say "README's Debian packages: $packages"
  cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
  system_mounts
  in_chroot apt-get update -qq
  # shellcheck disable=SC2086 # the list is words
  in_chroot apt-get install -y -qq --no-install-recommends $packages
  unmount_all

  # What the built program needs from them: a C compiler for the build, and
  # the libraries the app opens at run time (it links only libc, libm and
  # libgcc_s; winit, wgpu, fontconfig and rfd open the rest with dlopen).
  local missing=() libs
  libs=$(in_chroot ldconfig -p)
  in_chroot cc --version >/dev/null 2>&1 || missing+=("cc (build-essential)")
  for so in libX11.so.6 libX11-xcb.so.1 libXcursor.so.1 libXi.so.6 libxcb.so.1 \
    libxkbcommon.so.0 libxkbcommon-x11.so.0 libwayland-client.so.0 libwayland-egl.so.1 \
    libEGL.so.1 libEGL_mesa.so.0 libfontconfig.so.1 libdbus-1.so.3; do
    grep -q "	$so " <<<"$libs" || missing+=("$so")
  done
  ls "$chroot_dir"/usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || missing+=("Mesa's software renderer (swrast_dri.so)")
  [ ${#missing[@]} -eq 0 ] || die "missing after installing README's list: ${missing[*]}"
  say "prepared: compiler and every library the app loads are there"
}

lend_toolchain() {
  [ -d "$host_rustup/toolchains" ] || die "no rustup toolchains in $host_rustup"
  [ -d "$host_cargo/registry" ] || die "no crates in $host_cargo/registry: run cargo fetch on this machine first"
  system_mounts
  bind_ro "$host_rustup" "$chroot_dir/root/.rustup"
  mkdir -p "$chroot_dir/var/tmp/cargo-overlay/upper" "$chroot_dir/var/tmp/cargo-overlay/work"
  mount_at "$chroot_dir/root/.cargo" -t overlay overlay \
    -o "lowerdir=$host_cargo,upperdir=$chroot_dir/var/tmp/cargo-overlay/upper,workdir=$chroot_dir/var/tmp/cargo-overlay/work"
  bind_ro "$repo" "$chroot_dir/src"
  mkdir -p "$chroot_dir/build/run"
}

# cargo inside the chroot, through rustup's proxy as a user's shell has it.
chroot_cargo() {
  in_chroot /bin/sh -c "cd /build/run && RUSTUP_HOME=/root/.rustup CARGO_HOME=/root/.cargo \
    CARGO_TARGET_DIR=/build/target PATH=/root/.cargo/bin:\$PATH $*"
}

# The lent toolchain answers and every crate is there offline (no build).
toolchain() {
  [ -x "$chroot_dir/usr/bin/cc" ] || die "run '$0 prepare' first"
  lend_toolchain
  chroot_cargo cargo --version
  chroot_cargo rustc --version
  chroot_cargo cargo fetch --offline --locked --manifest-path /src/Cargo.toml
  say "toolchain lent: cargo and rustc run inside, every crate is there offline"
}

build() {
  toolchain
  say "cargo build --release (about 20 minutes on 2 cores)"
  chroot_cargo cargo build --release --offline --locked --manifest-path /src/Cargo.toml
  say "cargo run --release -- train --preset tiny --max-steps 5 --data training_data"
  chroot_cargo cargo run --release --offline --locked --manifest-path /src/Cargo.toml -- \
    train --preset tiny --max-steps 5 --data /src/training_data
  ls "$chroot_dir/build/run/models/trained_model_kissing_spheres.cllm" >/dev/null ||
    die "the run wrote no model"
  say "built and trained in a clean Debian 12 with README's packages"
}

app() {
  [ -x "$chroot_dir/build/target/release/cllm" ] || die "run '$0 build' first"
  # xvfb brings a few libraries of its own (libgl1 among them): this is a
  # check that the app draws, not of the list's minimality.
  system_mounts
  in_chroot apt-get install -y -qq --no-install-recommends xvfb xauth
  set +e
  in_chroot /bin/sh -c 'cd /build/run && timeout 15 xvfb-run -a /build/target/release/cllm'
  local rc=$?
  set -e
  [ "$rc" = 124 ] || die "the app exited with $rc within 15 s under Xvfb (124 = still running, as wanted)"
  say "the app ran 15 s under Xvfb"
}

clean() {
  local m
  # Mounts a killed run left, deepest first.
  for m in $(findmnt -rn -o TARGET | grep "^$chroot_dir/" | sort -r); do
    umount "$m" || umount -l "$m"
  done
  if [ "${1:-}" = --remove ]; then
    rm -rf --one-file-system "$chroot_dir"
    say "removed $chroot_dir"
  fi
}

case "${1:-}" in
  prepare) prepare ;;
  toolchain) toolchain ;;
  build) build ;;
  app) app ;;
  clean) clean "${2:-}" ;;
  packages) readme_packages ;;
  *) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
