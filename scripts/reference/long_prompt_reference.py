#!/usr/bin/env python3
"""Independent reference for a long prompt on SmolLM2-135M-Instruct (GGUF, Q4_1).

A prompt of 3,400 token ids is past the sizes at which pudding stops holding the whole
attention mask and computes attention in chunks of queries (MASK_DENSE_LIMIT,
ATTENTION_SCORES_LIMIT in crates/pudding-models/src/llama.rs): this fixture checks those
paths against the plain float64 numpy forward of smollm2_reference.py (whole T x T
attention per head, no chunking).

Regenerating the fixture (run from the repository root; ~2 minutes on two busy cores):
    python3 -m pip install gguf numpy regex
    python3 scripts/reference/long_prompt_reference.py \
        --gguf ~/.cache/pudding/models/SmolLM2-135M-Instruct.Q4_1.gguf

It writes crates/pudding-models/tests/fixtures/smollm2_long_reference.json: the ids
(np.random.default_rng(0).integers(17, vocab, 3400): past the 17 control tokens), and at
two positions (the middle and the last) the log-sum-exp, the top 32 ids with their
log-probabilities and the log-probabilities of 256 probe ids, dense (one forward: the
test's cost grows with the square of the length).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from fixture_io import file_sha256, r7, write_json_atomic  # noqa: E402
from smollm2_reference import DEFAULT_GGUF, N_PROBE, N_TOP, Model, log_softmax  # noqa: E402

OUT = "crates/pudding-models/tests/fixtures/smollm2_long_reference.json"
N_IDS = 3400
SKIPS = [[]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    model = Model(args.gguf)
    ids = [int(i) for i in np.random.default_rng(0).integers(17, model.vocab, N_IDS)]
    positions = [N_IDS // 2 - 1, N_IDS - 1]
    probe = np.sort(np.random.default_rng(0).choice(model.vocab, size=N_PROBE, replace=False))
    cases = []
    for skip in SKIPS:
        x = model.embd[np.asarray(ids)]
        for layer in range(model.n_layer):
            if layer not in skip:
                x = model.block(layer, x)
        lp, lse = log_softmax(model.head(x[positions]))
        rows = []
        for k, pos in enumerate(positions):
            row = lp[k]
            top = np.argsort(-row, kind="stable")[:N_TOP]
            rows.append({
                "position": pos,
                "lse": r7(lse[k]),
                "top_ids": [int(i) for i in top],
                "top_logprobs": [r7(row[i]) for i in top],
                "probe_logprobs": [r7(v) for v in row[probe]],
            })
        cases.append({"skip": skip, "positions": rows})
        print(f"skip={skip} top1 at the last position: {rows[-1]['top_ids'][0]}", file=sys.stderr)
    write_json_atomic(args.out, {
        "generator": "scripts/reference/long_prompt_reference.py",
        "command": f"python3 scripts/reference/long_prompt_reference.py --gguf {args.gguf}"
        .replace(os.path.expanduser("~"), "~"),
        "gguf_sha256": file_sha256(args.gguf),
        "ids": ids,
        "probe_ids": [int(i) for i in probe],
        "cases": cases,
    }, compact=True)


if __name__ == "__main__":
    main()
