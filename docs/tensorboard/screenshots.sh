#!/usr/bin/env bash
# Screenshots of TensorBoard's Scalars, Images and HParams views for a
# 2-setting x 2-seed soft_vs_hard sweep, taken with headless Chromium on
# 127.0.0.1 (Debian: apt-get install chromium), into docs/tensorboard/. Run from the repository root
# with the environment active: bash docs/tensorboard/screenshots.sh
set -euo pipefail
out=docs/tensorboard
sweep=$(mktemp -d)/sweep
python launch.py -m experiment=soft_vs_hard labels=hard,smoothing seed=0,1 hydra.sweep.dir="$sweep"
tensorboard --logdir "$sweep" --host 127.0.0.1 --port 6123 --load_fast=false >/dev/null 2>&1 &
board=$!
trap 'kill $board' EXIT
until curl -sf http://127.0.0.1:6123/ >/dev/null; do sleep 1; done
sleep 5  # the first read of the event files
shoot() {  # view, file, window size
  chromium --headless --no-sandbox --disable-gpu --enable-unsafe-swiftshader --hide-scrollbars \
    --virtual-time-budget=20000 --window-size="$3" --screenshot="$out/$2" "http://127.0.0.1:6123/#$1"
}
shoot scalars scalars.png 1400,1000
shoot images images.png 1400,1000
shoot 'images&tagFilter=test%2F(mistakes|reliability)' mistakes.png 1400,1000
shoot 'text&runSelectionState=eyIwX2xhYmVscz1oYXJkLHNlZWQ9MCI6dHJ1ZX0%3D' text.png 1400,1000
shoot hparams hparams.png 1400,700
