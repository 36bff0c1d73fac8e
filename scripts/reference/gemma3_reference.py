#!/usr/bin/env python3
"""Independent numerical reference for Gemma 3 270M (GGUF, gemma3 architecture; Q4_K_M
file: Q8_0 token_embd, Q5_0 / Q4_K / Q6_K / Q8_0 block matrices, F32 norms).

Regenerating the fixture
------------------------
    python3 -m venv /opt/refenv
    /opt/refenv/bin/pip install gguf numpy regex tokenizers
    /opt/refenv/bin/python scripts/reference/gemma3_reference.py \
        --gguf ~/.cache/pudding/models/gemma-3-270m-q4_k_m.gguf

Run from the repository root. It writes `crates/pudding-models/tests/fixtures/
gemma3_reference.json` and takes about 2 minutes on one (busy) core and about 3.5 GB of
memory (every weight dequantised to float64; the 262144 x 640 embedding alone is 1.3 GB;
the [T, 262144] logits are computed HEAD_CHUNK rows at a time).

What it does (independent of the Rust implementation)
-----------------------------------------------------
* Weights: `gguf.GGUFReader` + `gguf.quants.dequantize`, float64. The output head is
  tied (there is no output.weight): logits = h @ token_embd.T.
* Forward pass, as Hugging Face's Gemma3 text model defines it and llama.cpp runs it:
  x = token_embd[ids] * sqrt(640). Per block: RMSNorm(attn_norm) -> q [T, 4, 256],
  k, v [T, 1, 256] (no biases) -> per-head RMSNorm of q and k over the head dimension
  (attn_q_norm, attn_k_norm) -> RoPE -> attention with scale 256^-0.5
  (query_pre_attn_scalar = head_dim), all four query heads sharing the single KV head ->
  attn_output -> x += RMSNorm(., post_attention_norm); RMSNorm(ffn_norm) ->
  gelu_tanh(gate) * up -> ffn_down -> x += RMSNorm(., post_ffw_norm). Then output_norm and
  the tied head. No logit soft-capping. A skipped block is the identity.
* RMSNorm(x, w) = x / sqrt(mean(x^2) + 1e-6) * w with the GGUF weight *as stored*:
  llama.cpp's converter (convert_hf_to_gguf.py, Gemma3Model.modify_tensors) adds
  norm_shift = 1 to every tensor whose name ends in "norm.weight", folding HF's
  x_normed * (1 + w) into the file. Observed: the stored norm weights are far from 0
  (blk.0 means: attn_norm 13.5, ffn_norm 5.8, post_attention_norm 0.64, post_ffw_norm
  1.8, attn_q_norm 1.97, attn_k_norm 1.97; output_norm 26.3), which by itself does not
  tell the two conventions apart, so the script also checks it numerically ("norm
  convention check"): on the English prompt the dense perplexity with the weights as
  stored is 9.16, and adding a further 1 (as if the file held HF's raw w) gives 1.8e7.
* Layer types: block l is GLOBAL (full causal attention, RoPE base gemma3.rope.freq_base
  = 1e6) iff (l + 1) % 6 == 0, i.e. blocks 5, 11, 17; every other block is SLIDING:
  RoPE base 10000 and, besides the causal mask, key j is masked for query i when
  i - j >= 512 (gemma3.attention.sliding_window; llama.cpp's LLAMA_SWA_TYPE_STANDARD).
  No RoPE scaling.
* RoPE: the rotate-half ("NeoX") convention, pairing dimension i with i + 128, applied to
  the GGUF rows as they are (llama.cpp permutes q/k rows only for the llama
  architecture; gemma3 runs with LLAMA_ROPE_TYPE_NEOX).
* Tokenizer: pure-Python port of llama.cpp's SentencePiece ("SPM", tokenizer.ggml.model
  = "llama") tokenizer as applied to this GGUF: tokens of type CONTROL (3) and
  USER_DEFINED (4) (e.g. <start_of_turn>, "\\n", "\\n\\n", runs of 2 to 31 spaces, of tabs,
  "<b>") are matched as whole raw strings first, longest first; in every other fragment
  " " becomes "▁" (no space prefix: add_space_prefix is false), the fragment is split
  into characters, and the adjacent pair whose concatenation is a vocabulary token
  (any type, as llama.cpp's try_add_bigram looks it up) with the highest
  tokenizer.ggml.scores value is merged, ties to the leftmost pair, until no pair is a
  token (a heap with stale-entry checks, like llm_tokenizer_spm). Each final symbol
  that is a token becomes its id; otherwise its UTF-8 bytes become <0xXX> byte tokens.
  BOS (2) is prepended (add_bos_token) unless the text already starts with "<bos>"
  (no prompt here does; llama.cpp itself would add a second BOS and warn).
  Cross-checked against a `tokenizers` BPE (byte_fallback) built from the same
  vocabulary, with merges derived the way HF's SentencePieceExtractor does (every split
  of a piece into two pieces; ordered by the piece's score, descending; stable) when
  that package is importable.
* Long prompt: LONG_PROMPT (several hundred tokens, built deterministically below) is
  longer than the 512-token window, so the sliding mask changes its later positions;
  for prompts over 64 tokens only the last 48 positions are recorded
  (`positions_from` is the first recorded index), but `nll_mean` is over all positions.
  The script prints the largest change of the last position's log-softmax when the
  sliding-window mask is dropped.
* Greedy generation: GREEDY_STEPS argmax tokens, recomputing the whole sequence each
  step (no cache), dense and skipping blocks 3, 7, 11.

The script prints the smallest top-1/top-2 log-probability gap over every recorded
position and greedy step, so the Rust test's tolerance can be checked against it.

Values measured when the committed fixture was generated: the SPM ids AGREE with the
`tokenizers` BPE on every prompt (token counts incl. BOS: 16, 16, 34, 9, 33 of which 17
byte tokens, 17, 651); dense perplexity 9.156 on the English prompt, 2.681 on the long
prompt (677.6 skipping blocks 3, 7, 11); dropping the sliding-window mask changes the
long prompt's last-position log-softmax by up to 16.6 (same argmax); dense greedy from the
English prompt: "\\n\\nThe capital of the United States is Washington, D.". Smallest
top-1/top-2 gap 0.0062 (the non-ASCII prompt, skip [3, 7, 11], position 18; 4 of 519
recorded positions are under 0.01, all with skip [3, 7, 11]); greedy margins >= 0.10.
The file appears to be the base (pre-trained) model (general.name "Gemma 3 270m", no
"-it"): it predicts the chat control tokens poorly (log p(<end_of_turn>) after "7?" is
-33.8), and its chat greedy output is not an answer.
"""

import argparse
import heapq
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

from fixture_io import file_sha256, r7, write_json_atomic  # noqa: E402
from smollm2_reference import field, log_softmax  # noqa: E402

DEFAULT_GGUF = os.path.expanduser("~/.cache/pudding/models/gemma-3-270m-q4_k_m.gguf")
OUT = "crates/pudding-models/tests/fixtures/gemma3_reference.json"


def long_prompt(n=26):
    """Deterministic paragraph of numbered, varied sentences (several hundred tokens)."""
    who = ["The old lighthouse keeper", "A curious student", "The committee", "My neighbour",
           "The orchestra", "A tired engineer", "The river", "Our small village"]
    verb = ["counted", "painted", "measured", "forgot", "rebuilt", "described", "sold",
            "carried"]
    what = ["seventeen wooden boats", "the northern bridge", "every clock in town",
            "a map of the coast", "three baskets of apples", "the broken telescope",
            "a letter from Lisbon", "the winter festival"]
    when = ["before sunrise", "on a rainy Tuesday", "in 1887", "after the storm",
            "during the long summer", "at exactly noon", "last autumn", "for many years"]
    out = []
    for i in range(n):
        out.append(f"{i + 1}. {who[i % 8]} {verb[(3 * i + 1) % 8]} {what[(5 * i + 2) % 8]} "
                   f"{when[(7 * i + 3) % 8]}, and nobody noticed until day {11 * i + 4}.")
    return " ".join(out)


LONG_PROMPT = long_prompt()
PROMPTS = [
    "The capital of France is Paris, and the capital of Germany is Berlin.",
    "def f(x):\n    return x * 2\n\n\tdone",
    "The year 2024 had 366 days; 12345 + 678 = 13023.",
    "a  b   c    end  ",
    "Héllo wörld — naïve café 😀 日本語 ᚠᛇᚻ 𝔘𝔫𝔦",
    "<start_of_turn>user\nWhat is 6 times 7?<end_of_turn>\n<start_of_turn>model\n",
    LONG_PROMPT,
]
SKIPS = [[], [3, 7, 11], [1, 4, 9, 13, 16]]
GREEDY_PROMPTS = [0, 2, 5]
GREEDY_SKIPS = [[], [3, 7, 11]]
GREEDY_STEPS = 12
N_TOP = 8
N_PROBE = 64
FULL_RECORD_MAX = 64  # prompts longer than this record only their last TAIL positions
TAIL = 48
HEAD_CHUNK = 64  # rows of [T, vocab] logits computed at a time

CONTROL, USER_DEFINED, BYTE = 3, 4, 6


class SpmTokenizer:
    """llama.cpp's llm_tokenizer_spm, with its special-token partition and BOS handling."""

    def __init__(self, tokens, scores, token_type, bos, unk, add_bos):
        self.tokens = tokens
        self.scores = [float(s) for s in scores]
        self.token_type = token_type
        self.vocab = {t: i for i, t in enumerate(tokens)}  # every type, like token_to_id
        assert len(self.vocab) == len(tokens)  # no duplicate pieces
        self.specials = sorted((t for t, ty in zip(tokens, token_type)
                                if ty in (CONTROL, USER_DEFINED)), key=len, reverse=True)
        self.bos, self.unk, self.add_bos = bos, unk, add_bos
        self.byte_ids = [self.vocab.get(f"<0x{b:02X}>", unk) for b in range(256)]
        for b, i in enumerate(self.byte_ids):
            assert i != unk and token_type[i] == BYTE, b

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

    def spm(self, text):
        """One raw fragment (spaces already escaped) -> ids."""
        sym = list(text)  # symbol texts; "" once merged into its left neighbour
        nxt = list(range(1, len(sym))) + [-1]
        prv = list(range(-1, len(sym) - 1))
        heap = []

        def try_add(left, right):
            if left < 0 or right < 0:
                return
            s = sym[left] + sym[right]
            tid = self.vocab.get(s)
            if tid is None:
                return
            # max score first, then leftmost (llama.cpp's comparator)
            heapq.heappush(heap, (-self.scores[tid], left, right, len(s)))

        for i in range(1, len(sym)):
            try_add(i - 1, i)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            if not sym[left] or not sym[right] or len(sym[left]) + len(sym[right]) != size:
                continue  # stale: one side already merged
            sym[left] += sym[right]
            sym[right] = ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prv[nxt[right]] = left
            try_add(prv[left], left)
            try_add(left, nxt[left])
        ids, i = [], 0
        while i != -1 and sym:
            tid = self.vocab.get(sym[i])
            if tid is not None:
                ids.append(tid)
            else:  # never merged, so a single character: byte fallback
                ids.extend(self.byte_ids[b] for b in sym[i].encode("utf-8"))
            i = nxt[i]
        return ids

    def encode(self, text):
        ids = []
        if self.add_bos and not text.startswith(self.tokens[self.bos]):
            ids.append(self.bos)
        for special, seg in self.split_specials(text):
            if special:
                ids.append(self.vocab[seg])
            else:
                ids.extend(self.spm(seg.replace(" ", "\u2581")))
        return ids

    def decode(self, ids):
        bs = bytearray()
        for pos, i in enumerate(ids):
            t, ty = self.tokens[i], self.token_type[i]
            if i == self.bos and pos == 0:
                continue
            if ty == BYTE:
                bs.append(int(t[3:5], 16))
            else:
                bs.extend(t.replace("\u2581", " ").encode("utf-8"))
        return bs.decode("utf-8", errors="replace")


def hf_gemma_tokenizer(tokens, scores, token_type, space_prefix=False):
    """A `tokenizers` BPE equivalent of the SPM model (HF's GemmaConverter recipe; with
    `space_prefix`, HF's Llama converter's `Prepend("▁")` before the space escape)."""
    try:
        from tokenizers import AddedToken, Tokenizer, models, normalizers
    except ImportError:
        return None
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []  # (score, merged id, left id, right id) -> stable HF order
    for piece, pid in vocab.items():
        for j in range(1, len(piece)):
            l, r = vocab.get(piece[:j]), vocab.get(piece[j:])
            if l is not None and r is not None:
                merges.append((-float(scores[pid]), pid, l, r))
    merges.sort()
    tok = Tokenizer(models.BPE(vocab=vocab,
                               merges=[(tokens[l], tokens[r]) for _, _, l, r in merges],
                               unk_token="<unk>", byte_fallback=True))
    escape = normalizers.Replace(" ", "\u2581")
    tok.normalizer = (normalizers.Sequence([normalizers.Prepend("\u2581"), escape])
                      if space_prefix else escape)
    tok.add_special_tokens([AddedToken(t, special=ty == CONTROL, normalized=False)
                            for t, ty in zip(tokens, token_type)
                            if ty in (CONTROL, USER_DEFINED)])
    return tok


class Gemma3:
    def __init__(self, path):
        r = GGUFReader(path)
        arch = field(r, "general.architecture")
        assert arch == "gemma3", arch
        self.n_layer = int(field(r, f"{arch}.block_count"))
        self.d = int(field(r, f"{arch}.embedding_length"))
        self.ffn = int(field(r, f"{arch}.feed_forward_length"))
        self.n_head = int(field(r, f"{arch}.attention.head_count"))
        self.n_kv = int(field(r, f"{arch}.attention.head_count_kv"))
        self.head_dim = int(field(r, f"{arch}.attention.key_length"))
        assert int(field(r, f"{arch}.attention.value_length")) == self.head_dim
        self.theta_global = float(field(r, f"{arch}.rope.freq_base"))
        self.theta_local = 10000.0  # Gemma 3's rope_local_base_freq (llama.cpp's default)
        self.window = int(field(r, f"{arch}.attention.sliding_window"))
        self.eps = float(field(r, f"{arch}.attention.layer_norm_rms_epsilon"))
        assert field(r, f"{arch}.rope.scaling.type") is None
        assert field(r, f"{arch}.final_logit_softcapping") is None
        self.w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type)
            assert tuple(a.shape) == tuple(int(s) for s in reversed(list(t.shape))), t.name
            self.w[t.name] = np.asarray(a, dtype=np.float64)
            del a
        assert "output.weight" not in self.w  # tied head
        self.embd = self.w["token_embd.weight"]
        self.vocab = self.embd.shape[0]
        hd, d = self.head_dim, self.d
        b0 = lambda n: self.w[f"blk.0.{n}.weight"].shape  # noqa: E731
        assert self.embd.shape == (self.vocab, d)
        assert b0("attn_q") == (self.n_head * hd, d) and b0("attn_k") == (self.n_kv * hd, d)
        assert b0("attn_v") == (self.n_kv * hd, d) and b0("attn_output") == (d, self.n_head * hd)
        assert b0("attn_q_norm") == (hd,) and b0("attn_k_norm") == (hd,)
        assert b0("ffn_gate") == (self.ffn, d) and b0("ffn_down") == (d, self.ffn)
        assert "blk.0.attn_q.bias" not in self.w
        self.tokens = list(field(r, "tokenizer.ggml.tokens"))
        self.scores = list(field(r, "tokenizer.ggml.scores"))
        self.token_type = [int(x) for x in field(r, "tokenizer.ggml.token_type")]
        assert field(r, "tokenizer.ggml.model") == "llama"
        assert not field(r, "tokenizer.ggml.add_space_prefix")
        self.add_bos = bool(field(r, "tokenizer.ggml.add_bos_token"))
        self.bos = int(field(r, "tokenizer.ggml.bos_token_id"))
        self.unk = int(field(r, "tokenizer.ggml.unknown_token_id"))
        self.norm_offset = 0.0  # only the norm-convention check changes this

    def is_global(self, l):
        return (l + 1) % 6 == 0

    def rmsnorm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * (
            weight + self.norm_offset)

    @staticmethod
    def rope_neox(x, theta):
        """x: [T, H, hd]; rotate (i, i + hd/2) pairs by p * theta^(-2i/hd)."""
        T, _, hd = x.shape
        half = hd // 2
        freq = theta ** (-2.0 * np.arange(half, dtype=np.float64) / hd)
        ang = np.arange(T, dtype=np.float64)[:, None] * freq[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., :half], x[..., half:]
        return np.concatenate([x0 * cos - x1 * sin, x1 * cos + x0 * sin], axis=-1)

    def block(self, l, x, sliding_mask=True):
        w, p = self.w, f"blk.{l}."
        T = x.shape[0]
        hd, H, KV = self.head_dim, self.n_head, self.n_kv
        h = self.rmsnorm(x, w[p + "attn_norm.weight"])
        q = (h @ w[p + "attn_q.weight"].T).reshape(T, H, hd)
        k = (h @ w[p + "attn_k.weight"].T).reshape(T, KV, hd)
        v = (h @ w[p + "attn_v.weight"].T).reshape(T, KV, hd)
        q = self.rmsnorm(q, w[p + "attn_q_norm.weight"])
        k = self.rmsnorm(k, w[p + "attn_k_norm.weight"])
        glob = self.is_global(l)
        theta = self.theta_global if glob else self.theta_local
        q, k = self.rope_neox(q, theta), self.rope_neox(k, theta)
        i, j = np.arange(T)[:, None], np.arange(T)[None, :]
        masked = j > i
        if not glob and sliding_mask:
            masked |= (i - j) >= self.window
        mask = np.where(masked, -np.inf, 0.0)
        att = np.empty((T, H, hd))
        for hh in range(H):
            kv = hh // (H // KV)
            s = q[:, hh, :] @ k[:, kv, :].T * hd ** -0.5 + mask
            pr = np.exp(s - s.max(axis=-1, keepdims=True))
            att[:, hh, :] = (pr / pr.sum(axis=-1, keepdims=True)) @ v[:, kv, :]
        o = att.reshape(T, H * hd) @ w[p + "attn_output.weight"].T
        x = x + self.rmsnorm(o, w[p + "post_attention_norm.weight"])
        h = self.rmsnorm(x, w[p + "ffn_norm.weight"])
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        gelu = 0.5 * g * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (g + 0.044715 * g ** 3)))
        m = (gelu * u) @ w[p + "ffn_down.weight"].T
        return x + self.rmsnorm(m, w[p + "post_ffw_norm.weight"])

    def hidden(self, ids, skip=(), sliding_mask=True):
        """Final-normed hidden states [T, d] (the input of the tied head)."""
        x = self.embd[np.asarray(ids)] * np.sqrt(float(self.d))
        for l in range(self.n_layer):
            if l not in skip:
                x = self.block(l, x, sliding_mask)
        return self.rmsnorm(x, self.w["output_norm.weight"])

    def logits(self, ids, skip=(), last_only=False, sliding_mask=True):
        h = self.hidden(ids, skip, sliding_mask)
        if last_only:
            h = h[-1:]
        return h @ self.embd.T

    def log_probs_chunked(self, ids, skip=()):
        """Yields (t0, lp, lse) over row chunks of the [T, vocab] log-softmax."""
        h = self.hidden(ids, skip)
        for t0 in range(0, len(ids), HEAD_CHUNK):
            lp, lse = log_softmax(h[t0:t0 + HEAD_CHUNK] @ self.embd.T)
            yield t0, lp, lse



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    t_start = time.time()

    sha = file_sha256(args.gguf)
    model = Gemma3(args.gguf)
    print(f"gguf sha256 {sha}; layers={model.n_layer} d={model.d} ffn={model.ffn} "
          f"heads={model.n_head}/{model.n_kv} hd={model.head_dim} vocab={model.vocab} "
          f"eps={model.eps} theta={model.theta_global}/{model.theta_local} "
          f"window={model.window} (loaded in {time.time() - t_start:.0f}s)", file=sys.stderr)
    for name in ("output_norm", "blk.0.attn_norm", "blk.0.ffn_norm", "blk.0.post_attention_norm",
                 "blk.0.post_ffw_norm", "blk.0.attn_q_norm", "blk.0.attn_k_norm",
                 "blk.17.attn_norm", "blk.17.attn_k_norm"):
        wn = model.w[name + ".weight"]
        print(f"norm weight {name}: mean {wn.mean():.4f} min {wn.min():.4f} "
              f"max {wn.max():.4f}", file=sys.stderr)
    all_norm = np.concatenate([v for k, v in model.w.items() if k.endswith("norm.weight")])
    print(f"all norm weights: mean {all_norm.mean():.4f}, fraction < 0.5: "
          f"{np.mean(all_norm < 0.5):.4f}", file=sys.stderr)

    tok = SpmTokenizer(model.tokens, model.scores, model.token_type, model.bos, model.unk,
                       model.add_bos)
    for s in ("<start_of_turn>", "<end_of_turn>"):
        assert model.token_type[tok.vocab[s]] == CONTROL, s
    t0 = time.time()
    hf = hf_gemma_tokenizer(model.tokens, model.scores, model.token_type)
    if hf is not None:
        print(f"built tokenizers BPE in {time.time() - t0:.0f}s", file=sys.stderr)
    prompt_ids = []
    for p in PROMPTS:
        ids = tok.encode(p)
        assert tok.decode(ids) == p, (p, tok.decode(ids))
        n_bytes = sum(model.token_type[i] == BYTE for i in ids)
        if hf is not None:
            hf_ids = hf.encode(p, add_special_tokens=False).ids
            body = ids[1:] if ids[:1] == [model.bos] else ids
            print(f"tokenizer cross-check {'AGREE' if hf_ids == body else 'DISAGREE'} "
                  f"({len(ids)} tokens incl. BOS, {n_bytes} byte tokens): {p[:70]!r}",
                  file=sys.stderr)
            assert hf_ids == body, (p, body, hf_ids)
        else:
            print(f"({len(ids)} tokens incl. BOS, {n_bytes} byte tokens): {p[:70]!r}",
                  file=sys.stderr)
        prompt_ids.append(ids)
    print(f"long prompt: {len(prompt_ids[-1])} tokens", file=sys.stderr)
    assert len(prompt_ids[-1]) > model.window + TAIL

    # Norm convention: stored weights (converter already added 1) vs adding 1 again.
    eng = prompt_ids[0]
    for off in (0.0, 1.0):
        model.norm_offset = off
        lp, _ = log_softmax(model.logits(eng))
        nll = -np.mean([lp[t, eng[t + 1]] for t in range(len(eng) - 1)])
        print(f"norm convention check: weights as stored + {off:g}: "
              f"dense ppl {np.exp(nll):.4g} on prompt 0", file=sys.stderr)
    model.norm_offset = 0.0

    probe = np.sort(np.random.default_rng(0).choice(model.vocab, size=N_PROBE, replace=False))
    min_gap = float("inf")
    cases = []
    for p, ids in zip(PROMPTS, prompt_ids):
        T = len(ids)
        pos_from = T - TAIL if T > FULL_RECORD_MAX else 0
        for skip in SKIPS:
            t1 = time.time()
            positions, nll = [], []
            for c0, lp, lse in model.log_probs_chunked(ids, skip):
                for r in range(lp.shape[0]):
                    t, row = c0 + r, lp[r]
                    nxt = float(row[ids[t + 1]]) if t + 1 < T else None
                    if nxt is not None:
                        nll.append(-nxt)
                    if t < pos_from:
                        continue
                    top = np.argsort(-row, kind="stable")[:N_TOP]
                    min_gap = min(min_gap, row[top[0]] - row[top[1]])
                    positions.append({
                        "lse": r7(lse[r]),
                        "top_ids": [int(i) for i in top],
                        "top_logprobs": [r7(row[i]) for i in top],
                        "probe_logprobs": [r7(v) for v in row[probe]],
                        "next_logprob": None if nxt is None else r7(nxt),
                    })
            cases.append({"prompt": p, "decoded": p, "ids": ids, "skip": skip,
                          "positions_from": pos_from, "positions": positions,
                          "nll_mean": r7(np.mean(nll))})
            print(f"tokens={T:3d} skip={skip} ppl={np.exp(np.mean(nll)):.4f} "
                  f"({time.time() - t1:.0f}s) {p[:40]!r}", file=sys.stderr)

    long_ids = prompt_ids[-1]
    lp_true, _ = log_softmax(model.logits(long_ids, last_only=True))
    lp_full, _ = log_softmax(model.logits(long_ids, last_only=True, sliding_mask=False))
    print(f"long prompt ({len(long_ids)} tokens), last position: max |log-softmax change| "
          f"without the sliding-window mask = {np.max(np.abs(lp_true - lp_full)):.4g} "
          f"(top-1 {int(np.argmax(lp_true))} vs {int(np.argmax(lp_full))})", file=sys.stderr)

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
            print(f"greedy skip={skip} {PROMPTS[pi][:30]!r} -> {tok.decode(out)!r} "
                  f"(gap {case_gap:.3g})", file=sys.stderr)
    print(f"smallest top-1/top-2 gap: {min_gap:.3g}", file=sys.stderr)

    cmd = (f"python scripts/reference/gemma3_reference.py --gguf {args.gguf}"
           .replace(os.path.expanduser("~"), "~"))
    ref = {"generator": "scripts/reference/gemma3_reference.py", "command": cmd,
           "gguf_sha256": sha, "probe_ids": [int(i) for i in probe], "cases": cases,
           "greedy": greedy}
    write_json_atomic(args.out, ref, compact=True)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) in "
          f"{time.time() - t_start:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
