#!/usr/bin/env python3
"""Independent reference fixture for `pudding_models::gguf` (reader + dequantisation).

Regenerating the fixture
------------------------
    python3 -m venv /opt/refenv
    /opt/refenv/bin/pip install gguf numpy
    /opt/refenv/bin/python scripts/reference/gguf_dequant_fixture.py

Run from anywhere; it writes (paths relative to the repository root)
    crates/pudding-models/tests/fixtures/gguf_types.gguf
    crates/pudding-models/tests/fixtures/gguf_types.json
(both small) and takes about a second.  `--out-dir DIR` writes elsewhere.

What it does (deliberately independent of the Rust implementation)
------------------------------------------------------------------
* The GGUF file is written by gguf-py's `GGUFWriter` (v3, alignment 32).
* Metadata: one key of every scalar type (u8, i8, u16, i16, u32, i32, f32,
  bool, string, u64, i64, f64), arrays of strings / i32 / f32, and a nested
  array (array of array<i32>).  The JSON lists each key with its type name
  and value.
* Tensors quantised by gguf-py (`gguf.quants.quantize`): F32, F16, BF16, Q8_0,
  Q4_0, Q4_1, Q5_0, Q5_1.  Inputs are seeded random normals (various scales)
  plus hand-picked blocks: all zeros, a constant block (Q4_1/Q5_1 d = 0) and a
  block with one large outlier.  Plus a 3-D F32 tensor to pin the dims order.
* gguf-py cannot quantise k-quants, but it can dequantise them, so Q4_K, Q5_K
  and Q6_K tensors are built from random block bytes (with sane f16 scale
  fields) and their expected values come from `gguf.quants.dequantize`.
* A Q3_K tensor (random bytes) is included to check the "unsupported type"
  error; its values are not compared.
* For every tensor the JSON holds the name, ggml type, ggml dims (fastest
  varying first), the row-major numpy shape, and the exact dequantised values
  (`gguf.quants.dequantize`, float32, storage order).  Tensors that gguf-py
  quantised also carry their float32 `input`, so the Rust quantisers (used by
  `GgufWriter`) can be checked byte for byte against gguf-py's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_text_atomic  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "crates" / "pudding-models" / "tests" / "fixtures"
SEED = 20250607


def input_matrix(rng: np.random.Generator, rows: int, cols: int, scale: float) -> np.ndarray:
    x = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
    if cols >= 96:
        x[0, 0:32] = 0.0                       # all-zero block
        x[0, 32:64] = np.float32(0.37)         # constant block
        x[0, 64:96] *= 0.01
        x[0, 70] = np.float32(5.0 * scale)     # outlier
    return x


def random_kquant_bytes(rng: np.random.Generator, qtype: T, n_blocks: int) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)

    def f16_bytes(lo: float, hi: float) -> np.ndarray:
        v = rng.uniform(lo, hi, size=n_blocks).astype(np.float16)
        return v.view(np.uint8).reshape(n_blocks, 2)

    if qtype in (T.Q4_K, T.Q5_K):   # d, dmin at the start
        raw[:, 0:2] = f16_bytes(0.001, 0.02)
        raw[:, 2:4] = f16_bytes(0.0, 0.02)
    elif qtype == T.Q6_K:           # d at the end
        raw[:, type_size - 2:] = f16_bytes(0.0005, 0.01)
    elif qtype == T.Q3_K:           # d at the end
        raw[:, type_size - 2:] = f16_bytes(0.001, 0.02)
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    gguf_path = args.out_dir / "gguf_types.gguf"
    json_path = args.out_dir / "gguf_types.json"

    rng = np.random.default_rng(SEED)
    # gguf-py writes in place, so it writes a temp file that is renamed once complete.
    gguf_tmp = gguf_path.with_name(gguf_path.name + ".tmp")
    w = gguf.GGUFWriter(str(gguf_tmp), arch="fixture")   # adds general.architecture

    metadata: dict[str, dict] = {"general.architecture": {"type": "string", "value": "fixture"}}

    def kv(key: str, vtype: gguf.GGUFValueType, tname: str, value, sub_type=None) -> None:
        w.add_key_value(key, value, vtype, sub_type=sub_type)
        metadata[key] = {"type": tname, "value": value}

    V = gguf.GGUFValueType
    kv("test.u8", V.UINT8, "u8", 200)
    kv("test.i8", V.INT8, "i8", -100)
    kv("test.u16", V.UINT16, "u16", 60000)
    kv("test.i16", V.INT16, "i16", -30000)
    kv("test.u32", V.UINT32, "u32", 4000000000)
    kv("test.i32", V.INT32, "i32", -2000000000)
    kv("test.f32", V.FLOAT32, "f32", float(np.float32(1e-5)))
    kv("test.bool", V.BOOL, "bool", True)
    kv("test.string", V.STRING, "string", "h\u00e9llo \u2603 GGUF")
    kv("test.u64", V.UINT64, "u64", 2**40 + 7)
    kv("test.i64", V.INT64, "i64", -(2**40) - 7)
    kv("test.f64", V.FLOAT64, "f64", 0.1)
    kv("test.str_array", V.ARRAY, "array<string>", ["a", "bb", "", "\u00fc"], sub_type=V.STRING)
    kv("test.i32_array", V.ARRAY, "array<i32>", [1, -2, 3, 2147483647], sub_type=V.INT32)
    f32s = [float(np.float32(v)) for v in (0.5, -1.25, 3.0e-3)]
    kv("test.f32_array", V.ARRAY, "array<f32>", f32s, sub_type=V.FLOAT32)
    kv("test.nested", V.ARRAY, "array<array>", [[1, 2], [3]], sub_type=V.ARRAY)

    tensors: list[dict] = []

    def add(name: str, qtype: T, stored: np.ndarray, shape: tuple[int, ...], compare: bool = True,
            source: np.ndarray | None = None) -> None:
        if stored.dtype == np.uint8:
            w.add_tensor(name, stored, raw_dtype=qtype)
        else:
            w.add_tensor(name, stored)
        entry = {
            "name": name,
            "type": qtype.name,
            "dims": [int(d) for d in reversed(shape)],
            "shape": [int(d) for d in shape],
        }
        if compare:
            values = dequantize(stored, qtype).astype(np.float32).reshape(-1)
            assert values.size == int(np.prod(shape)), (name, values.shape, shape)
            assert np.all(np.isfinite(values)), name
            entry["values"] = [float(v) for v in values]
        if source is not None:
            entry["input"] = [float(v) for v in source.reshape(-1)]
        tensors.append(entry)

    # Types gguf-py can quantise.
    for qtype, rows, cols, scale in [
        (T.F32, 3, 40, 1.0),
        (T.F16, 4, 48, 0.5),
        (T.BF16, 4, 48, 3.0),
        (T.Q8_0, 3, 128, 1.0),
        (T.Q4_0, 3, 128, 0.2),
        (T.Q4_1, 3, 128, 0.05),
        (T.Q5_0, 3, 128, 2.0),
        (T.Q5_1, 3, 128, 0.1),
    ]:
        x = input_matrix(rng, rows, cols, scale)
        q = quantize(x, qtype)
        if qtype == T.F32:
            q = q.astype(np.float32)
        add(f"t.{qtype.name.lower()}", qtype, q, (rows, cols), source=x)

    # ggml dims order for a 3-D tensor: dims [32, 3, 2] <-> numpy shape (2, 3, 32).
    x3 = rng.standard_normal((2, 3, 32)).astype(np.float32)
    add("t.f32_3d", T.F32, x3, (2, 3, 32))

    # k-quants: random blocks, 2 rows of one super-block each (2 x 256 values).
    for qtype in (T.Q4_K, T.Q5_K, T.Q6_K):
        raw = random_kquant_bytes(rng, qtype, 2)
        add(f"t.{qtype.name.lower()}", qtype, raw, (2, 256))

    # Unsupported by the Rust dequantiser: only the error is checked.
    add("t.q3_k", T.Q3_K, random_kquant_bytes(rng, T.Q3_K, 1), (1, 256), compare=False)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(gguf_tmp, gguf_path)

    doc = {
        "generator": "scripts/reference/gguf_dequant_fixture.py",
        "seed": SEED,
        "gguf_file": gguf_path.name,
        "version": 3,
        "alignment": 32,
        "metadata": metadata,
        "tensors": tensors,
    }
    # ASCII-escaped JSON (json.dumps' default), as the committed fixture has it.
    write_text_atomic(json_path, json.dumps(doc, indent=1) + "\n")
    n_values = sum(len(t.get("values", [])) for t in tensors)
    print(f"wrote {gguf_path} ({gguf_path.stat().st_size} bytes) and {json_path} "
          f"({len(tensors)} tensors, {n_values} values)")


if __name__ == "__main__":
    main()
