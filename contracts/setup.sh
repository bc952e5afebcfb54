#!/usr/bin/env bash
# Installs the pinned Solidity compiler (solc-js), OpenZeppelin contracts and anvil for
# wardseal-contracts from package-lock.json, without running any install script.
# Idempotent: does nothing when node_modules already matches the lock file.
# Prints where anvil is; tests find it through WARDSEAL_ANVIL or at that path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
anvil="$here/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
stamp="$here/node_modules/.wardseal-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ -x "$anvil" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "contracts/setup.sh: node_modules matches package-lock.json" >&2
else
    command -v npm >/dev/null || { echo "contracts/setup.sh: npm not found (install Node.js 20)" >&2; exit 1; }
    npm ci --ignore-scripts --no-audit --no-fund >&2
    echo "$want" > "$stamp"
fi
"$anvil" --version >/dev/null
echo "$anvil"
