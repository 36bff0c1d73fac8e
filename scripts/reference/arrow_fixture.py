#!/usr/bin/env python3
"""Independent reference fixture for `pudding_eval`'s Arrow IPC stream reader.

Regenerating the fixture
------------------------
    python3 -m venv /opt/arrowenv
    /opt/arrowenv/bin/pip install pyarrow
    /opt/arrowenv/bin/python scripts/reference/arrow_fixture.py

Writes (paths relative to the repository root)
    crates/pudding-eval/tests/fixtures/arrow_types.arrow
    crates/pudding-eval/tests/fixtures/arrow_types.json
and takes well under a second.  `--out-dir DIR` writes elsewhere.

The stream is written by pyarrow's `RecordBatchStreamWriter` (what Hugging Face
`datasets` uses for its `.arrow` files), in two record batches of 3 and 2 rows,
with one column of every type the reader supports (Null, Bool, signed and
unsigned Int of 8-64 bits, Float32/64, Utf8, LargeUtf8, List, LargeList, Struct,
a list of structs) and nulls in most of them.  The JSON holds the rows as Python
sees them through `Table.to_pylist()` (column `seq` is how `datasets` stores a
`Sequence` of a dict: a struct of lists), and the byte offset where the second
record batch starts (a file cut there must be rejected, not read short).
"""

import argparse
import os
import pathlib
import sys

import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_bytes_atomic, write_json_atomic  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--out-dir", type=pathlib.Path, default=ROOT / "crates/pudding-eval/tests/fixtures"
    )
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    schema = pa.schema(
        [
            ("nothing", pa.null()),
            ("flag", pa.bool_()),
            ("i8", pa.int8()),
            ("u16", pa.uint16()),
            ("i32", pa.int32()),
            ("i64", pa.int64()),
            ("u64", pa.uint64()),
            ("f32", pa.float32()),
            ("f64", pa.float64()),
            ("text", pa.string()),
            ("large_text", pa.large_string()),
            ("words", pa.list_(pa.string())),
            ("large_numbers", pa.large_list(pa.int64())),
            (
                "seq",
                pa.struct([("text", pa.list_(pa.string())), ("label", pa.list_(pa.int32()))]),
            ),
            ("pairs", pa.list_(pa.struct([("a", pa.int64()), ("b", pa.string())]))),
        ]
    )
    batches = [
        {
            "nothing": [None, None, None],
            "flag": [True, None, False],
            "i8": [-128, 127, None],
            "u16": [0, 65535, 7],
            "i32": [-2147483648, None, 2147483647],
            "i64": [-(2**63), 2**53 + 1, None],
            "u64": [2**64 - 1, 0, None],
            "f32": [1.5, None, -0.25],
            "f64": [3.141592653589793, -1e-300, None],
            "text": ["héllo wörld", "", None],
            "large_text": [None, "ünïcode ✓", "plain"],
            "words": [["a", "bb"], [], None],
            "large_numbers": [[1, 2, 3], None, [-4]],
            "seq": [
                {"text": ["x", "y"], "label": [1, 2]},
                None,
                {"text": [], "label": []},
            ],
            "pairs": [[{"a": 1, "b": "one"}, {"a": None, "b": None}], None, []],
        },
        {
            "nothing": [None, None],
            "flag": [False, True],
            "i8": [0, -1],
            "u16": [None, 1],
            "i32": [5, 6],
            "i64": [7, 8],
            "u64": [9, None],
            "f32": [None, 2.0],
            "f64": [0.0, 1.0],
            "text": ["second batch", "last row"],
            "large_text": ["a", None],
            "words": [None, ["z"]],
            "large_numbers": [[], [10, 20]],
            "seq": [{"text": ["q"], "label": [3]}, {"text": ["r", "s"], "label": [4, 5]}],
            "pairs": [[{"a": 2, "b": "two"}], None],
        },
    ]

    sink = pa.BufferOutputStream()
    second_batch_offset = None
    with pa.ipc.new_stream(sink, schema) as writer:
        for i, columns in enumerate(batches):
            if i == 1:
                second_batch_offset = sink.tell()
            writer.write_batch(pa.record_batch(columns, schema=schema))
    data = sink.getvalue().to_pybytes()

    table = pa.ipc.open_stream(data).read_all()
    rows = table.to_pylist()
    write_bytes_atomic(args.out_dir / "arrow_types.arrow", data)
    write_json_atomic(
        args.out_dir / "arrow_types.json",
        {"rows": rows, "second_batch_offset": second_batch_offset, "n_bytes": len(data)},
    )


if __name__ == "__main__":
    main()
