"""Writes the shipped model's card (Markdown) from its artifact, two held-out evaluations and, optionally, the
training command and the `saring-train generalisation` table (held-out worlds outside every training range)."""
import json
import sys

artifact_path, seed_eval_path, other_eval_path = sys.argv[1:4]
train_command = sys.argv[4] if len(sys.argv) > 4 else "saring-train simulate --seed 1 --days 60 --callers 20000"
generalisation_path = sys.argv[5] if len(sys.argv) > 5 else None
notes_path = sys.argv[6] if len(sys.argv) > 6 else None
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


def high_and_naive():
    text = ""
    if "high_note" in card["bands"]:
        text += f"\n  {card['bands']['high_note']}."
    if naive:
        overridden = " (written with --allow-worse-than-naive)" if naive.get("overridden") else ""
        text += f"""
- **Naive rule** (share of the caller's past labelled contacts that were misuse) on the same test range: ROC-AUC
  {naive['test_roc_auc_all_time']:.4f} all-time, {naive['test_roc_auc_recent_30d']:.4f} 30-day decayed; the model
  {naive['model_test_roc_auc']:.4f}, margin {naive['margin']:+.4f}{overridden}. `fit` refuses to write a model that does not beat it."""
    return text


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
    return "\n".join(lines) + "\n\n"


def band_counts(counts):
    return f"LOW {counts['low']} / ELEVATED {counts['elevated']} / HIGH {counts['high']}"


def generalisation_section():
    if not generalisation_path:
        return ""
    notes = open(notes_path).read().rstrip() + "\n" if notes_path else ""
    return f"""## Populations it was never simulated for

Held-out worlds whose every parameter lies outside the training worlds' ranges (ranges in
`training/src/worlds.rs`), other seeds; every contact scored at arrival. Margin = model ROC-AUC minus the better
of the two naive-rule ROC-AUCs on the same contacts. Produced by:

{open(generalisation_path).read().rstrip()}

{notes}
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
  ({card['bands']['chosen_for']}).{high_and_naive()}
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

{per_band_table()}Calibration chosen by cross-fitting on the two halves of the validation range: Platt held-out log loss
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
