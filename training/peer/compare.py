"""scikit-learn's learners on saring's exported feature matrix and split, printed beside saring's own.

Every learner (saring's and scikit-learn's) chooses its hyper-parameters on the validation range by ROC-AUC; the table
shows the chosen candidate's test-range ROC-AUC and PR-AUC and its fit time (training range only; saring's booster
also watches the validation range to stop early, scikit-learn's HistGradientBoosting holds out 10% of the training
range for the same purpose).
"""
import json
import os
import platform
import sys
import time

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

dataset_path, saring_summary_path = sys.argv[1:3]
frame = pd.read_csv(dataset_path, dtype={"label": "float64"})
frame = frame[frame["label"].notna()]
feature_columns = list(frame.columns[8:])
parts = {name: frame[frame["split"] == name] for name in ("train", "validation", "test")}
x = {name: part[feature_columns].to_numpy() for name, part in parts.items()}
y = {name: part["label"].to_numpy().astype(int) for name, part in parts.items()}

candidates = {
    "scikit-learn LogisticRegression": [
        (f"C={c}", lambda c=c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)))
        for c in (0.01, 1.0)
    ],
    "scikit-learn HistGradientBoosting": [
        (
            f"learning_rate={lr}, max_leaf_nodes={leaves}, max_iter={rounds}",
            lambda lr=lr, leaves=leaves, rounds=rounds: HistGradientBoostingClassifier(
                learning_rate=lr, max_leaf_nodes=leaves, max_iter=rounds, early_stopping=True, random_state=7
            ),
        )
        for lr, leaves, rounds in ((0.1, 15, 600), (0.1, 31, 600), (0.05, 63, 600))
    ],
}

rows = []
for learner, grid in candidates.items():
    best = None
    for name, make in grid:
        model = make()
        started = time.perf_counter()
        model.fit(x["train"], y["train"])
        fit_seconds = time.perf_counter() - started
        validation_auc = roc_auc_score(y["validation"], model.predict_proba(x["validation"])[:, 1])
        print(f"{learner} {name}: validation ROC-AUC {validation_auc:.4f}, fit {fit_seconds:.1f} s", file=sys.stderr)
        if best is None or validation_auc > best[0]:
            scores = model.predict_proba(x["test"])[:, 1]
            best = (validation_auc, name, roc_auc_score(y["test"], scores), average_precision_score(y["test"], scores), fit_seconds)
    rows.append((learner, *best))

saring = json.load(open(saring_summary_path))["candidates"]
for kind in ("logistic", "forest", "boosted"):
    of_kind = [candidate for candidate in saring if candidate["kind"] == kind]
    if not of_kind:
        continue
    chosen = max(of_kind, key=lambda candidate: candidate["validation_roc_auc"])
    rows.append((f"saring {kind}", chosen["validation_roc_auc"], chosen["candidate"], chosen["test_roc_auc"], chosen["test_pr_auc"], chosen["fit_seconds"]))

print(f"train {len(y['train'])} / validation {len(y['validation'])} / test {len(y['test'])} labelled rows, "
      f"{len(feature_columns)} features; scikit-learn {sklearn.__version__}, Python {platform.python_version()}, "
      f"{os.cpu_count()} CPUs")
print()
print("| learner | chosen on validation | validation ROC-AUC | test ROC-AUC | test PR-AUC | fit seconds |")
print("|---|---|---|---|---|---|")
for learner, validation_auc, name, test_auc, test_pr, fit_seconds in rows:
    print(f"| {learner} | {name} | {validation_auc:.4f} | {test_auc:.4f} | {test_pr:.4f} | {fit_seconds:.1f} |")
best_saring = max((row for row in rows if row[0].startswith("saring")), key=lambda row: row[1])
best_peer = max((row for row in rows if row[0].startswith("scikit")), key=lambda row: row[1])
print()
print(f"best on validation: {best_saring[0]} test ROC-AUC {best_saring[3]:.4f} in {best_saring[5]:.1f} s; "
      f"{best_peer[0]} {best_peer[3]:.4f} in {best_peer[5]:.1f} s; difference {best_saring[3] - best_peer[3]:+.4f} "
      f"(goal: no worse than -0.005), fit time ratio {best_saring[5] / best_peer[5]:.2f}")
