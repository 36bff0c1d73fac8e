"""Helpers shared by the reference scripts: a streamed file hash, rounding to significant
digits, and atomic fixture writes (a temp file beside the target, then a rename), so an
interrupted regeneration never leaves a half-written fixture behind."""

import hashlib
import json
import os


def file_sha256(path):
    """Hex sha256 of a file, read in 1 MiB chunks (model files are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def r7(x):
    """`x` rounded to 7 significant digits (float32 precision), as a Python float."""
    return float(f"{float(x):.7g}")


def r9(x):
    """`x` rounded to 9 significant digits, as a Python float."""
    return float(f"{float(x):.9g}")


def write_text_atomic(path, text):
    """Writes `text` (UTF-8, line endings as given) to `path` through `path + ".tmp"` and a
    rename."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path, data):
    """Writes the bytes `data` to `path` through `path + ".tmp"` and a rename."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_json_atomic(path, obj, compact=False):
    """Writes `obj` as JSON plus a newline, atomically: one space-free line when `compact`,
    else indented by one space. Non-ASCII text is kept as is."""
    if compact:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(obj, indent=1, ensure_ascii=False)
    write_text_atomic(path, text + "\n")
