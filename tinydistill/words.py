"""Word-level tokenizer and vocabulary shared by the torch students and the numpy runtime.

Pure Python (no numpy, no torch) so that the runtime can import it anywhere; both sides tokenise
through this one function, so exported students see exactly the ids they were trained on.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

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


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split text into words and punctuation marks."""
    return _TOKEN.findall(text.lower() if lowercase else text)


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
