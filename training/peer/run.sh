#!/usr/bin/env bash
# The peer to beat, in one command: saring's learners and scikit-learn's (HistGradientBoostingClassifier,
# LogisticRegression) trained on the same feature matrix with the same time-based split, in one table.
#
#   training/peer/run.sh [EVENTS]     # default: the shipped model's training log (simulate --seed 1 --days 60 --callers 20000)
#
# Creates a Python venv in training/peer/.venv (gitignored) and installs scikit-learn and pandas from PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release -p saring-training
train=./target/release/saring-train
mkdir -p data/peer
events=${1:-data/train.jsonl}
if [ ! -f "$events" ]; then
  $train simulate --out "$events" --seed 1 --days 60 --callers 20000
fi

venv=training/peer/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "scikit-learn>=1.5" "pandas>=2" "numpy>=1.26"
fi

$train dataset --events "$events" --out data/peer/dataset.csv
$train fit --events "$events" --learners all --out data/peer/saring-model.json --summary-out data/peer/saring-summary.json
"$venv/bin/python" training/peer/compare.py data/peer/dataset.csv data/peer/saring-summary.json
