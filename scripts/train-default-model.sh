#!/usr/bin/env bash
# Rebuilds the shipped model and its card from scratch: simulate the training log, fit, then evaluate on two logs the
# model has never seen (another seed; another regional mix; 16 held-out worlds outside every domain-randomisation
# training range, training/src/worlds.rs). Deterministic up to the training date in the version.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p saring-training
train=./target/release/saring-train
mkdir -p data

$train simulate --out data/train.jsonl --seed 1 --days 60 --callers 20000
$train fit --events data/train.jsonl --out models/artifacts/default.json
$train simulate --out data/holdout-seed2.jsonl --seed 2 --days 30 --callers 20000
$train simulate --out data/holdout-other-regions.jsonl --seed 3 --days 30 --callers 20000 \
  --regions "aceh.banda=6:1,maluku.ambon=0.2:2,kaltim.samarinda=1.2:1,diy.yogyakarta=0.6:1"
$train evaluate --model models/artifacts/default.json --events data/holdout-seed2.jsonl \
  --report docs/model-report/seed2 > data/eval-seed2.txt
$train evaluate --model models/artifacts/default.json --events data/holdout-other-regions.jsonl \
  --report docs/model-report/other-regions > data/eval-other.txt
$train evaluate --model models/artifacts/default.json --events data/train.jsonl --test-range \
  --report docs/model-report/test-range > data/eval-test-range.txt

$train generalisation --model models/artifacts/default.json --held-out-seed 1001 --held-out-worlds 16 \
  --held-out-callers 4000 > data/generalisation.md

python3 scripts/model_card.py models/artifacts/default.json data/eval-seed2.txt data/eval-other.txt \
  "saring-train simulate --seed 1 --days 60 --callers 20000" data/generalisation.md \
  models/artifacts/generalisation-notes.md > models/artifacts/README.md
echo "wrote models/artifacts/default.json, models/artifacts/README.md and docs/model-report/"
