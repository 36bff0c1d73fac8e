#!/usr/bin/env python3
"""Independent numerical reference for Qwen2.5-Coder-0.5B-Instruct (GGUF, Qwen2
architecture; mixed Q4_K / Q5_0 / Q6_K / Q8_0).

Regenerating the fixture
------------------------
    python3 -m venv /opt/refenv
    /opt/refenv/bin/pip install gguf numpy regex tokenizers
    /opt/refenv/bin/python scripts/reference/qwen2_reference.py \
        --gguf ~/.cache/pudding/models/Qwen2.5-Coder-0.5B-Instruct.gguf

(`pudding fetch qwen2.5-coder-0.5b-instruct` puts the file there.) Run from the repository
root. It writes `crates/pudding-models/tests/fixtures/qwen2_reference.json` and takes a
few minutes and about 5 GB of memory (every weight dequantised to float64).

What it does (independent of the Rust implementation)
-----------------------------------------------------
* Weights: `gguf.GGUFReader` + `gguf.quants.dequantize`, float64.
* Forward pass, as Qwen2 defines it: per block RMSNorm(attn_norm) -> q, k, v with their
  biases -> RoPE -> causal GQA attention (query head h uses KV head h // (14 / 2)) ->
  attn_output (no bias) -> residual; RMSNorm(ffn_norm) -> silu(gate) * up -> ffn_down ->
  residual; output_norm; logits = h @ output.weight.T (untied). A skipped block is the
  identity.
* RoPE: the rotate-half ("NeoX") convention, pairing dimension i with i + head_dim/2,
  applied to the GGUF rows as they are: llama.cpp's converter permutes q/k rows only for
  the llama architecture, so a Qwen2 GGUF keeps the Hugging Face layout. (pudding's loader
  must therefore *not* undo a permutation here; SmolLM2's reference checks the opposite.)
* Tokenizer: pure-Python byte-level BPE from `tokenizer.ggml.tokens` / `merges`, with
  Qwen2's pre-tokenizer split pattern (single digits, `\\p{N}`, unlike Llama 3's
  `\\p{N}{1,3}`); tokens of type CONTROL (3) and USER_DEFINED (4) (e.g. `<|im_start|>`,
  `<tool_call>`) are matched as whole strings first; the text is NFC-composed first, as
  Qwen2's tokenizer.json does (one prompt has decomposed accents). No BOS is added
  (`tokenizer.ggml.add_bos_token` is false). Cross-checked against a `tokenizers` object
  built from the same vocabulary, merges and pattern when that package is importable.
* Greedy generation: GREEDY_STEPS argmax tokens, recomputing the whole sequence each
  step (no cache), dense and skipping blocks 3, 7, 19.

The script prints the smallest top-1/top-2 log-probability gap over every compared
position and greedy step, so the Rust test's tolerance can be checked against it.
"""

import argparse
import os
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import regex  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

from fixture_io import file_sha256, r7, write_json_atomic  # noqa: E402
from smollm2_reference import BpeTokenizer, field, log_softmax  # noqa: E402

DEFAULT_GGUF = os.path.expanduser("~/.cache/pudding/models/Qwen2.5-Coder-0.5B-Instruct.gguf")
OUT = "crates/pudding-models/tests/fixtures/qwen2_reference.json"

PROMPTS = [
    "def fibonacci(n):\n    if n < 2:\n        return n",
    "The year 2024 had 366 days; 12345 + 678 = 13023.",
    "<|im_start|>user\nWrite a function that adds two numbers.<|im_end|>\n"
    "<|im_start|>assistant\n",
    "Call it: <tool_call>{\"name\": \"f\"}</tool_call>   done\n\n\tnext",
    "Héllo wörld — naïve café 😀 日本語",
    "Cafe\u0301 and nai\u0308ve: decomposed accents",
]
SKIPS = [[], [3, 7, 19], [1, 5, 9, 13, 17, 21]]
GREEDY_PROMPTS = [0, 1, 2]
GREEDY_SKIPS = [[], [3, 7, 19]]
GREEDY_STEPS = 16
N_TOP = 8
N_PROBE = 64

QWEN2_SPLIT = regex.compile(
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


class Qwen2Tokenizer(BpeTokenizer):
    """The GPT-2 byte-level BPE of `smollm2_reference`, with Qwen2's split pattern, no
    separate digit pass, and user-defined tokens matched like control tokens."""

    ADDED = (3, 4)

    def __init__(self, tokens, token_type, merges):
        super().__init__(tokens, token_type, merges)
        self.specials = sorted((t for t, ty in zip(tokens, token_type) if ty in self.ADDED),
                               key=len, reverse=True)

    def encode(self, text):
        ids = []
        text = unicodedata.normalize("NFC", text)  # Qwen2's tokenizer.json normalizer
        for special, seg in self.split_specials(text):
            if special:
                ids.append(self.vocab[seg])
                continue
            for word in QWEN2_SPLIT.findall(seg):
                mapped = "".join(self.byte_map[b] for b in word.encode("utf-8"))
                ids.extend(self.bpe(mapped))
        return ids


def hf_qwen2_tokenizer(tokens, token_type, merges):
    try:
        from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers
    except ImportError:
        return None
    from tokenizers import normalizers
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                               merges=[tuple(m.split(" ")) for m in merges]))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT.pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.add_special_tokens([AddedToken(t, special=ty == 3, normalized=False)
                            for t, ty in zip(tokens, token_type) if ty in (3, 4)])
    return tok


class Qwen2:
    def __init__(self, path):
        r = GGUFReader(path)
        arch = field(r, "general.architecture")
        assert arch == "qwen2", arch
        self.n_layer = int(field(r, f"{arch}.block_count"))
        self.d = int(field(r, f"{arch}.embedding_length"))
        self.n_head = int(field(r, f"{arch}.attention.head_count"))
        self.n_kv = int(field(r, f"{arch}.attention.head_count_kv"))
        self.head_dim = self.d // self.n_head
        self.theta = float(field(r, f"{arch}.rope.freq_base"))
        self.eps = float(field(r, f"{arch}.attention.layer_norm_rms_epsilon"))
        self.w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type)
            assert tuple(a.shape) == tuple(int(s) for s in reversed(list(t.shape))), t.name
            self.w[t.name] = np.asarray(a, dtype=np.float64)
        self.embd = self.w["token_embd.weight"]
        self.out = self.w["output.weight"]  # untied
        self.vocab = self.embd.shape[0]
        assert self.out.shape == self.embd.shape
        assert "blk.0.attn_q.bias" in self.w and "blk.0.attn_output.bias" not in self.w
        self.tokens = list(field(r, "tokenizer.ggml.tokens"))
        self.token_type = [int(x) for x in field(r, "tokenizer.ggml.token_type")]
        self.merges = list(field(r, "tokenizer.ggml.merges"))
        assert field(r, "tokenizer.ggml.pre") == "qwen2"
        assert not field(r, "tokenizer.ggml.add_bos_token")

    def rmsnorm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope_neox(self, x):
        """x: [T, H, hd]; rotate (i, i + hd/2) pairs by p * theta^(-2i/hd)."""
        T, _, hd = x.shape
        half = hd // 2
        freq = self.theta ** (-2.0 * np.arange(half, dtype=np.float64) / hd)
        ang = np.arange(T, dtype=np.float64)[:, None] * freq[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., :half], x[..., half:]
        return np.concatenate([x0 * cos - x1 * sin, x1 * cos + x0 * sin], axis=-1)

    def block(self, l, x):
        w, p = self.w, f"blk.{l}."
        T = x.shape[0]
        hd, H, KV = self.head_dim, self.n_head, self.n_kv
        h = self.rmsnorm(x, w[p + "attn_norm.weight"])
        q = (h @ w[p + "attn_q.weight"].T + w[p + "attn_q.bias"]).reshape(T, H, hd)
        k = (h @ w[p + "attn_k.weight"].T + w[p + "attn_k.bias"]).reshape(T, KV, hd)
        v = (h @ w[p + "attn_v.weight"].T + w[p + "attn_v.bias"]).reshape(T, KV, hd)
        q, k = self.rope_neox(q), self.rope_neox(k)
        mask = np.triu(np.full((T, T), -np.inf), k=1)
        att = np.empty((T, H, hd))
        for hh in range(H):
            kv = hh // (H // KV)
            s = q[:, hh, :] @ k[:, kv, :].T / np.sqrt(hd) + mask
            pr = np.exp(s - s.max(axis=-1, keepdims=True))
            att[:, hh, :] = (pr / pr.sum(axis=-1, keepdims=True)) @ v[:, kv, :]
        x = x + att.reshape(T, H * hd) @ w[p + "attn_output.weight"].T
        h = self.rmsnorm(x, w[p + "ffn_norm.weight"])
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        return x + (g / (1.0 + np.exp(-g)) * u) @ w[p + "ffn_down.weight"].T

    def logits(self, ids, skip=(), last_only=False):
        x = self.embd[np.asarray(ids)]
        for l in range(self.n_layer):
            if l not in skip:
                x = self.block(l, x)
        if last_only:
            x = x[-1:]
        return self.rmsnorm(x, self.w["output_norm.weight"]) @ self.out.T



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()

    sha = file_sha256(args.gguf)
    model = Qwen2(args.gguf)
    tok = Qwen2Tokenizer(model.tokens, model.token_type, model.merges)
    hf = hf_qwen2_tokenizer(model.tokens, model.token_type, model.merges)
    prompt_ids = []
    for p in PROMPTS:
        ids = tok.encode(p)
        if hf is not None:
            hf_ids = hf.encode(p, add_special_tokens=False).ids
            print(f"tokenizer cross-check {'AGREE' if hf_ids == ids else 'DISAGREE'} "
                  f"({len(ids)} tokens): {p!r}", file=sys.stderr)
            assert hf_ids == ids, (p, ids, hf_ids)
        prompt_ids.append(ids)

    probe = np.sort(np.random.default_rng(0).choice(model.vocab, size=N_PROBE, replace=False))
    min_gap = float("inf")
    cases = []
    for p, ids in zip(PROMPTS, prompt_ids):
        for skip in SKIPS:
            lp, lse = log_softmax(model.logits(ids, skip))
            positions, nll = [], []
            for t in range(len(ids)):
                row = lp[t]
                top = np.argsort(-row, kind="stable")[:N_TOP]
                min_gap = min(min_gap, row[top[0]] - row[top[1]])
                nxt = float(row[ids[t + 1]]) if t + 1 < len(ids) else None
                if nxt is not None:
                    nll.append(-nxt)
                positions.append({
                    "lse": r7(lse[t]),
                    "top_ids": [int(i) for i in top],
                    "top_logprobs": [r7(row[i]) for i in top],
                    "probe_logprobs": [r7(v) for v in row[probe]],
                    "next_logprob": None if nxt is None else r7(nxt),
                })
            cases.append({"prompt": p, "decoded": unicodedata.normalize("NFC", p), "ids": ids,
                          "skip": skip, "positions": positions,
                          "nll_mean": r7(np.mean(nll))})
            print(f"tokens={len(ids):3d} skip={skip} ppl={np.exp(np.mean(nll)):.4f} "
                  f"{p[:40]!r}", file=sys.stderr)

    greedy = []
    for pi in GREEDY_PROMPTS:
        for skip in GREEDY_SKIPS:
            seq, out, case_gap = list(prompt_ids[pi]), [], float("inf")
            for _ in range(GREEDY_STEPS):
                z = model.logits(seq, skip, last_only=True)[-1]
                top2 = np.sort(z)[-2:]
                case_gap = min(case_gap, top2[1] - top2[0])
                nxt = int(np.argmax(z))
                out.append(nxt)
                seq.append(nxt)
            greedy.append({"prompt": PROMPTS[pi], "ids": prompt_ids[pi], "skip": skip,
                           "greedy": out, "min_logit_gap": r7(case_gap)})
            min_gap = min(min_gap, case_gap)
            print(f"greedy skip={skip} -> {tok.decode(out, model.tokens)!r}", file=sys.stderr)
    print(f"smallest top-1/top-2 gap: {min_gap:.3g}", file=sys.stderr)

    cmd = (f"python scripts/reference/qwen2_reference.py --gguf {args.gguf}"
           .replace(os.path.expanduser("~"), "~"))
    ref = {"generator": "scripts/reference/qwen2_reference.py", "command": cmd,
           "gguf_sha256": sha, "probe_ids": [int(i) for i in probe], "cases": cases,
           "greedy": greedy}
    write_json_atomic(args.out, ref, compact=True)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
