#!/usr/bin/env python3
"""An independent reader of a Hugging Face directory written by `pudding export`: reads
every tensor with the `safetensors` Python package (numpy), `config.json` with json, and
checks that they describe one consistent decoder. Prints a JSON summary; exits 1 with the
reason on the first inconsistency.

    python3 -m venv V && V/bin/pip install safetensors numpy
    V/bin/python scripts/reference/check_hf_export.py DIR
"""
import json
import os
import re
import sys

from safetensors.numpy import load_file

directory = sys.argv[1]
config = json.load(open(os.path.join(directory, "config.json")))
text = config.get("text_config", config)
n_layers = text["num_hidden_layers"]


def fail(reason):
    print(f"check_hf_export: {reason}", file=sys.stderr)
    sys.exit(1)


index_path = os.path.join(directory, "model.safetensors.index.json")
if os.path.exists(index_path):
    weight_map = json.load(open(index_path))["weight_map"]
    files = sorted(set(weight_map.values()))
else:
    weight_map = None
    files = ["model.safetensors"]
tensors = {}
for name in files:
    for key, array in load_file(os.path.join(directory, name)).items():
        if key in tensors:
            fail(f"{key} is stored twice")
        if weight_map is not None and weight_map.get(key) != name:
            fail(f"{key} is in {name}, the index says {weight_map.get(key)}")
        tensors[key] = array
if weight_map is not None and set(weight_map) != set(tensors):
    fail("the index and the shards list different tensors")

block = re.compile(r"^(model\.layers|language_model\.model\.layers|model\.language_model\.layers)\.(\d+)\.(.*)$")
layers = {}
for key in tensors:
    m = block.match(key)
    if m:
        layers.setdefault(int(m.group(2)), set()).add(m.group(3))
if sorted(layers) != list(range(n_layers)):
    fail(f"config.json says {n_layers} layers, the weights hold blocks {sorted(layers)}")
shapes = {frozenset(v) for v in layers.values()}
if len(shapes) != 1:
    fail("the blocks do not all hold the same tensors")
layer_types = text.get("layer_types")
if layer_types is not None and len(layer_types) != n_layers:
    fail(f"layer_types has {len(layer_types)} entries for {n_layers} layers")
print(json.dumps({
    "num_hidden_layers": n_layers,
    "tensors": len(tensors),
    "parameters": int(sum(a.size for a in tensors.values())),
    "layer_types": layer_types,
    "shards": len(files),
    "pudding_export": config.get("pudding_export"),
}))
