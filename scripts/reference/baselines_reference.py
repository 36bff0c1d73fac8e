#!/usr/bin/env python3
"""Independent reference for the one-shot and greedy static baselines on SmolLM2-135M.

Regenerating the fixture
------------------------
    python3 -m venv /opt/refenv
    /opt/refenv/bin/pip install gguf numpy regex
    /opt/refenv/bin/python scripts/reference/baselines_reference.py \
        --gguf ~/.cache/pudding/models/SmolLM2-135M-Instruct.Q4_1.gguf

Run from the repository root. It writes
    crates/pudding-candidates/tests/fixtures/smollm2_baselines.json
and takes a few minutes on two busy cores (about 250 numpy forward passes).

What it computes, with the float64 numpy forward of `smollm2_reference.py` (weights
dequantised by the `gguf` package, its own RoPE, attention and BPE tokenizer), on the
plain texts in TEXTS, each scored as one continuation of the model's prefix token (the
GGUF's BOS id) and cut to its first MAX_TOKENS tokens:

* ShortGPT's Block Influence of every block of the dense model:
  BI_j = mean over all tokens (prefix included, of all texts) of 1 - cos(h_in, h_out),
  h_in / h_out the residual stream before / after block j.
* The perplexity loss (sum over texts of the mean next-token NLL of the text's tokens)
  of the dense model and with each block removed alone (Shortened LLaMA's PPL criterion).
* SLEB's greedy search for K_SLEB blocks with the first and last block protected: each
  phase removes the block whose removal (on top of the blocks already removed) gives the
  lowest perplexity loss; every phase's losses are recorded.

The Rust side (`crates/pudding-candidates/tests/baselines_real.rs`) runs
`shortgpt_block_influence`, `shortened_llama_ppl` and `sleb` on the same texts and
compares scores, losses and chosen sets. The script prints the smallest gap between a
chosen block and the next-best one, so a tolerance in the test can be checked against it.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

from fixture_io import file_sha256, r9, write_json_atomic  # noqa: E402
from smollm2_reference import DEFAULT_GGUF, BpeTokenizer, Model, field, log_softmax  # noqa: E402
from gguf import GGUFReader  # noqa: E402

OUT = "crates/pudding-candidates/tests/fixtures/smollm2_baselines.json"

TEXTS = [
    "The river rose quickly after three days of heavy rain, and the farmers moved their "
    "cattle to the hills before the water reached the lower fields.",
    "Photosynthesis converts light energy into chemical energy. Plants take in carbon "
    "dioxide and water and release oxygen as a by-product of the process.",
    "The committee met on Tuesday to review the budget. After a long discussion, it "
    "agreed to fund the new library but postponed the repairs to the town hall.",
    "A prime number has exactly two divisors: one and itself. The first few primes are "
    "2, 3, 5, 7 and 11, and there are infinitely many of them.",
]
MAX_TOKENS = 48
K_SHORTGPT = 3
K_SLEB = 2
PROTECT_FIRST = 1
PROTECT_LAST = 1



def ppl_loss(model, rows, skip):
    """Sum over rows of the mean NLL of every token after the first (the prefix)."""
    total = 0.0
    for ids in rows:
        lp, _ = log_softmax(model.logits(ids, skip))
        nll = [-lp[t, ids[t + 1]] for t in range(len(ids) - 1)]
        total += float(np.mean(nll))
    return total


def block_influence(model, rows):
    sums = np.zeros(model.n_layer)
    n_tokens = 0
    for ids in rows:
        x = model.embd[np.asarray(ids)]
        for j in range(model.n_layer):
            y = model.block(j, x)
            cos = (x * y).sum(-1) / np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
            sums[j] += float((1.0 - cos).sum())
            x = y
        n_tokens += len(ids)
    return sums / n_tokens


def lowest(scores, blocks, k):
    ranked = sorted(blocks, key=lambda b: (scores[b], b))
    gap = scores[ranked[k]] - scores[ranked[k - 1]] if k < len(ranked) else float("inf")
    return sorted(ranked[:k]), gap


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()

    sha = file_sha256(args.gguf)

    model = Model(args.gguf)
    prefix = int(field(GGUFReader(args.gguf), "tokenizer.ggml.bos_token_id"))
    tok = BpeTokenizer(model.tokens, model.token_type, model.merges)
    texts_ids = [tok.encode(t)[:MAX_TOKENS] for t in TEXTS]
    rows = [[prefix] + ids for ids in texts_ids]
    n = model.n_layer
    unprotected = list(range(PROTECT_FIRST, n - PROTECT_LAST))

    bi = block_influence(model, rows)
    shortgpt_set, shortgpt_gap = lowest(bi, unprotected, K_SHORTGPT)
    print(f"BI: {np.round(bi, 5).tolist()}\nShortGPT k={K_SHORTGPT}: {shortgpt_set} "
          f"(gap to the next block {shortgpt_gap:.3g})", file=sys.stderr)

    dense = ppl_loss(model, rows, [])
    single = [ppl_loss(model, rows, [b]) for b in range(n)]
    ppl_set, ppl_gap = lowest(single, unprotected, K_SHORTGPT)
    print(f"dense loss {dense:.6f}; one block removed: {np.round(single, 4).tolist()}\n"
          f"Shortened LLaMA PPL k={K_SHORTGPT}: {ppl_set} (gap {ppl_gap:.3g})",
          file=sys.stderr)

    current, steps = [], []
    for phase in range(K_SLEB):
        blocks = [b for b in unprotected if b not in current]
        losses = (single if phase == 0 else
                  [None] * n)
        if phase > 0:
            for b in blocks:
                losses[b] = ppl_loss(model, rows, current + [b])
        (best,), gap = lowest(losses, blocks, 1)
        steps.append({"blocks": blocks, "losses": [r9(losses[b]) for b in blocks],
                      "removed": best})
        current.append(best)
        print(f"SLEB phase {phase}: remove {best} (loss {losses[best]:.6f}, gap {gap:.3g})",
              file=sys.stderr)

    cmd = (f"python scripts/reference/baselines_reference.py --gguf {args.gguf}"
           .replace(os.path.expanduser("~"), "~"))
    out = {
        "generator": "scripts/reference/baselines_reference.py",
        "command": cmd,
        "gguf_sha256": sha,
        "texts": TEXTS,
        "max_tokens": MAX_TOKENS,
        "prefix_token": prefix,
        "ids": texts_ids,
        "protect_first": PROTECT_FIRST,
        "protect_last": PROTECT_LAST,
        "block_influence": [r9(v) for v in bi],
        "shortgpt": {"k": K_SHORTGPT, "set": shortgpt_set, "gap": r9(shortgpt_gap)},
        "dense_ppl_loss": r9(dense),
        "ppl_loss_one_removed": [r9(v) for v in single],
        "shortened_ppl": {"k": K_SHORTGPT, "set": ppl_set, "gap": r9(ppl_gap)},
        "sleb": {"k": K_SLEB, "steps": steps, "order": current},
    }
    write_json_atomic(args.out, out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
