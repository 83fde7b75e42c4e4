"""Normalisation and chunking, exactly as the retrieval config names them -- the same code for the path
that builds the index and the path that queries it, so they cannot drift apart.

Sizes are in words (whitespace-separated tokens): a model-independent stand-in for tokens.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PARAGRAPH = re.compile(r"\n\s*\n")


def normalise(text: str, how: str) -> str:
    if how == "none":
        return text
    if how == "nfkc":
        return unicodedata.normalize("NFKC", text)
    if how == "nfkc-lower":
        return unicodedata.normalize("NFKC", text).casefold()
    raise ValueError(f"normalisation {how!r}: expected none, nfkc or nfkc-lower")


def _fixed(words: list[str], size: int, overlap: int) -> list[list[str]]:
    step = max(1, size - overlap)
    return [words[i:i + size] for i in range(0, max(1, len(words) - overlap), step) if words[i:i + size]]


def _pack(units: list[list[str]], size: int, overlap: int) -> list[list[str]]:
    """Whole units (sentences, paragraphs) packed up to `size` words; a chunk starts with the last units of
    the one before, up to `overlap` words. A unit longer than `size` is cut into fixed windows."""
    chunks: list[list[str]] = []
    current: list[list[str]] = []
    for unit in units:
        if len(unit) > size:
            if current:
                chunks.append([w for u in current for w in u])
                current = []
            chunks.extend(_fixed(unit, size, overlap))
            continue
        if current and sum(map(len, current)) + len(unit) > size:
            chunks.append([w for u in current for w in u])
            carried: list[list[str]] = []
            for previous in reversed(current):
                if sum(map(len, carried)) + len(previous) > overlap:
                    break
                carried.insert(0, previous)
            current = carried
        current.append(unit)
    if current:
        chunks.append([w for u in current for w in u])
    return chunks


def _sentences(text: str) -> list[list[str]]:
    return [s.split() for s in _SENTENCE_END.split(text) if s.split()]


def _recursive(text: str, size: int, overlap: int) -> list[list[str]]:
    units: list[list[str]] = []
    for paragraph in _PARAGRAPH.split(text):
        words = paragraph.split()
        if not words:
            continue
        units.extend([words] if len(words) <= size else _sentences(paragraph))
    return _pack(units, size, overlap)


CHUNKERS: dict[str, Callable[[str, int, int], list[list[str]]]] = {
    "fixed": lambda text, size, overlap: _fixed(text.split(), size, overlap),
    "sentence": lambda text, size, overlap: _pack(_sentences(text), size, overlap),
    "recursive": _recursive,
}


def chunk(text: str, chunker: str, size: int, overlap: int) -> list[str]:
    if chunker not in CHUNKERS:
        raise ValueError(f"chunker {chunker!r}: expected one of {', '.join(sorted(CHUNKERS))}")
    if not 0 <= overlap < size:
        raise ValueError(f"chunk overlap {overlap}: expected 0 <= overlap < size ({size})")
    return [" ".join(words) for words in CHUNKERS[chunker](text, size, overlap)]
