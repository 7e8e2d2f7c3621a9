#!/usr/bin/env bash
# Installs what the test suite needs besides cargo, idempotently: it only calls pip when a
# module is missing. Used by developers and CI (`bash scripts/test-deps.sh`).
#
# Python (tests/dkim_verify.py): dkimpy, the independent DKIM verifier; PyNaCl for its
# ed25519-sha256 support; dnspython, which dkimpy imports.
set -euo pipefail

PYTHON="${PYTHON:-python3}"

python_has() {
    "$PYTHON" -c "import $1" >/dev/null 2>&1
}

pip_install() {
    # Debian's system Python refuses pip without this flag (PEP 668); a pyenv/venv Python accepts
    # it too, so try the plain form first and fall back.
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "$@" ||
        "$PYTHON" -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}

missing=()
python_has dkim || missing+=(dkimpy)
python_has dns || missing+=(dnspython)
python_has nacl || missing+=(pynacl)

if ((${#missing[@]})); then
    echo "test-deps: installing ${missing[*]}" >&2
    pip_install "${missing[@]}"
else
    echo "test-deps: python modules present (dkim, dns, nacl)" >&2
fi
