#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing and benchmarking Trellis needs.
# Idempotent: safe to run again; it only installs what is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git clang lld llvm libclang-rt-14-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libssl-dev openssl libpqxx-dev libpq-dev libsqlite3-dev sqlite3
  prometheus-cpp-dev nlohmann-json3-dev libcpp-httplib-dev libyaml-cpp-dev libtinyxml2-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  postgresql postgresql-client
  python3 python3-grpcio python3-grpc-tools python3-cryptography python3-jwt python3-yaml systemd
  procps util-linux
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
