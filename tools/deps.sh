#!/bin/sh
# deps.sh -- make sure the Debian packages mpu needs are installed.
#
#   tools/deps.sh build|test|fuzz ...
#
# Installs what is missing with apt-get when run as root (or through sudo
# when it needs no password); otherwise prints the command to run and fails.
set -eu

build="gcc make pkg-config libzstd-dev libxxhash-dev libjansson-dev libsodium-dev
       libarchive-dev libopenblas-dev libpcre2-dev libutf8proc-dev zlib1g-dev"
test="bats bats-assert bats-support zstd xxhash tar libarchive-tools python3 python3-numpy python3-scipy"
fuzz="clang libclang-rt-14-dev"

want=""
for set in "$@"; do
  case $set in
    build) want="$want $build" ;;
    test) want="$want $test" ;;
    fuzz) want="$want $fuzz" ;;
    *) echo "deps.sh: unknown package set '$set'" >&2; exit 2 ;;
  esac
done

missing=""
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "mpu: missing packages:$missing -- this is not a Debian system; install their equivalents" >&2
  exit 2
fi
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  echo "mpu: missing Debian packages:$missing" >&2
  echo "mpu: run as root:  apt-get install -y$missing" >&2
  exit 2
fi
echo "mpu: installing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# An image without package lists has to fetch them first.
if ! $sudo apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; then
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
