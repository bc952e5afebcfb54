#!/usr/bin/env bash
# Installs what wardseal-card's and wardseal-softhsm's tests need (Debian 12, as root).
# The tests start pcscd themselves (`pcscd --foreground` under /tmp/wardseal-pcsc-tests.lock,
# stopped by PID) and make their own SoftHSM stores; nothing else has to be running.
set -euo pipefail
packages=(softhsm2 opensc opensc-pkcs11 pcscd pcsc-tools libpcsclite-dev vsmartcard-vpcd libssl-dev pkg-config openssl)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing Debian packages: ${missing[*]} (run as root to install)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
# pcscd must not already run: the tests check "pcscd not running" and own the daemon.
if pgrep -x pcscd >/dev/null; then
    echo "warning: a pcscd is running; wardseal-card's PC/SC test will fail until it is stopped" >&2
fi
