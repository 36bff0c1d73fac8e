#!/usr/bin/env python3
"""Independent numerical reference for SmolLM2-135M-Instruct (GGUF, Q4_1).

Regenerating the fixtures
-------------------------
    python3 -m venv /opt/refenv
    /opt/refenv/bin/pip install gguf numpy regex          # + tokenizers (optional cross-check)
    /opt/refenv/bin/python scripts/reference/smollm2_reference.py \
        --gguf ~/.cache/pudding/models/SmolLM2-135M-Instruct.Q4_1.gguf

Run from the repository root. It writes
    crates/pudding-models/tests/fixtures/smollm2_reference.json
    crates/pudding-models/tests/fixtures/smollm2_greedy.json
and takes about a minute on two (busy) CPU cores, most of it loading and
dequantising the GGUF.

What it does (deliberately independent of the Rust implementation)
------------------------------------------------------------------
* Weights: read with `gguf.GGUFReader` and dequantised with
  `gguf.quants.dequantize` (Q4_1 matrices, Q8_0 token_embd, F32 norms).
  GGUF lists shapes fastest-dim first (e.g. ffn_gate is [576, 1536]); the
  dequantised numpy array comes out as [out_features, in_features]
  (ffn_gate -> (1536, 576), ffn_down -> (576, 1536)); this is asserted.
* Forward pass: plain numpy float64.  Per block: RMSNorm(attn_norm) -> q,k,v ->
  RoPE -> causal GQA attention (scale 1/sqrt(head_dim), query head h uses KV
  head h // (n_head / n_head_kv)) -> attn_output -> residual; RMSNorm(ffn_norm)
  -> silu(gate) * up -> ffn_down -> residual.  Then output_norm and
  logits = h @ token_embd.T (tied embeddings, there is no output.weight), and
  log_softmax.  A skipped block is the identity on the residual stream.
* RoPE: the *interleaved* (GPT-J / llama.cpp "normal" mode) convention,
  rotating adjacent pairs (2i, 2i+1) with angle p * theta^(-2i/head_dim),
  applied directly to the GGUF row layout of attn_q / attn_k (which
  llama.cpp's converter permuted for exactly this convention).  The Rust side
  un-permutes to the HF layout and uses rotate-half, so agreement between the
  two is a real check of the permutation.
* Tokenizer: pure-Python byte-level BPE from `tokenizer.ggml.tokens` and
  `tokenizer.ggml.merges`.  Special tokens (every token of type CONTROL (3) in
  `tokenizer.ggml.token_type`: ids 0..16, e.g. <|endoftext|>, <|im_start|>,
  <|im_end|>) are matched as whole strings first; each remaining segment is
  split into individual digits (HF `Digits(individual_digits=True)`, isolated),
  then by GPT-2's regex, mapped through GPT-2's bytes_to_unicode and merged by
  merge rank.  No BOS is added.
  Cross-check: the ids are compared against a `tokenizers` (HF library)
  object built from the same vocab/merges with pre-tokenizer
  Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)].
  Result at generation time: the ids AGREE for all prompts (the script
  asserts this whenever `tokenizers` is importable).
* probe_ids: np.random.default_rng(0).choice(vocab, 256, replace=False), sorted.

Sanity check (printed): perplexity exp(nll_mean) of the first prompt
("The capital of France is Paris. ...", 21 tokens) is about 3.73 dense and
about 593 with blocks 10..19 skipped.  Values measured when the committed
fixture was generated: dense 3.7316, skip 10..19 592.98.

Near-ties (so comparisons of argmax / top-k order need a tolerance): in the
reference fixture the top-1/top-2 log-prob gap is < 0.01 at 4 positions (min
6.0e-4: "In 1969..." skip [1,5,..,25] pos 18); in the greedy fixture the
smallest top-1/top-2 logit margin is 0.0099 (first prompt, dense, step 23),
and 0.026 / 0.026 / 0.05 elsewhere.

GGUF notes: rms eps key `llama.attention.layer_norm_rms_epsilon` (f32,
9.9999997e-06), rope theta key `llama.rope.freq_base` (f32, 100000.0),
`llama.rope.dimension_count` = 64, `tokenizer.ggml.pre` = "smollm",
`tokenizer.ggml.add_bos_token` = false, token types: 49135 NORMAL (1) and
17 CONTROL (3).
"""

import argparse
import os
import sys

# Single-threaded BLAS: with small matrices, OpenBLAS threads on a busy machine
# oversubscribe and slow the forward pass down ~20x.  Override by exporting these.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import regex  # noqa: E402

from gguf import GGUFReader
from gguf.quants import dequantize

from fixture_io import file_sha256, r7, write_json_atomic

DEFAULT_GGUF = os.path.expanduser("~/.cache/pudding/models/SmolLM2-135M-Instruct.Q4_1.gguf")
REF_OUT = "crates/pudding-models/tests/fixtures/smollm2_reference.json"
GREEDY_OUT = "crates/pudding-models/tests/fixtures/smollm2_greedy.json"

PROMPTS = [
    "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome.",
    "Question: Which gas do plants absorb from the air?\nAnswer:",
    "<|im_start|>user\nWhat is 12 + 35?<|im_end|>\n<|im_start|>assistant\n",
    "In 1969, Neil Armstrong walked on the Moon; it's   remarkable!",
    "def fibonacci(n):\n    if n < 2:\n        return n",
    "Héllo wörld — naïve café 😀 日本語",
]
SKIPS = [
    [],
    [10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
    [3, 7, 19],
    [1, 5, 9, 13, 17, 21, 25],
]
GREEDY_PROMPTS = [0, 1, 2]
GREEDY_SKIPS = [[], [3, 7, 19]]
GREEDY_STEPS = 24
N_TOP = 32
N_PROBE = 256


# --------------------------------------------------------------------------- GGUF


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


class Model:
    def __init__(self, path):
        r = GGUFReader(path)
        arch = field(r, "general.architecture")
        assert arch == "llama", arch
        self.n_layer = int(field(r, f"{arch}.block_count"))
        self.d = int(field(r, f"{arch}.embedding_length"))
        self.ffn = int(field(r, f"{arch}.feed_forward_length"))
        self.n_head = int(field(r, f"{arch}.attention.head_count"))
        self.n_kv = int(field(r, f"{arch}.attention.head_count_kv"))
        self.head_dim = self.d // self.n_head
        self.theta = float(field(r, f"{arch}.rope.freq_base", 10000.0))
        self.eps = float(field(r, f"{arch}.attention.layer_norm_rms_epsilon"))
        self.meta = {
            "rope.freq_base": self.theta,
            "layer_norm_rms_epsilon": self.eps,
            "rope.dimension_count": field(r, f"{arch}.rope.dimension_count"),
        }

        w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type)
            # GGUF shape is fastest-dim first; numpy array must be its reverse.
            assert tuple(a.shape) == tuple(int(s) for s in reversed(list(t.shape))), (
                t.name, a.shape, t.shape)
            w[t.name] = np.asarray(a, dtype=np.float64)
        self.w = w
        assert "output.weight" not in w  # tied embeddings
        self.embd = w["token_embd.weight"]
        self.vocab = self.embd.shape[0]
        assert self.embd.shape == (self.vocab, self.d)
        hd, d = self.head_dim, self.d
        b0 = lambda n: w[f"blk.0.{n}.weight"].shape
        assert b0("attn_q") == (self.n_head * hd, d)
        assert b0("attn_k") == (self.n_kv * hd, d)
        assert b0("attn_v") == (self.n_kv * hd, d)
        assert b0("attn_output") == (d, self.n_head * hd)
        assert b0("ffn_gate") == (self.ffn, d)
        assert b0("ffn_up") == (self.ffn, d)
        assert b0("ffn_down") == (d, self.ffn)

        # tokenizer metadata
        self.tokens = list(field(r, "tokenizer.ggml.tokens"))
        self.token_type = [int(x) for x in field(r, "tokenizer.ggml.token_type")]
        self.merges = list(field(r, "tokenizer.ggml.merges"))

    def rmsnorm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope_interleaved(self, x):
        """x: [T, H, hd] in GGUF (llama.cpp) row layout; rotate pairs (2i, 2i+1)."""
        T, _, hd = x.shape
        i = np.arange(hd // 2, dtype=np.float64)
        freq = self.theta ** (-2.0 * i / hd)
        ang = np.arange(T, dtype=np.float64)[:, None] * freq[None, :]  # [T, hd/2]
        cos = np.cos(ang)[:, None, :]
        sin = np.sin(ang)[:, None, :]
        x0 = x[..., 0::2]
        x1 = x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def block(self, l, x):
        """Block `l` applied to the residual stream x: [T, d] -> [T, d]."""
        w = self.w
        T = x.shape[0]
        hd, H, KV = self.head_dim, self.n_head, self.n_kv
        group = H // KV
        mask = np.triu(np.full((T, T), -np.inf), k=1)
        p = f"blk.{l}."
        h = self.rmsnorm(x, w[p + "attn_norm.weight"])
        q = (h @ w[p + "attn_q.weight"].T).reshape(T, H, hd)
        k = (h @ w[p + "attn_k.weight"].T).reshape(T, KV, hd)
        v = (h @ w[p + "attn_v.weight"].T).reshape(T, KV, hd)
        q = self.rope_interleaved(q)
        k = self.rope_interleaved(k)
        att = np.empty((T, H, hd))
        for hh in range(H):
            kv = hh // group
            s = (q[:, hh, :] @ k[:, kv, :].T) / np.sqrt(hd) + mask
            s = s - s.max(axis=-1, keepdims=True)
            pr = np.exp(s)
            pr /= pr.sum(axis=-1, keepdims=True)
            att[:, hh, :] = pr @ v[:, kv, :]
        x = x + att.reshape(T, H * hd) @ w[p + "attn_output.weight"].T
        h = self.rmsnorm(x, w[p + "ffn_norm.weight"])
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        a = g / (1.0 + np.exp(-g)) * u
        return x + a @ w[p + "ffn_down.weight"].T

    def head(self, x):
        """Final norm and tied output projection: [T, d] -> logits [T, vocab]."""
        x = self.rmsnorm(x, self.w["output_norm.weight"])
        return x @ self.embd.T

    def logits(self, ids, skip=(), last_only=False):
        skip = set(skip)
        x = self.embd[np.asarray(ids)]  # [T, d]
        for l in range(self.n_layer):
            if l not in skip:
                x = self.block(l, x)
        if last_only:
            x = x[-1:]
        return self.head(x)  # [T, vocab] (or [1, vocab] with last_only)


def log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True))
    return z - lse, lse[..., 0]


# ---------------------------------------------------------------------- tokenizer


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


GPT2_PAT = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
DIGIT_PAT = regex.compile(r"\p{N}")  # HF Digits uses char::is_numeric


class BpeTokenizer:
    CONTROL = 3

    def __init__(self, tokens, token_type, merges):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {}
        for i, m in enumerate(merges):
            a, b = m.split(" ")
            self.ranks[(a, b)] = i
        self.specials = sorted((t for t, ty in zip(tokens, token_type) if ty == self.CONTROL),
                               key=len, reverse=True)
        self.byte_map = bytes_to_unicode()
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            best, best_rank = None, None
            for j in range(len(parts) - 1):
                r = self.ranks.get((parts[j], parts[j + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = j, r
            if best is None:
                break
            a, b = parts[best], parts[best + 1]
            # merge all occurrences of this pair, left to right
            out, j = [], 0
            while j < len(parts):
                if j < len(parts) - 1 and parts[j] == a and parts[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(parts[j])
                    j += 1
            parts = out
        ids = [self.vocab[p] for p in parts]
        self.cache[word] = ids
        return ids

    def split_specials(self, text):
        out, i, start = [], 0, 0
        while i < len(text):
            for s in self.specials:
                if text.startswith(s, i):
                    if start < i:
                        out.append((False, text[start:i]))
                    out.append((True, s))
                    i += len(s)
                    start = i
                    break
            else:
                i += 1
        if start < len(text):
            out.append((False, text[start:]))
        return out

    @staticmethod
    def split_digits(text):
        out, last = [], 0
        for m in DIGIT_PAT.finditer(text):
            if m.start() > last:
                out.append(text[last:m.start()])
            out.append(m.group())
            last = m.end()
        if last < len(text):
            out.append(text[last:])
        return out

    def encode(self, text):
        ids = []
        for special, seg in self.split_specials(text):
            if special:
                ids.append(self.vocab[seg])
                continue
            for piece in self.split_digits(seg):
                for word in GPT2_PAT.findall(piece):
                    mapped = "".join(self.byte_map[b] for b in word.encode("utf-8"))
                    ids.extend(self.bpe(mapped))
        return ids

    def decode(self, ids, tokens):
        inv = {v: k for k, v in self.byte_map.items()}
        bs = bytearray()
        for i in ids:
            t = tokens[i]
            if t in self.specials:
                bs.extend(t.encode("utf-8"))
            else:
                bs.extend(inv[c] for c in t)
        return bs.decode("utf-8", errors="replace")


def hf_tokenizer(tokens, token_type, merges):
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken
    except ImportError:
        return None
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, token_type) if ty == 3])
    return tok


# -------------------------------------------------------------------------- main



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--out", default=REF_OUT)
    ap.add_argument("--greedy-out", default=GREEDY_OUT)
    args = ap.parse_args()

    sha = file_sha256(args.gguf)

    model = Model(args.gguf)
    print(f"gguf sha256 {sha}", file=sys.stderr)
    print(f"layers={model.n_layer} d={model.d} ffn={model.ffn} heads={model.n_head}/"
          f"{model.n_kv} hd={model.head_dim} vocab={model.vocab} meta={model.meta}",
          file=sys.stderr)

    tok = BpeTokenizer(model.tokens, model.token_type, model.merges)
    hf = hf_tokenizer(model.tokens, model.token_type, model.merges)
    prompt_ids = []
    for p in PROMPTS:
        ids = tok.encode(p)
        assert tok.decode(ids, model.tokens) == p, p
        if hf is not None:
            hf_ids = hf.encode(p, add_special_tokens=False).ids
            agree = hf_ids == ids
            print(f"tokenizer cross-check {'AGREE' if agree else 'DISAGREE'} "
                  f"({len(ids)} tokens): {p!r}", file=sys.stderr)
            assert agree, (p, ids, hf_ids)
        prompt_ids.append(ids)

    probe = np.sort(np.random.default_rng(0).choice(model.vocab, size=N_PROBE, replace=False))
    probe_ids = [int(i) for i in probe]

    cases = []
    for p, ids in zip(PROMPTS, prompt_ids):
        for skip in SKIPS:
            z = model.logits(ids, skip)
            lp, lse = log_softmax(z)
            positions, nll = [], []
            for t in range(len(ids)):
                row = lp[t]
                top = np.argsort(-row, kind="stable")[:N_TOP]
                nxt = None
                if t + 1 < len(ids):
                    nxt = float(row[ids[t + 1]])
                    nll.append(-nxt)
                positions.append({
                    "lse": r7(lse[t]),
                    "top_ids": [int(i) for i in top],
                    "top_logprobs": [r7(row[i]) for i in top],
                    "probe_logprobs": [r7(v) for v in row[probe]],
                    "next_logprob": None if nxt is None else r7(nxt),
                })
            nll_mean = float(np.mean(nll))
            cases.append({"prompt": p, "ids": ids, "skip": skip,
                          "positions": positions, "nll_mean": r7(nll_mean)})
            print(f"tokens={len(ids):3d} skip={skip} nll={nll_mean:.5f} "
                  f"ppl={np.exp(nll_mean):.4f}  {p[:40]!r}", file=sys.stderr)

    cmd = (f"python scripts/reference/smollm2_reference.py --gguf {args.gguf}"
           .replace(os.path.expanduser("~"), "~"))
    ref = {
        "generator": "scripts/reference/smollm2_reference.py",
        "command": cmd,
        "gguf_sha256": sha,
        "probe_ids": probe_ids,
        "cases": cases,
    }
    write_json_atomic(args.out, ref, compact=True)

    greedy_cases = []
    for pi in GREEDY_PROMPTS:
        for skip in GREEDY_SKIPS:
            ids = list(prompt_ids[pi])
            seq = list(ids)
            out = []
            for _ in range(GREEDY_STEPS):
                z = model.logits(seq, skip, last_only=True)[-1]
                nxt = int(np.argmax(z))
                out.append(nxt)
                seq.append(nxt)
            greedy_cases.append({"prompt": PROMPTS[pi], "ids": ids, "skip": skip,
                                 "greedy": out})
            print(f"greedy skip={skip} {PROMPTS[pi][:30]!r} -> "
                  f"{tok.decode(out, model.tokens)!r}", file=sys.stderr)
    write_json_atomic(args.greedy_out, {"generator": "scripts/reference/smollm2_reference.py",
                                        "command": cmd, "gguf_sha256": sha,
                                        "cases": greedy_cases})
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes), {args.greedy_out} "
          f"({os.path.getsize(args.greedy_out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
