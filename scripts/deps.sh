#!/usr/bin/env bash
# Installs what UniSAL Studio needs on Debian 12 / Ubuntu when it is missing (sourced by run.sh, test.sh
# and .ci/run): the WebKitGTK 4.1 stack for Tauri 2, Xvfb and WebKitWebDriver for the UI test,
# tauri-driver 2.1.0, and checks Node.js. Installs nothing that is already there.

APT_PACKAGES=(
  build-essential pkg-config curl file
  libwebkit2gtk-4.1-dev libssl-dev libxdo-dev libayatana-appindicator3-dev librsvg2-dev
  xvfb webkit2gtk-driver
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found. Install Rust (https://rustup.rs) and rerun." >&2
    exit 2
  fi
}

ensure_node() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "error: Node.js >= 20.19 with npm is needed for the UI build (Debian's nodejs 18 is too old)." >&2
    exit 2
  fi
  local v major minor
  v="$(node --version | sed 's/^v//')"
  major="${v%%.*}"; minor="$(echo "$v" | cut -d. -f2)"
  if [ "$major" -lt 20 ] || { [ "$major" -eq 20 ] && [ "$minor" -lt 19 ]; }; then
    echo "error: Node.js $v is too old: Vite 8 needs >= 20.19." >&2
    exit 2
  fi
}

ensure_tauri_driver() {
  local bin="${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver"
  if [ -x "$bin" ] && "$bin" --help >/dev/null 2>&1; then return; fi
  if command -v tauri-driver >/dev/null 2>&1; then return; fi
  echo "==> installing tauri-driver 2.1.0 (about 1.5 minutes)"
  cargo install tauri-driver --version 2.1.0 --locked
}

# Installs the UI's npm packages exactly as locked, then builds ui/dist (the app embeds it at compile time).
build_ui() {
  echo "==> UI: npm ci && npm run build"
  (cd ui && npm ci --no-audit --no-fund && npm run build)
}
