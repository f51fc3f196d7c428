#!/usr/bin/env bash
# Installs what the tests need beyond cargo, each only when missing: Debian's Chromium
# and ChromeDriver (tests/status_page.rs drives a real browser) and a Python venv with
# wechatpy from PyPI (tests/proxy_sdk.rs drives a real SDK through the proxy). The tests
# fail, saying what is missing, rather than skip. Used by the README's test command and
# by .ci/run. Usage: bash tests/deps.sh   (from anywhere; needs root or sudo for apt-get)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { printf 'deps: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly, or through sudo when available.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        apt_updated=yes
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "deps: chromium or chromedriver not found; installing them with apt-get"
    apt_install chromium chromium-driver
fi
/usr/bin/chromium --version

if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    echo "deps: python3 with venv not found; installing python3 and python3-venv with apt-get"
    apt_install python3 python3-venv
fi
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || die "could not read cargo's target directory"
bash tests/sdk/wechatpy-venv.sh "$target_dir/sdk-venv"
