"""Reference for `pudding_router::learnability`, with numpy only.

Writes crates/pudding-router/tests/fixtures/learnability_reference.json: synthetic
embeddings (rows drawn around a few task centres, so the prompt carries some signal),
tasks and labels, and what each predictor picks per row and its held-out scores, computed
here independently of the Rust code. Regenerate with:

    python3 scripts/reference/learnability_reference.py
"""
import json
import os

import numpy as np

FOLDS, NEIGHBOURS, RIDGE = 4, 5, 0.5
rng = np.random.default_rng(7)
n, d, m = 60, 12, 4
tasks = [["arc_easy", "piqa", "boolq"][i % 3] for i in range(n)]
centres = {t: rng.normal(size=d) for t in set(tasks)}
x = np.array([centres[t] + 0.8 * rng.normal(size=d) for t in tasks], dtype=np.float32)
w = rng.normal(size=(d, m))
y = (x.astype(np.float64) @ w * 0.3 + rng.normal(size=(n, m))).astype(np.float32)
X = x.astype(np.float64)
Y = y.astype(np.float64)
unit = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)

picks = np.zeros((5, n), dtype=int)
for fold in range(FOLDS):
    train = np.array([i for i in range(n) if i % FOLDS != fold])
    test = [i for i in range(n) if i % FOLDS == fold]
    single = int(np.argmax(Y[train].mean(axis=0)))
    xm, ym = X[train].mean(axis=0), Y[train].mean(axis=0)
    xc, yc = X[train] - xm, Y[train] - ym
    weights = np.linalg.solve(xc.T @ xc + RIDGE * np.eye(d), xc.T @ yc)
    for i in test:
        picks[0, i] = single
        same = [j for j in train if tasks[j] == tasks[i]]
        picks[1, i] = int(np.argmax(Y[same].mean(axis=0))) if same else single
        sims = unit[train] @ unit[i]
        order = sorted(range(len(train)), key=lambda k: (-sims[k], train[k]))
        nearest = train[order[:NEIGHBOURS]]
        picks[2, i] = int(np.argmax(Y[nearest].mean(axis=0)))
        picks[3, i] = int(np.argmax(ym + (X[i] - xm) @ weights))
        picks[4, i] = int(np.argmax(Y[i]))

means = [float(np.mean(Y[np.arange(n), p])) for p in picks]
scores = []
for p, mean in zip(picks, means):
    gain = means[4] - means[0]
    scores.append({
        "mean_label": mean,
        "top1_agreement": float(np.mean(p == picks[4])),
        "regret": means[4] - mean,
        "recovered": (mean - means[0]) / gain if gain > 0 else None,
    })

out = os.path.join(os.path.dirname(__file__), "../../crates/pudding-router/tests/fixtures/learnability_reference.json")
with open(out, "w") as f:
    json.dump({
        "folds": FOLDS, "neighbours": NEIGHBOURS, "ridge": RIDGE,
        "embeddings": x.tolist(), "tasks": tasks, "labels": y.tolist(),
        "picks": picks.tolist(), "scores": scores,
    }, f)
print("wrote", os.path.normpath(out))
