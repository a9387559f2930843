#!/usr/bin/env bash
# Installs what dpool needs to build and test on Debian 12 (bookworm), and nothing when all of
# it is there already. Uses sudo when not run as root. Safe to run any number of times.
set -euo pipefail

packages=(
  g++ cmake make pkg-config
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libyaml-cpp-dev
  libspdlog-dev libcli11-dev nlohmann-json3-dev libgtest-dev
  libabsl-dev  # the broker's hash tables (Abseil's flat_hash_map)
  iproute2
  docker-compose  # only `docker-compose config` in tests/compose: Debian 12's v1 needs no engine
  libssl-dev   # only examples/md5_folder: OpenSSL's libcrypto computes its MD5
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "setup: apt-get not found; install these by hand: ${missing[*]}" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "setup: not root and no sudo; install these as root: ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
