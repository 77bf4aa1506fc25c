#!/usr/bin/env bash
# The tutorial's runs and its TensorBoard pictures, taken with headless
# Chromium on 127.0.0.1 (Debian: apt-get install chromium). Run from the
# repository root with the environment active: bash docs/tutorial/screenshots.sh
set -euo pipefail
out=docs/tutorial
runs=${1:-runs/tutorial}
rm -rf "$runs"
python launch.py model=linear hydra.run.dir="$runs/linear"
python launch.py hydra.run.dir="$runs/mlp"
python launch.py experiment=binary_digits hydra.run.dir="$runs/parity"
python launch.py -m experiment=soft_vs_hard labels=hard,smoothing,distill seed=0 hydra.sweep.dir="$runs/soft_vs_hard"
jaxclf-data fetch mnist
python launch.py -m experiment=overfitting regulariser=none,augmentation seed=0 data=mnist data.train_examples=5000 \
  hydra.sweep.dir="$runs/overfitting"
python launch.py model=vit loss=soft_ce hydra.run.dir="$runs/vit"

shoot() {  # logdir, view, file, window size
  tensorboard --logdir "$1" --host 127.0.0.1 --port 6124 --load_fast=false >/dev/null 2>&1 &
  local board=$!
  until curl -sf http://127.0.0.1:6124/ >/dev/null; do sleep 1; done
  sleep 5  # the first read of the event files
  chromium --headless --no-sandbox --disable-gpu --enable-unsafe-swiftshader --hide-scrollbars \
    --virtual-time-budget=20000 --window-size="$4" --screenshot="$out/$3" "http://127.0.0.1:6124/#$2"
  kill "$board"
  wait "$board" 2>/dev/null || true
}
shoot "$runs/linear" 'scalars&tagFilter=train%2Floss%7Ceval%2Fnll' linear_loss.png 1400,900
shoot "$runs/mlp" 'images&tagFilter=test%2F' mlp_test_images.png 1400,900
shoot "$runs/parity" 'images&tagFilter=test%2Freliability' parity_reliability.png 1400,900
shoot "$runs/soft_vs_hard" 'scalars&tagFilter=test%2Fece%7Ctest%2Faccuracy%7Ctest_calibrated%2Fece' soft_vs_hard.png 1400,900
shoot "$runs/overfitting" 'scalars&tagFilter=%5E(train%7Ceval)%2Faccuracy%24%7Cgap' overfitting.png 1400,900
shoot "$runs/vit" 'text&tagFilter=run%2Fparameters' vit_parameters.png 1400,900
