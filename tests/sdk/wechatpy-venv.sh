#!/usr/bin/env bash
# Creates, once, the Python venv with wechatpy from PyPI that tests/proxy_sdk.rs drives
# through the counting proxy (a real WeChat SDK, not hand-written requests).
# Usage: tests/sdk/wechatpy-venv.sh VENV_DIR
# Needs python3 with the venv module (Debian: apt-get install python3-venv) and PyPI.
set -euo pipefail

WECHATPY_VERSION=1.8.18
venv=${1:?usage: $0 VENV_DIR}

if [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" -c "import wechatpy, sys; sys.exit(wechatpy.__version__ != '$WECHATPY_VERSION')" 2>/dev/null; then
    exit 0
fi
command -v python3 >/dev/null 2>&1 ||
    { echo "wechatpy-venv: python3 not found (Debian: apt-get install python3 python3-venv)" >&2; exit 1; }
python3 -m venv "$venv" ||
    { echo "wechatpy-venv: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
# wechatpy imports a crypto backend at start; "cryptography" is the one it names.
"$venv/bin/pip" install --quiet --disable-pip-version-check "wechatpy[cryptography]==$WECHATPY_VERSION"
"$venv/bin/python" -c "import wechatpy; print('wechatpy', wechatpy.__version__, 'in', '$venv')"
