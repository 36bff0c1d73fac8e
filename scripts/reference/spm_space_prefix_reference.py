#!/usr/bin/env python3
"""Reference token ids for a SentencePiece GGUF vocabulary with a space prefix
(`tokenizer.ggml.add_space_prefix`, as Llama 2, Mistral and TinyLlama GGUFs set it).

No such GGUF is among the offline assets, so this runs on the real Gemma 3 vocabulary
(262144 pieces with scores, byte fallback, control and user-defined tokens) with the flag
turned on. The ids follow llama.cpp's `llm_tokenizer_spm` session (the `SpmTokenizer` of
gemma3_reference.py, an independent implementation of it): the text is cut at control and
user-defined tokens, and a raw fragment that starts the text or follows such a token gets
one space in front before spaces become "▁" and pieces are merged by score. The same ids
come from a Hugging Face `tokenizers` BPE built as HF's Llama converter does (normalizer
`Prepend("▁")` then `Replace(" ", "▁")`), which the script cross-checks. Decoding drops
that one leading space (HF's `Strip` decoder), so decode(encode(text)) == text.

Regenerate (seconds; the model weights are not read):

    /opt/refenv/bin/python scripts/reference/spm_space_prefix_reference.py \
        [--gguf ~/.cache/pudding/models/gemma-3-270m-q4_k_m.gguf]

It writes `crates/pudding-models/tests/fixtures/spm_space_prefix.json`.
"""

import argparse
import os
import sys

from gguf import GGUFReader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_json_atomic  # noqa: E402
from gemma3_reference import (  # noqa: E402
    BYTE, DEFAULT_GGUF, SpmTokenizer, field, hf_gemma_tokenizer)

OUT = "crates/pudding-models/tests/fixtures/spm_space_prefix.json"

PROMPTS = [
    "Hello world",
    " leading space",
    "The capital of France is Paris.",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "a<end_of_turn>b and c",
    "multiple   spaces,\ttabs and\nnewlines",
    "naïve café, 東京, emoji 🦀",
    "Question: What is 12 + 30?\nAnswer: 42",
    "rare: \U00010348 \ue000",
]


class PrefixSpm(SpmTokenizer):
    """llama.cpp's SPM session with `add_space_prefix` (no BOS: pudding's `encode`)."""

    def encode(self, text):
        ids, prev_special = [], True  # llama.cpp: "prefix with space if first token"
        for special, seg in self.split_specials(text):
            if special:
                ids.append(self.vocab[seg])
                prev_special = True
            else:
                if prev_special:
                    seg = " " + seg
                ids.extend(self.spm(seg.replace(" ", "\u2581")))
                prev_special = False
        return ids

    def decode(self, ids):
        text = super().decode(ids)
        return text[1:] if text.startswith(" ") else text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    r = GGUFReader(args.gguf)
    tokens = list(field(r, "tokenizer.ggml.tokens"))
    scores = list(field(r, "tokenizer.ggml.scores"))
    token_type = [int(x) for x in field(r, "tokenizer.ggml.token_type")]
    bos = int(field(r, "tokenizer.ggml.bos_token_id"))
    unk = int(field(r, "tokenizer.ggml.unknown_token_id"))
    tok = PrefixSpm(tokens, scores, token_type, bos, unk, add_bos=False)
    hf = hf_gemma_tokenizer(tokens, scores, token_type, space_prefix=True)
    assert hf is not None, "the cross-check needs the tokenizers package"
    cases = []
    for p in PROMPTS:
        ids = tok.encode(p)
        hf_ids = hf.encode(p, add_special_tokens=False).ids
        agree = hf_ids == ids
        print(f"{'AGREE' if agree else 'DISAGREE'} {len(ids)} ids: {p[:60]!r}", file=sys.stderr)
        assert agree, (p, ids, hf_ids)
        decoded = tok.decode(ids)
        cases.append({"text": p, "ids": ids, "decoded": decoded,
                      "byte_tokens": sum(token_type[i] == BYTE for i in ids)})
    assert any(c["byte_tokens"] for c in cases)
    out = {"source": "gemma-3-270m vocabulary with tokenizer.ggml.add_space_prefix = true",
           "cases": cases}
    write_json_atomic(args.out, out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
