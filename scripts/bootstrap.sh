#!/usr/bin/env bash
# Installs the Debian packages ferry needs, and nothing else:
#   scripts/bootstrap.sh run [PKG...]    to build and run (compiler, cmake, the -dev libraries)
#   scripts/bootstrap.sh test [PKG...]   that, plus what the tests use (the default)
#   scripts/bootstrap.sh --list run|test  prints the set, one package a line, and stops
# Further package names are installed too (the bench setup scripts add their own).
# Idempotent: when everything is present it only checks and returns. As root it uses
# apt-get; otherwise sudo (without a password prompt); otherwise it prints the exact
# command to run and stops.
set -euo pipefail

# What building and running ferry needs (`make run`, `make`, `make install`).
run_packages=(
  gcc make cmake pkg-config
  libmicrohttpd-dev libjansson-dev libsqlite3-dev libpq-dev libssl-dev libjwt-dev
  libcurl4-openssl-dev libgit2-dev zlib1g-dev libzstd-dev libgnutls28-dev libxml2-dev libsodium-dev
  libyajl-dev
)
# What the tests need on top (`make test`): unit tests (cmocka), the formatting check,
# the API tests (pytest, python3-cryptography for identity-provider keys, a PostgreSQL
# they start themselves, the README tour's curl, jq and sqlite3) and git for the list of
# C sources.
test_packages=(
  clang-format git
  clang libclang-rt-14-dev
  libcmocka-dev
  python3 python3-pytest python3-requests python3-zstandard zstd openssl python3-cryptography
  postgresql curl jq sqlite3
)

list_only=false
if [ "${1:-}" = --list ]; then
  list_only=true
  shift
fi
set_name=test
case "${1:-}" in
  run | test) set_name=$1; shift ;;
esac
packages=("${run_packages[@]}")
if [ "$set_name" = test ]; then
  packages+=("${test_packages[@]}")
  # Node.js runs the real clients the API tests drive (tus-js-client) and the OpenAPI
  # lint. A machine may have it from elsewhere (NodeSource bundles npm); Debian's
  # packages are used only when not.
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    packages+=(nodejs npm)
  fi
fi
packages+=("$@")
if $list_only; then
  printf '%s\n' "${packages[@]}"
  exit 0
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
