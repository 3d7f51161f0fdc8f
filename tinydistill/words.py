"""Word-level tokenizer and vocabulary shared by the torch students and the numpy runtime.

No torch (pure Python, but for `pad_ids`' numpy) so that the runtime can import it anywhere; both sides tokenise
through `tokenize` (the runtime through `fast_tokenizer`, which gives the same tokens), so exported students
see exactly the ids they were trained on. `pad_ids` packs id lists into the matrix the torch students take.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinydistill.errors import TinyDistillError

PAD, UNK = "[PAD]", "[UNK]"
# a mask token (augmentation's masked words: never in the vocabulary, so they read as unknown), words with an
# inner apostrophe ("don't", "'s" split the way SST is tokenised), or single punctuation marks
MASK = "[mask]"
_TOKEN = re.compile(r"\[mask\]|[^\W_]+(?:'[^\W_]+)?|'[^\W_]+|[^\w\s]", re.IGNORECASE)


@dataclass
class TokenizerConfig:
    lowercase: bool = True  # the students are tiny; case would split their small vocabulary
    max_length: int = 256  # tokens kept per text (the start); long reviews cost time, not accuracy

    def __post_init__(self) -> None:
        if not isinstance(self.max_length, int) or isinstance(self.max_length, bool) or self.max_length < 1:
            raise TinyDistillError(f"tokenizer max_length is {self.max_length!r}; expected a whole number >= 1")
        if not isinstance(self.lowercase, bool):
            raise TinyDistillError(f"tokenizer lowercase is {self.lowercase!r}; expected true or false")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split text into words and punctuation marks."""
    return _TOKEN.findall(text.lower() if lowercase else text)


# ------------------------------------------------------------------------------------- fast tokenising

# The fast path below is proved equal to `tokenize` for this pattern only; another `_TOKEN` turns it off.
# Its first alternative, the augmentation's "[mask]" token, needs a "[": texts with one take `tokenize`.
_VERIFIED_PATTERN = r"\[mask\]|[^\W_]+(?:'[^\W_]+)?|'[^\W_]+|[^\w\s]"
_VERIFIED_FLAGS = re.UNICODE | re.IGNORECASE
_FAST = _TOKEN.pattern == _VERIFIED_PATTERN and _TOKEN.flags == _VERIFIED_FLAGS
_ASCII = [chr(i) for i in range(128)]
_ALNUM = "".join(c for c in _ASCII if re.fullmatch(r"[^\W_]", c, _VERIFIED_FLAGS))
# On text already spread by `_ascii_table` (only letters, digits, apostrophes, spaced-out marks and spaces left)
# and free of "[", this is `_TOKEN`: the other alternatives, with the classes spelled out for ASCII.
_ASCII_TOKEN = re.compile(f"[{_ALNUM}]+(?:'[{_ALNUM}]+)?|'[{_ALNUM}]+|[^{_ALNUM} ]")


def _ascii_table(lowercase: bool) -> dict[int, str]:
    """A `str.translate` table that turns ASCII text into its tokens separated by spaces.

    Without "[", every token of `tokenize` is a run of letters/digits (with at most one inner apostrophe)
    or a single other mark, and no token holds whitespace or `_`. So surrounding each mark with spaces and blanking
    whitespace and `_` changes no token, and without apostrophes the tokens are then just `str.split()`.
    The classes come from the pattern itself, character by character.
    """
    table = {}
    for c in _ASCII:
        if c in _ALNUM:
            table[ord(c)] = c.lower() if lowercase else c
        elif c == "'":
            table[ord(c)] = c
        elif re.fullmatch(r"[^\w\s]", c, _VERIFIED_FLAGS):
            table[ord(c)] = f" {c} "
        else:  # whitespace and `_`: never part of a token
            table[ord(c)] = " "
    return table


def fast_tokenizer(lowercase: bool = True) -> Callable[[str], list[str]]:
    """A function that gives exactly the tokens of `tokenize(text, lowercase)`, faster on ASCII text.

    The regex costs ~10 us per sentence, most of the runtime's time, so ASCII texts take a `str.translate` +
    `str.split` path that gives the same tokens (tests fuzz it against `tokenize`); other texts, and texts
    with a "[", go through `tokenize` itself.
    """
    if not _FAST:
        return lambda text: tokenize(text, lowercase)
    table = _ascii_table(lowercase)

    def tokens(text: str) -> list[str]:
        if text.isascii() and "[" not in text:
            spread = text.translate(table)
            return spread.split() if "'" not in spread else _ASCII_TOKEN.findall(spread)
        return tokenize(text, lowercase)

    return tokens


class Vocabulary:
    """Word <-> id map: id 0 is padding, id 1 unknown, then words by falling frequency."""

    def __init__(self, words: Sequence[str], config: TokenizerConfig | None = None):
        self.words = list(words)
        self.config = config or TokenizerConfig()
        if self.words[:2] != [PAD, UNK]:
            raise TinyDistillError(f"vocabulary must start with {PAD} and {UNK}")
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[str], size: int = 5000, config: TokenizerConfig | None = None) -> Vocabulary:
        """The `size - 2` most frequent words of `texts` (ties broken alphabetically, so it is deterministic)."""
        config = config or TokenizerConfig()
        counts = Counter(w for t in texts for w in tokenize(t, config.lowercase))
        counts.pop(MASK, None)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(size - 2, 0)]
        return cls([PAD, UNK] + [w for w, _ in ranked], config)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        """Ids of the first `max_length` tokens; unknown words map to 1."""
        get = self.index.get
        return [get(w, 1) for w in tokenize(text, self.config.lowercase)[: self.config.max_length]]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def save(self, folder: Path) -> None:
        (folder / "vocab.txt").write_text("\n".join(self.words) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, config: dict | None = None) -> Vocabulary:
        path = folder / "vocab.txt"
        if not path.exists():
            raise TinyDistillError(f"{path}: missing vocabulary file")
        try:
            words = path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError:
            raise TinyDistillError(f"{path}: not a UTF-8 vocabulary file") from None
        if words and words[-1] == "":
            words.pop()
        return cls(words, TokenizerConfig(**(config or {})))

    def config_dict(self) -> dict:
        return asdict(self.config)


def pad_ids(ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Pad id lists into one int64 matrix (what nn.Embedding takes) and their lengths; batches slice and trim it."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    out = np.zeros((len(ids), max(int(lengths.max()) if len(ids) else 1, 1)), dtype=np.int64)
    for row, x in enumerate(ids):
        out[row, : len(x)] = x
    return out, lengths
