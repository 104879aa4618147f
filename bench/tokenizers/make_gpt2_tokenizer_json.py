"""Derive a GPT-2 tokenizer.json from vocab.json + merges.txt with the PyPI `tokenizers` wheel.

The fixture Tests/TokenizersTests/Fixtures/gpt2-tokenizer-json/tokenizer.json was written by this script, so the
Swift loader is tested on HF's own serialization (not one we wrote by hand). Run in a scratch virtualenv:
    VENV=$(mktemp -d) && python3 -m venv "$VENV" && "$VENV/bin/pip" install tokenizers
    "$VENV/bin/python" bench/tokenizers/make_gpt2_tokenizer_json.py SRC_DIR OUT_DIR
It builds exactly what transformers' GPT2 converter builds: BPE (no unk, no dropout), ByteLevel pre-tokenizer
with add_prefix_space=False, ByteLevel post-processor and decoder, <|endoftext|> as a special added token.
"""
import sys, os
from tokenizers import Tokenizer, AddedToken, models, pre_tokenizers, decoders, processors

src, out = sys.argv[1], sys.argv[2]
bpe = models.BPE.from_file(os.path.join(src, "vocab.json"), os.path.join(src, "merges.txt"))
tok = Tokenizer(bpe)
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.post_processor = processors.ByteLevel(trim_offsets=False)
tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
os.makedirs(out, exist_ok=True)
tok.save(os.path.join(out, "tokenizer.json"))
print(tok.encode("Hello world, it's a test.").ids)
