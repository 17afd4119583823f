"""Tokenizers: UTF-8 bytes by default, a Hugging Face ``tokenizer.json`` when a model has one."""

from __future__ import annotations

import codecs
import os
from pathlib import Path


class ByteTokenizer:
    """Token i is byte i of the UTF-8 text (vocab 256)."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def stream_decoder(self):
        """Incremental decoder: ``feed(id) -> str`` emits text once a UTF-8 sequence completes."""
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda i: dec.decode(bytes([int(i)]))


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` through the ``tokenizers`` library."""

    def __init__(self, path: str | os.PathLike):
        from tokenizers import Tokenizer

        self.path = Path(path)
        try:
            self._tok = Tokenizer.from_file(str(self.path))
        except Exception as e:  # the tokenizers library raises plain Exceptions
            raise ValueError(f"{self.path}: not a valid tokenizer.json ({e}); re-copy the "
                             "checkpoint's tokenizer.json") from None
        self.vocab_size = self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids])

    def stream_decoder(self):
        """Decodes the growing sequence and emits what was added (handles merged pieces)."""
        ids: list[int] = []
        shown = ""

        def feed(i):
            nonlocal shown
            ids.append(int(i))
            text = self.decode(ids)
            new, shown = text[len(shown):], text
            return new

        return feed


def load_tokenizer(kind: str, model_path: str | os.PathLike | None = None):
    """The tokenizer a model's config names; ``hf`` reads ``tokenizer.json`` beside the model."""
    if kind == "byte":
        return ByteTokenizer()
    if kind == "hf":
        folder = Path(model_path) if model_path is not None else Path(".")
        if not folder.is_dir():  # a model file: its tokenizer sits beside it
            folder = folder.parent
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"the model uses a Hugging Face tokenizer but {path} does not exist; put the "
                "checkpoint's tokenizer.json next to the .nsllm file"
            )
        return HFTokenizer(path)
    raise ValueError(f"unknown tokenizer kind {kind!r} (expected 'byte' or 'hf')")
