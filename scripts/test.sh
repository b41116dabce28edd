#!/usr/bin/env bash
# Runs every check of UniSAL Studio, as CI does: formatting, clippy, the UI's type check, unit tests and
# build, all Rust tests, then the WebDriver test of the real app under Xvfb. Installs missing system and
# npm packages first (Debian 12 / Ubuntu). Prints a summary; exits non-zero if any step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
# A one-shot run gains nothing from incremental compilation, and its caches cost gigabytes of disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

ensure_rust
ensure_node
ensure_apt_packages
ensure_tauri_driver

RESULTS=()
FAILED=0
START_ALL=$SECONDS

step() {
  local name="$1"; shift
  local t0=$SECONDS
  echo
  echo "==> $name"
  if "$@"; then
    RESULTS+=("PASS  $(printf '%4ss' $((SECONDS - t0)))  $name")
  else
    RESULTS+=("FAIL  $(printf '%4ss' $((SECONDS - t0)))  $name")
    FAILED=1
  fi
}

summary() {
  echo
  echo "================ UniSAL Studio test summary ================"
  printf '%s\n' "${RESULTS[@]}"
  echo "total: $((SECONDS - START_ALL)) s"
  if [ "$FAILED" -eq 0 ]; then echo "RESULT: all checks passed"; else echo "RESULT: FAILED"; fi
  echo "============================================================"
}

ui_checks() {
  (cd ui && npm ci --no-audit --no-fund && npm run check && npm test && npm run build)
}

# The UI must be built before any cargo step: the app embeds ui/dist at compile time.
step "UI: npm ci, type check (svelte-check), unit tests (vitest), build" ui_checks
if [ ! -f ui/dist/index.html ]; then
  summary
  echo "ui/dist was not built; the Rust steps need it." >&2
  exit 1
fi
step "cargo fmt --all --check" cargo fmt --all --check
step "cargo clippy --workspace --all-targets -- -D warnings" cargo clippy --workspace --all-targets -- -D warnings
step "cargo test --workspace (all Rust tests but the WebDriver ones)" \
  cargo test --workspace -- --skip demo_grid_and_import_in_the_real_app \
  --skip label_train_review_and_restart_in_the_real_app
# Run under Xvfb: each test starts one when $DISPLAY is unset. `--workspace` keeps the feature set of the step
# above, so nothing is compiled again (with `-p unisal-studio` cargo rebuilt a second copy of many crates).
step "WebDriver: the real app under Xvfb: demo grid, create a project, import a folder" \
  env -u DISPLAY cargo test --workspace --test webdriver -- --nocapture
step "WebDriver: label by click and key, undo, train on the CPU, review, results, export, restart" \
  env -u DISPLAY cargo test --workspace --test webdriver_label -- --nocapture

summary
exit "$FAILED"
