"""Writes the shipped model's card (Markdown) from its artifact, two held-out evaluations and, optionally, the
training command and the `saring-train generalisation` table (held-out worlds outside every training range)."""
import json
import sys

artifact_path, seed_eval_path, other_eval_path = sys.argv[1:4]
train_command = sys.argv[4] if len(sys.argv) > 4 else "saring-train simulate --seed 1 --days 60 --callers 20000"
generalisation_path = sys.argv[5] if len(sys.argv) > 5 else None
artifact = json.load(open(artifact_path))
card = artifact["card"]
data = card["data"]
test = card["metrics"]["test"]
validation = card["metrics"]["validation"]
calibration = card["calibration"]
ece = calibration["ece"]
bands = card["metrics"]["bands"]
reference = card["reference"]
naive = card.get("naive_rule", {})


def per_band_table():
    if "per_band" not in bands["test"]:
        return ""
    lines = ["Each band's own contacts (precision = misuse share among them, recall = share of all labelled misuse "
             "landing there):", "", "| band | validation precision / recall | test precision / recall |",
             "|---|---|---|"]
    for band in ["low", "elevated", "high"]:
        cells = []
        for split in ["validation", "test"]:
            entry = bands[split]["per_band"][band]
            precision = "–" if entry["precision"] is None else f"{entry['precision']:.3f}"
            cells.append(f"{precision} / {entry['recall']:.3f} ({entry['contacts']} contacts)")
        lines.append(f"| {band.upper()} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def band_counts(counts):
    return f"LOW {counts['low']} / ELEVATED {counts['elevated']} / HIGH {counts['high']}"


def generalisation_section():
    if not generalisation_path:
        return ""
    return f"""## Populations it was never simulated for

Held-out worlds whose every parameter lies outside the training worlds' ranges (ranges in
`training/src/worlds.rs`), other seeds; every contact scored at arrival. Margin = model ROC-AUC minus the better
of the two naive-rule ROC-AUCs on the same contacts. Produced by:

{open(generalisation_path).read().rstrip()}

Measured when the default moved to domain-randomised training (2026-12-02), on the same 16 held-out worlds: the
previous default `boosted-20261124-e5cba6b0`, trained on one world (`simulate --seed 1 --days 60 --callers
20000`), also beat the naive rule on every world (worst margin +0.0016, mean +0.0443); the model trained on 16
randomised worlds as above had worst +0.0007 and mean +0.0425, better than the previous default on 5 of the 16.
Domain randomisation therefore bought no measurable margin on these worlds; it was kept because every row stays
positive and the training data no longer fixes one simulator's rates. The smallest margins come from worlds where
misuse callers dominate (misuse share over 50% with the misuse scale ×10–20) and both the model and the naive rule
rank barely better than chance: there a margin of +0.001 is within sampling noise (ROC-AUC standard error about
0.002 at 100 000 labelled contacts), so "positive" is not a claim of a real win. Monotone constraints and shrinkage
toward the naive rule for callers with little history were not added: no measured row was negative. The held-out
worlds' realised misuse shares span 7–81% of labelled contacts, not the 5–95% aimed at: with up to 10% label noise
and misusers' silent calls (labelled SILENT, not misuse) even a world of misuse callers stays below about 85%.

Costs of the switch, measured on the logs above: on another seed of the default world the new default ranks slightly
worse than the previous one (ROC-AUC 0.8694 against 0.8715; other regions 0.8754 against 0.8779), and because HIGH
must now hold at least a fifth of validation misuse (the recall floor; the 0.95 precision target is unattainable
there), HIGH finds far more misuse (4009 misuse contacts in HIGH on seed 2 against 776) at lower precision (0.893 against 0.968)
and holds more genuine emergencies (25 of 3892 on seed 2 against 5; the shipped-model test allows at most 1%).

"""


print(f"""# Model card: `{artifact['model_version']}` (the shipped default)

- **What it predicts**: the likelihood that a contact to 110 is deliberate misuse. Labels: {card['label_source']}
  ({card['label_definition']})
- **Learner**: {card['learner']}, chosen on {card['chosen_on']} among {len(card['candidates'])} candidates;
  calibrated with {calibration['method']} on the validation range (chosen by {calibration['chosen_by']});
  feature schema `{artifact['schema']['fingerprint']}` ({len(artifact['schema']['names'])} features).
  Hyper-parameters: `{json.dumps(card['hyper_parameters'])}`.
- **Data**: simulated (`{train_command}`), fingerprint
  `{data['fingerprint'][:16]}…`, {data['from']} to {data['to']}: {data['contacts']} contacts, {data['labelled']} labelled,
  {data['positives']} misuse. Split by time: train {data['train']['rows']} rows until {data['train']['until']},
  validation {data['validation']['rows']} rows, test {data['test']['rows']} rows from {data['test']['from']}.
- **Bands**: ELEVATED at likelihood ≥ {artifact['bands']['elevated']:.3f}, HIGH at ≥ {artifact['bands']['high']:.3f}
  ({card['bands']['chosen_for']}).
  {card['bands'].get('high_note', '')}.
- **Naive rule** (share of the caller's past labelled contacts that were misuse) on the same test range: ROC-AUC
  {naive.get('test_roc_auc_all_time', float('nan')):.4f} all-time, {naive.get('test_roc_auc_recent_30d', float('nan')):.4f} 30-day decayed; the model
  {naive.get('model_test_roc_auc', float('nan')):.4f}, margin {naive.get('margin', float('nan')):+.4f}{' (written with --allow-worse-than-naive)' if naive.get('overridden') else ''}.
  `fit` refuses to write a model that does not beat it.
- **Limits**: trained on simulated traffic only; real dispositions will differ. The simulator's caller archetypes
  and rates are documented in `training/src/simulate.rs`. Retrain on real operator dispositions before relying on
  the bands.

## Candidates (validation range)

| candidate | ROC-AUC | PR-AUC | fit seconds | boosting rounds |
|---|---|---|---|---|""")
for candidate in card["candidates"]:
    rounds = candidate.get("boosting_rounds") or "–"
    print(f"| {candidate['candidate']} | {candidate['validation_roc_auc']:.4f} | {candidate['validation_pr_auc']:.4f} | {candidate['fit_seconds']:.1f} | {rounds} |")
print(f"""
## Held-out time range of the training log (last 15%)

| metric | validation | test |
|---|---|---|
| ROC-AUC | {validation['roc_auc']:.4f} | {test['roc_auc']:.4f} |
| PR-AUC | {validation['pr_auc']:.4f} | {test['pr_auc']:.4f} |
| Brier | {validation['brier']:.4f} | {test['brier']:.4f} |
| naive rule ROC-AUC (caller's past misuse share) | {validation['naive_roc_auc']:.4f} | {test['naive_roc_auc']:.4f} |
| base rate | {validation['base_rate']:.3f} | {test['base_rate']:.3f} |
| ECE (15 bins) before calibration | {ece['validation']['uncalibrated']:.4f} | {ece['test']['uncalibrated']:.4f} |
| ECE with Platt scaling | {ece['validation']['platt']:.4f} | {ece['test']['platt']:.4f} |
| ECE as shipped ({calibration['method']}) | {ece['validation']['calibrated']:.4f} | {ece['test']['calibrated']:.4f} |
| ELEVATED precision / recall | {bands['validation']['elevated']['precision']:.3f} / {bands['validation']['elevated']['recall']:.3f} | {bands['test']['elevated']['precision']:.3f} / {bands['test']['elevated']['recall']:.3f} |
| HIGH precision / recall | {bands['validation']['high']['precision']:.3f} / {bands['validation']['high']['recall']:.3f} | {bands['test']['high']['precision']:.3f} / {bands['test']['high']['recall']:.3f} |
| genuine emergencies by band | {band_counts(validation['genuine_emergencies_by_band'])} | {band_counts(test['genuine_emergencies_by_band'])} |

{per_band_table()}
Calibration chosen by cross-fitting on the two halves of the validation range: Platt held-out log loss
{calibration['platt_cross_fit']['log_loss']:.4f} (ECE {calibration['platt_cross_fit']['ece']:.4f}), isotonic
{calibration['isotonic_cross_fit']['log_loss']:.4f} (ECE {calibration['isotonic_cross_fit']['ece']:.4f}).

## Traffic it has never seen

Another seed (`simulate --seed 2 --days 30 --callers 20000`), scored contact by contact at arrival:

```
{open(seed_eval_path).read().rstrip()}
```

Other regions and misuse mixes (`simulate --seed 3 --days 30 --callers 20000 --regions "aceh.banda=6:1,maluku.ambon=0.2:2,kaltim.samarinda=1.2:1,diy.yogyakarta=0.6:1"`):

```
{open(other_eval_path).read().rstrip()}
```

Full reports with plots and slices (region, channel, first-time vs known callers, genuine emergencies per band):
`docs/model-report/` (test range, seed 2, other regions).

{generalisation_section()}## Reference distribution for drift (`card.reference`)

Computed over every contact of the test range ({reference['from']} to {reference['until']}, {reference['contacts']}
contacts, labelled or not, because the service sees them all). Shape:

```json
"reference": {{
  "range": "test", "from": "<RFC 3339>", "until": "<RFC 3339>", "contacts": <n>,
  "bin_rule": "...",
  "bins": {{
    "likelihood": {{ "edges": [e0, e1, ...], "shares": [s0, s1, ..., sk] }},
    "<feature name>": {{ "edges": [...], "shares": [...] }}
  }},
  "band_shares": {{ "low": <share>, "elevated": <share>, "high": <share> }}
}}
```

- `edges` are inner decile edges (`k` strictly increasing values; fewer than 9 when values repeat, e.g. one edge
  `[0.0]` for a 0/1 feature); `shares` has `k + 1` entries summing to 1.
- Bin rule: a value `v` is in bin 0 when `v <= edges[0]`, in bin `i` when `edges[i-1] < v <= edges[i]`, in bin `k`
  when `v > edges[k-1]` (`edges.partition_point(|e| *e < v)` in Rust).
- `likelihood` is the calibrated likelihood the service returns; the features are named as in the schema
  (`schema.names`): {", ".join(f"`{name}`" for name in reference['bins'] if name != 'likelihood')}.
- The reference is global (all regions of the training log). For a population stability index, floor every
  share (reference and observed) at a small epsilon such as 1e-4 before `Σ (obs − ref) · ln(obs / ref)`: a bin can
  be empty in a short window.

Reproduce everything on this page with `scripts/train-default-model.sh`.""")
