#!/usr/bin/env bash
# Builds and runs UniSAL Studio on the bundled demo project (CC BY 4.0 Kather 2016 patches).
# With a display: the desktop app, opened on the demo. Without one: the headless CLI builds the demo
# project, prints its status, and runs its main job on the demo patches: a short active-learning
# simulation (two rounds of the small CNN on the CPU, the demo's labels answering the queries), writing
# results.csv and curve.svg. Installs missing system and npm packages first (Debian 12 / Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

ensure_rust
ensure_node
ensure_apt_packages
build_ui

if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
  echo "==> starting UniSAL Studio on the demo project"
  exec cargo run --release --features custom-protocol --bin unisal-studio -- --demo
fi

echo "==> no display: running the headless engine on the demo project"
DEMO_DIR="${UNISAL_DEMO_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/unisal-cli-demo}"
mkdir -p "$DEMO_DIR"
cargo run -p unisal-cli --release -- demo "$DEMO_DIR"
cargo run -p unisal-cli --release -- status "$DEMO_DIR/demo.unisal"
echo "==> a short active-learning simulation on the demo patches (small CNN, CPU)"
rm -rf "$DEMO_DIR/simulation"
cargo run -p unisal-cli --release -- simulate --pool assets/demo --test assets/demo \
  --strategies unisal,random --initial 8 --budget 4 --rounds 2 \
  --preset cpu-small --size 32 --iterations 20 --batch 8 --device cpu \
  --out "$DEMO_DIR/simulation" --progress-every 5
echo "==> results in $DEMO_DIR/simulation (results.csv, curve.svg)"
