#!/usr/bin/env python3
"""How much of a BoolQ score is the yes/no prior, per omission set.

    python3 scripts/analysis/boolq_signal.py results/smollm2/eval/paper [--first N]

Reads every `*.json` results file in the directory (`pudding eval` / `reproduce` output)
and prints, for its BoolQ items (the first N if given), the accuracy as reported, how
often the model answers " yes" (log-likelihood of " yes" above " no"), and the ROC AUC of
that margin against the gold answer: the probability that a random "yes" passage gets a
larger margin than a random "no" passage. AUC 0.5 means the margin carries no
information about the answer, whatever the accuracy; accuracy then only reflects where
the yes/no threshold falls relative to the 62 % "yes" rate of the split. Standard library
only.
"""

import argparse
import json
import math
import pathlib


def auc(pos, neg):
    """Mann-Whitney AUC with ties counted half (O(n log n) by ranking)."""
    scored = sorted([(x, 1) for x in pos] + [(x, 0) for x in neg])
    rank_sum, i = 0.0, 0
    while i < len(scored):
        j = i
        while j < len(scored) and scored[j][0] == scored[i][0]:
            j += 1
        mean_rank = (i + 1 + j) / 2
        rank_sum += mean_rank * sum(1 for k in range(i, j) if scored[k][1] == 1)
        i = j
    n_pos, n_neg = len(pos), len(neg)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=pathlib.Path)
    parser.add_argument("--first", type=int, default=None)
    args = parser.parse_args()
    print("| set | items | acc | answers yes | AUC of the yes-no margin (± s.e.) |")
    print("|---|---|---|---|---|")
    for path in sorted(args.directory.glob("*.json")):
        task = json.loads(path.read_text())["tasks"].get("boolq")
        if task is None:
            continue
        items = task["items"]
        if args.first is not None:
            items = [i for i in items if i["doc_id"] < args.first]
        # lm-evaluation-harness's BoolQ choices are [" no", " yes"]; gold 1 is "yes".
        margins = [(i["loglikelihoods"][1] - i["loglikelihoods"][0], i["gold"]) for i in items]
        pos = [m for m, g in margins if g == 1]
        neg = [m for m, g in margins if g == 0]
        if not pos or not neg:
            continue
        a = auc(pos, neg)
        # Hanley-McNeil standard error.
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        se = math.sqrt(
            (a * (1 - a) + (len(pos) - 1) * (q1 - a * a) + (len(neg) - 1) * (q2 - a * a))
            / (len(pos) * len(neg))
        )
        acc = sum((m > 0) == (g == 1) for m, g in margins) / len(margins)
        yes = sum(m > 0 for m, _ in margins) / len(margins)
        print(
            f"| {path.stem} | {len(margins)} | {100 * acc:.1f} | {100 * yes:.0f} % "
            f"| {a:.3f} ± {se:.3f} |"
        )


if __name__ == "__main__":
    main()
