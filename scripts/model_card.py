"""Writes the shipped model's card (Markdown) from its artifact and two held-out evaluations."""
import json
import sys

artifact_path, seed_eval_path, other_eval_path = sys.argv[1:4]
artifact = json.load(open(artifact_path))
card = artifact["card"]
data = card["data"]
test = card["metrics"]["test"]
validation = card["metrics"]["validation"]


def band_counts(counts):
    return f"LOW {counts['low']} / ELEVATED {counts['elevated']} / HIGH {counts['high']}"


print(f"""# Model card: `{artifact['model_version']}` (the shipped default)

- **What it predicts**: the likelihood that a contact to 110 is deliberate misuse. Labels: {card['label_source']}
- **Learner**: {card['learner']}, chosen on {card['chosen_on']} among {len(card['candidates'])} candidates;
  calibrated with Platt scaling on the validation range; feature schema `{artifact['schema']['fingerprint']}`
  ({len(artifact['schema']['names'])} features).
- **Data**: simulated (`saring-train simulate --seed 1 --days 60 --callers 20000`), fingerprint
  `{data['fingerprint'][:16]}…`, {data['from']} to {data['to']}: {data['contacts']} contacts, {data['labelled']} labelled,
  {data['positives']} misuse. Split by time: train {data['train']['rows']} rows until {data['train']['until']},
  validation {data['validation']['rows']} rows, test {data['test']['rows']} rows from {data['test']['from']}.
- **Bands**: ELEVATED at likelihood ≥ {artifact['bands']['elevated']:.3f}, HIGH at ≥ {artifact['bands']['high']:.3f}
  ({card['bands']['chosen_for']}).
- **Limits**: trained on simulated traffic only; real dispositions will differ. The simulator's caller archetypes
  and rates are documented in `training/src/simulate.rs`. Retrain on real operator dispositions before relying on
  the bands.

## Candidates (validation range)

| candidate | ROC-AUC | PR-AUC | fit seconds |
|---|---|---|---|""")
for candidate in card["candidates"]:
    print(f"| {candidate['candidate']} | {candidate['validation_roc_auc']:.4f} | {candidate['validation_pr_auc']:.4f} | {candidate['fit_seconds']:.1f} |")
print(f"""
## Held-out time range of the training log (last 15%)

| metric | validation | test |
|---|---|---|
| ROC-AUC | {validation['roc_auc']:.4f} | {test['roc_auc']:.4f} |
| PR-AUC | {validation['pr_auc']:.4f} | {test['pr_auc']:.4f} |
| Brier | {validation['brier']:.4f} | {test['brier']:.4f} |
| naive rule ROC-AUC (caller's past misuse share) | {validation['naive_roc_auc']:.4f} | {test['naive_roc_auc']:.4f} |
| base rate | {validation['base_rate']:.3f} | {test['base_rate']:.3f} |
| genuine emergencies by band | {band_counts(validation['genuine_emergencies_by_band'])} | {band_counts(test['genuine_emergencies_by_band'])} |

## Traffic it has never seen

Another seed (`simulate --seed 2 --days 30 --callers 20000`), scored contact by contact at arrival:

```
{open(seed_eval_path).read().rstrip()}
```

Other regions and misuse mixes (`simulate --seed 3 --days 30 --callers 20000 --regions "aceh.banda=6:1,maluku.ambon=0.2:2,kaltim.samarinda=1.2:1,diy.yogyakarta=0.6:1"`):

```
{open(other_eval_path).read().rstrip()}
```

Reproduce everything on this page with `scripts/train-default-model.sh`.""")
