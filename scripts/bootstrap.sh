#!/usr/bin/env bash
# Installs the Debian packages ferry needs to build, run and test, and nothing else;
# package names given as arguments are installed too (bench/push_pull/setup.sh adds its
# own). Idempotent: when everything is present it only checks and returns. As root it
# uses apt-get; otherwise sudo (without a password prompt); otherwise it prints the exact
# command to run and stops.
set -euo pipefail

packages=(
  gcc make cmake pkg-config clang-format git
  libmicrohttpd-dev libjansson-dev libsqlite3-dev libpq-dev libssl-dev libjwt-dev
  libcurl4-openssl-dev libgit2-dev
  libcmocka-dev
  python3 python3-pytest python3-requests
  postgresql curl
  "$@"
)
# Node.js runs the real clients the API tests drive (tus-js-client). A machine may have
# it from elsewhere (NodeSource bundles npm); Debian's packages are used only when not.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "bootstrap: installing ${missing[*]}" >&2
cmd=(apt-get install -y -q --no-install-recommends "${missing[@]}")
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -eq 0 ]; then
  apt-get update -q >&2
  "${cmd[@]}" >&2
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo -n apt-get update -q >&2
  sudo -n env DEBIAN_FRONTEND=noninteractive "${cmd[@]}" >&2
else
  echo "bootstrap: missing packages; run as root:" >&2
  echo "  apt-get update && ${cmd[*]}" >&2
  exit 1
fi
