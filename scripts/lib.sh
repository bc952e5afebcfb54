# Shared helpers for wardseal's scripts. Sourced, not run.

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command after printing it.
run() {
    log "$*"
    "$@"
}

# Makes sure the Debian packages named are installed. As root, installs the missing
# ones with apt-get; otherwise prints the exact command to run and stops, since the
# tests that need them would fail.
ensure_packages() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        log "installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || die "apt-get update failed"
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
            || die "apt-get install ${missing[*]} failed"
        return 0
    fi
    die "missing Debian packages: ${missing[*]}
  install them with:  sudo apt-get install -y ${missing[*]}"
}

# Fails unless the named commands are on PATH.
require_commands() {
    local command
    for command in "$@"; do
        command -v "$command" >/dev/null || die "required command '$command' not found on PATH"
    done
}

# The Debian packages the test suite needs, one place for all scripts.
TEST_PACKAGES=(
    openssl pkg-config libssl-dev                       # interop checks, -sys crates
    python3-venv                                        # pkilint from PyPI, in a venv
    softhsm2 opensc opensc-pkcs11                       # PKCS#11 tokens, pkcs11-tool
    pcscd pcsc-tools libpcsclite-dev vsmartcard-vpcd    # PC/SC with a virtual reader
    postgresql-15                                       # storage's production database (throwaway clusters)
    prometheus                                          # promtool lints the /metrics scrape
    chromium chromium-driver libnss3-tools              # the ward screen in headless Chromium (WebDriver, NSS client certificates)
    curl nginx                                          # EST enrollment as RFC 7030 shows it; nginx checks the CRL set
)

# What building the demo needs (openssl-sys, pcsc-sys link these); SoftHSM is optional.
DEMO_PACKAGES=(
    pkg-config libssl-dev libpcsclite-dev
)

# The PC/SC tests start their own pcscd and need the reader ports to themselves. Debian's
# pcscd package starts a daemon when it is installed; in CI that one is stopped, on a
# workstation the user is asked to stop it.
stop_stray_pcscd() {
    pgrep -x pcscd >/dev/null || return 0
    if [ "${CI:-}" = "true" ]; then
        log "stopping the system pcscd: the PC/SC tests run their own"
        pkill -x pcscd || true
        local waited=0
        while pgrep -x pcscd >/dev/null && [ $waited -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
        pgrep -x pcscd >/dev/null && die "pcscd did not stop"
        return 0
    fi
    die "a pcscd is running; the PC/SC tests start their own. Stop it first (e.g. sudo pkill -x pcscd)"
}

# Installs pkilint (PyPI, every package pinned in scripts/pkilint-requirements.txt) into a
# virtualenv under the cargo target directory and exports WARDSEAL_PKILINT_BIN, where the
# CA's interop tests find lint_pkix_cert and lint_crl.
ensure_pkilint() {
    local target="${CARGO_TARGET_DIR:-$PWD/target}"
    local venv="$target/pkilint-venv"
    local requirements="$PWD/scripts/pkilint-requirements.txt"
    local stamp="$venv/.wardseal-requirements.sha256"
    local want
    want=$(sha256sum "$requirements" | cut -d' ' -f1)
    if [ ! -x "$venv/bin/lint_pkix_cert" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing pkilint into $venv"
        python3 -m venv "$venv" || die "python3 -m venv failed (Debian package python3-venv)"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" \
            || die "pip install of pkilint failed"
        echo "$want" >"$stamp"
    fi
    export WARDSEAL_PKILINT_BIN="$venv/bin"
}

# Installs the FHIR client test's pinned npm packages (fhir-kit-client, the R4 JSON schema,
# ajv: storage/tests/fhir-js/package-lock.json) without install scripts; storage's fhir
# suite fails without them.
ensure_fhir_client() {
    require_commands node npm
    run npm ci --prefix storage/tests/fhir-js --ignore-scripts --no-audit --no-fund
}
