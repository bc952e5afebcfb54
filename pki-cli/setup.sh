#!/usr/bin/env bash
# Prepares what wardseal-pki's interop tests need that cargo does not bring:
#   - Debian packages: openssl (x509/verify/crl checks), softhsm2 and opensc (a CA key on
#     a PKCS#11 token, generated with pkcs11-tool);
#   - pkilint from PyPI (pinned) in a virtualenv under the cargo target directory.
# Safe to run again. The tests read WARDSEAL_PKILINT_BIN (the directory holding
# lint_pkix_cert and lint_crl); by default <target>/pkilint-venv/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
PKILINT_VERSION=0.13.3

packages=(openssl softhsm2 opensc)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="$target/pkilint-venv"
if ! "$venv/bin/lint_pkix_cert" --help >/dev/null 2>&1 \
    || [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("pkilint"))' 2>/dev/null)" != "$PKILINT_VERSION" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "pkilint==$PKILINT_VERSION"
fi
echo "pkilint $PKILINT_VERSION ready: export WARDSEAL_PKILINT_BIN=$venv/bin"
