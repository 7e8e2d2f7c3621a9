#!/usr/bin/env bash
# Installs what the test suite needs besides cargo, idempotently: it only calls pip when a
# module is missing. Used by developers and CI (`bash scripts/test-deps.sh`).
#
# Python (tests/dkim_verify.py): dkimpy, the independent DKIM verifier; PyNaCl for its
# ed25519-sha256 support; dnspython, which dkimpy imports. Debian: chromium and
# chromium-driver for the real-browser test (see the end of this file); gnupg for tests/pgp.rs.
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

# Debian packages (tests/web_browser.rs): chromium and its WebDriver server, chromium-driver,
# drive the web pages in a real browser. apt-get runs only when one is missing, and
# `apt-get update` only when the install fails without it (a fresh image has no lists).
deb_missing=()
[[ -x /usr/bin/chromium ]] || deb_missing+=(chromium)
[[ -x /usr/bin/chromedriver ]] || deb_missing+=(chromium-driver)
# tests/attachment_metadata.rs: exiftool and poppler's pdfinfo/pdftoppm check attachments
# independently of the crates that clean them.
[[ -x /usr/bin/exiftool ]] || deb_missing+=(libimage-exiftool-perl)
[[ -x /usr/bin/pdftoppm ]] || deb_missing+=(poppler-utils)
# tests/pgp.rs: GnuPG makes the members' keys and decrypts what arrives (gpg, gpgconf).
[[ -x /usr/bin/gpg && -x /usr/bin/gpgconf ]] || deb_missing+=(gnupg)

if ((${#deb_missing[@]})); then
    echo "test-deps: installing ${deb_missing[*]} (Debian)" >&2
    SUDO=()
    ((EUID == 0)) || SUDO=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    apt_install() {
        "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${deb_missing[@]}"
    }
    apt_install || { "${SUDO[@]}" apt-get update -q && apt_install; }
else
    echo "test-deps: chromium, chromedriver, exiftool, poppler-utils and gnupg present" >&2
fi

# PostgreSQL (tests/store_backends.rs, tests/nodes.rs): Debian's `postgresql` package gives
# initdb and pg_ctl under /usr/lib/postgresql/*/bin; the tests start a throw-away cluster of
# their own (tests/support/postgres.rs), never the system one. PostgreSQL refuses to run as
# root, so as root the tests run it as the unprivileged user `remailer-test`, made here.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    echo "test-deps: installing postgresql (Debian)" >&2
    SUDO=()
    ((EUID == 0)) || SUDO=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    pg_install() { "${SUDO[@]}" apt-get install -y -q --no-install-recommends postgresql; }
    pg_install || { "${SUDO[@]}" apt-get update -q && pg_install; }
else
    echo "test-deps: postgresql present" >&2
fi
if ((EUID == 0)) && ! id -u remailer-test >/dev/null 2>&1; then
    echo "test-deps: creating the user remailer-test (runs the test PostgreSQL)" >&2
    useradd --system --no-create-home --shell /usr/sbin/nologin remailer-test
fi
