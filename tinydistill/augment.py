"""Transfer sets: turn a few thousand labelled sentences into a large unlabelled pool for distillation.

Methods (``method=``):

* ``glove`` and ``mlm``: TinyBERT's word replacement (Jiao et al. 2020). Every eligible word (alphabetic,
  not a stop word) is replaced with probability ``p`` by one of ``k`` candidates: the masked LM's top
  predictions for that position (``mlm``), or the word's nearest neighbours in an embedding space (``glove``,
  and the fallback for words the MLM cannot hold as one token). Case is kept; duplicates and the original
  are dropped.
* ``tang``: Tang et al. (2019), over ``words.tokenize`` tokens: each word is masked (``p_mask``) or swapped
  for a corpus word of the same part of speech drawn by unigram frequency (``p_pos``); then, with
  ``p_ngram``, a random 1-5 word window is kept.

The POS tagger is TextBlob's ``PatternTagger`` (pattern's Brill-style tagger, Penn Treebank tags,
``pip install textblob``): its lexicon and rules ship inside the wheel, so it runs offline, whereas NLTK's
tagger needs a data download and spaCy's models are not published on PyPI. It tags SST-2's training split
in under a second.

Candidates are computed once (per word type for neighbours; per position, in batched forward passes, for
the MLM) and variants are drawn with numpy in bulk per sentence, so each variant costs a list copy and a
join. ``tinydistill.pools`` writes them to disk as a sharded, resumable pool (``tinydistill augment``).
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from tinydistill.bases import load_glove
from tinydistill.config import AUGMENT_METHODS
from tinydistill.errors import TinyDistillError
from tinydistill.words import tokenize

log = logging.getLogger(__name__)

# NLTK's English stop-word list (letter-only entries); inlined so no corpus download is needed
STOP_WORDS = frozenset("""
a about above after again against ain all am an and any are aren as at be because been before being below
between both but by can couldn d did didn do does doesn doing don down during each few for from further had
hadn has hasn have haven having he her here hers herself him himself his how i if in into is isn it its itself
just ll m ma me mightn more most mustn my myself needn no nor not now o of off on once only or other our ours
ourselves out over own re s same shan she should shouldn so some such t than that the their theirs them
themselves then there these they this those through to too under until up ve very was wasn we were weren what
when where which while who whom why will with won wouldn y you your yours yourself yourselves
""".split())
_LETTERS = re.compile(r"([^\W\d_]+)")  # re.split keeps letter runs at odd indices, what lies between at even
Tagger = Callable[[list[str]], list[str]]  # the tokens of one sentence -> one POS tag per token


@dataclass(frozen=True)
class TangOps:
    """Tang et al. (2019) settings for ``method="tang"`` (their defaults)."""

    p_mask: float = 0.1  # a masked word teaches the student what the teacher does with missing evidence
    p_pos: float = 0.1  # same-POS swaps keep the sentence grammatical while changing its meaning
    p_ngram: float = 0.25  # short windows show the teacher's view of phrases, not only full sentences
    mask_token: str = "[MASK]"  # what a masked word becomes; the teacher's tokenizer reads this as its mask


def split_words(text: str) -> list[str]:
    """Split text into letter runs (odd indices) and what lies between (even); ``"".join`` gives it back."""
    return _LETTERS.split(text)


def _eligible(pieces: list[str]) -> list[int]:
    return [i for i in range(1, len(pieces), 2) if pieces[i].lower() not in STOP_WORDS]


def _match_case(word: str, like: str) -> str:
    if len(like) > 1 and like.isupper():
        return word.upper()
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


# ---------------------------------------------------------------------------------- candidate sources


def embedding_vocab(model, tokenizer) -> tuple[list[str], np.ndarray]:
    """The whole-word tokens of ``tokenizer`` with ``model``'s input embeddings (the teacher's own space)."""
    weight = model.get_input_embeddings().weight.detach().float().numpy()
    tokens = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), len(weight)))))
    ids = [i for i, token in enumerate(tokens) if token.isalpha()]
    return [tokens[i].lower() for i in ids], weight[ids]


def build_neighbour_table(words: Iterable[str], vocab: Sequence[str], vectors: np.ndarray, k: int = 15,
                          max_candidates: int | None = None, block: int = 256) -> dict[str, list[str]]:
    """Map each of ``words`` found in ``vocab`` to its ``k`` nearest alphabetic vocab words (cosine).

    ``vectors[i]`` embeds ``vocab[i]``; candidates come from the first ``max_candidates`` vocab words only
    (GloVe is sorted by frequency and its rare words are mostly names and typos). One normalised matrix
    product per ``block`` queries, so a whole corpus takes seconds rather than one search per word.
    """
    import torch  # its topk is ~7x faster than numpy's argpartition here

    index = {w: i for i, w in enumerate(vocab)}
    queries = sorted({w for w in words if w in index})
    unit = torch.nn.functional.normalize(torch.tensor(np.asarray(vectors), dtype=torch.float32), dim=1)
    pool_ids = torch.tensor([i for i, w in enumerate(vocab[:max_candidates]) if w.isalpha()])
    pool = unit[pool_ids]
    table: dict[str, list[str]] = {}
    for start in range(0, len(queries), block):
        chunk = queries[start : start + block]
        sims = unit[[index[w] for w in chunk]] @ pool.T
        # one extra, as the word itself is usually its own nearest neighbour
        top = sims.topk(min(k + 1, len(pool_ids)), dim=1).indices
        for word, row in zip(chunk, pool_ids[top].tolist(), strict=True):
            table[word] = [vocab[i] for i in row if vocab[i] != word][:k]
    return table


def glove_neighbours(sentences: Sequence[str], k: int = 15,
                     max_candidates: int = 100_000) -> dict[str, list[str]]:
    """GloVe neighbours of every eligible word in ``sentences`` (see ``build_neighbour_table``)."""
    words = {p.lower() for s in sentences for p in split_words(s)[1::2]} - STOP_WORDS
    vocab, vectors = load_glove()
    return build_neighbour_table(words, vocab, vectors, k, max_candidates)


def load_mlm(name: str, device=None):
    """Load a masked LM and its tokenizer by hub name or folder, on `device` (a `device.resolve_device` spec; None:
    the CPU); a one-line error if it has no MLM head."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from tinydistill.device import resolve_device

    place = resolve_device(device or "cpu")  # a device torch does not see fails before the weights load

    try:
        model, info = AutoModelForMaskedLM.from_pretrained(name, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise TinyDistillError(f"cannot load masked LM {name!r}: {first_line}") from None
    # weights outside the encoder that the checkpoint lacks were just made up at random: no trained head
    head = sorted(key for key in info["missing_keys"] if not key.startswith(model.base_model_prefix + "."))
    if head or tokenizer.mask_token is None:
        missing = head[0] if head else "a mask token"
        raise TinyDistillError(f"{name!r} has no masked-LM head (it lacks {missing}); name a model trained "
                               "with one, such as bert-base-uncased")
    model.to(place)  # `mlm_candidates` feeds it on `model.device`
    return model.eval(), tokenizer


def mlm_candidates(model, tokenizer, texts: Sequence[str], k: int = 15, batch_size: int = 32,
                   progress: bool = False) -> list[dict[int, list[str]]]:
    """The masked LM's top-``k`` replacements (lower-case whole words) for each eligible word of each text.

    Returns, per text, ``{index into split_words(text): candidates}``. Each word gets a row of its own with
    that word replaced by the mask token, so the model never sees the word it replaces (the original TinyBERT
    script showed it the unmasked sentence too); the rows of many texts share one forward pass. Words that
    the tokenizer cannot hold as one token are left out for the caller's neighbour fallback.
    """
    import torch

    one_token: dict[str, bool] = {}
    rows = []  # (text index, piece index, masked text)
    for t, pieces in enumerate(split_words(text) for text in texts):
        for i in _eligible(pieces):
            word = pieces[i]
            if word not in one_token:
                tokens = tokenizer.tokenize(word)
                one_token[word] = len(tokens) == 1 and tokens[0] != tokenizer.unk_token
            if one_token[word]:
                masked = "".join(pieces[:i]) + tokenizer.mask_token + "".join(pieces[i + 1 :])
                rows.append((t, i, word.lower(), masked))
    rows.sort(key=lambda row: len(row[3]))  # rows of similar length share a batch: less padding
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    out: list[dict[int, list[str]]] = [{} for _ in texts]
    allowed = None
    with torch.inference_mode():
        for start in tqdm(range(0, len(rows), batch_size), desc="mlm", unit="batch", disable=not progress):
            batch = rows[start : start + batch_size]
            enc = tokenizer([row[3] for row in batch], return_tensors="pt", padding=True, truncation=True)
            logits = model(**enc.to(model.device)).logits
            if allowed is None:  # whole words only: no word pieces ("##ing"), marks or special tokens
                allowed = torch.tensor([i < len(vocab) and i not in special and vocab[i].isalpha()
                                        for i in range(logits.shape[-1])], device=logits.device)
            # where each row's mask is; a row whose mask was cut off by truncation simply drops out
            at, pos = (enc["input_ids"] == tokenizer.mask_token_id).nonzero(as_tuple=True)
            scores = logits[at, pos].masked_fill(~allowed, -torch.inf)
            top = scores.topk(min(k + 1, int(allowed.sum())), dim=-1).indices.tolist()
            for r, ids in zip(at.tolist(), top, strict=True):
                t, i, word, _ = batch[r]
                out[t][i] = [w for w in (vocab[j].lower() for j in ids) if w != word][:k]
    return out


def textblob_tagger() -> Tagger:
    """TextBlob's PatternTagger as a ``Tagger`` (see the module docstring for why this tagger)."""
    try:
        from textblob.en import tag
    except ImportError:
        raise TinyDistillError("the tang method needs a POS tagger: pip install textblob") from None

    def tag_tokens(tokens: list[str]) -> list[str]:
        tags = [t for _, t in tag(" ".join(tokens), tokenize=False)]
        if len(tags) != len(tokens):  # the tagger split a token its own way: tag each token alone instead
            tags = [tag(token, tokenize=False)[0][1] for token in tokens]
        return tags

    return tag_tokens


# ------------------------------------------------------------------------------------ variant makers


class _Replacer:
    """TinyBERT replacement over prepared sentences: pieces, the slots that may change, their candidates."""

    def __init__(self, pieces: list[list[str]], slots: list[list[int]], cands: list[list[list[str]]],
                 p: float):
        self.pieces, self.slots, self.cands, self.p = pieces, slots, cands, p

    def state(self) -> list:
        return [self.pieces, self.slots, self.cands]

    def empty(self) -> list[int]:
        return [i for i, slots in enumerate(self.slots) if not slots]

    def variants(self, i: int, rng: np.random.Generator, n: int) -> list[str]:
        slots, cands, base = self.slots[i], self.cands[i], self.pieces[i]
        if not slots:
            return []
        tries = 2 * n  # some draws change nothing or repeat; twice as many rows almost always suffice
        swap = (rng.random((tries, len(slots))) < self.p).tolist()
        pick = (rng.random((tries, len(slots))) * [len(c) for c in cands]).astype(np.int64).tolist()
        seen, out = {"".join(base)}, []
        for row_swap, row_pick in zip(swap, pick, strict=True):
            pieces = base.copy()
            for slot, options, hit, choice in zip(slots, cands, row_swap, row_pick, strict=True):
                if hit:
                    pieces[slot] = options[choice]
            text = "".join(pieces)
            if text not in seen:
                seen.add(text)
                out.append(text)
                if len(out) == n:
                    break
        return out


class _Tang:
    """Tang et al. (2019) operations over word tokens with their POS tags."""

    def __init__(self, tokens: list[list[str]], tags: list[list[str]], ops: TangOps):
        self.tokens, self.tags, self.ops = tokens, tags, ops
        # the operations change words and numbers; punctuation stays, as in Tang et al.
        self.is_word = [np.array([t[-1].isalnum() for t in sent], dtype=bool) for sent in tokens]
        counts: dict[str, Counter] = defaultdict(Counter)
        for sent, sent_tags in zip(tokens, tags, strict=True):
            for token, tag in zip(sent, sent_tags, strict=True):
                counts[tag][token.lower()] += 1
        # per tag: its words and their cumulative unigram probabilities, for searchsorted sampling
        self.pools = {tag: (list(c), np.cumsum(list(c.values())) / c.total()) for tag, c in counts.items()}

    def state(self) -> list:
        return [self.tokens, self.tags]

    def empty(self) -> list[int]:
        return [i for i, words in enumerate(self.is_word) if not words.any()]

    def variants(self, i: int, rng: np.random.Generator, n: int) -> list[str]:
        tokens, tags, ops = self.tokens[i], self.tags[i], self.ops
        if not self.is_word[i].any():
            return []
        tries = 2 * n
        u, v = rng.random((2, tries, len(tokens)))
        window = rng.random(tries) < ops.p_ngram
        lengths = rng.integers(1, 6, tries)
        starts = rng.random(tries)
        original, seen, out = " ".join(tokens), set(), []
        for r in range(tries):
            new = tokens.copy()
            for j in np.flatnonzero((u[r] < ops.p_mask + ops.p_pos) & self.is_word[i]).tolist():
                if u[r, j] < ops.p_mask:
                    new[j] = ops.mask_token
                else:
                    words, cdf = self.pools[tags[j]]
                    at = min(int(np.searchsorted(cdf, v[r, j])), len(words) - 1)  # cdf[-1] may round below 1
                    new[j] = _match_case(words[at], tokens[j])
            if window[r]:
                size = min(int(lengths[r]), len(new))
                first = int(starts[r] * (len(new) - size + 1))
                new = new[first : first + size]
            text = " ".join(new)
            if text != original and text not in seen:
                seen.add(text)
                out.append(text)
                if len(out) == n:
                    break
        return out


def _replacer(sentences: Sequence[str], p: float, k: int, table: dict[str, list[str]],
              scored: list[dict[int, list[str]]] | None) -> _Replacer:
    """Slots and candidates per sentence: the MLM's for its position, else the word's neighbours."""
    pieces, slots, cands = [], [], []
    for s, text in enumerate(sentences):
        parts = split_words(text)
        found: list[tuple[int, list[str]]] = []
        for i in _eligible(parts):
            options = (scored[s].get(i) if scored else None) or table.get(parts[i].lower())
            if options:
                options = options if len(options) <= k else options[:k]  # uncut, all uses share one list
                if not parts[i].islower():
                    options = [_match_case(w, parts[i]) for w in options]
                found.append((i, options))
        pieces.append(parts)
        slots.append([i for i, _ in found])
        cands.append([options for _, options in found])
    return _Replacer(pieces, slots, cands, p)


def variant_maker(sentences: Sequence[str], method: str, p: float, k: int, neighbours, mlm, tagger, tang: TangOps,
                  progress: bool):
    """Build the variant maker for ``method`` (all candidate work happens here, once); arguments as in
    ``iter_augmented``.

    ``maker.variants(i, rng, n)`` draws up to ``n`` distinct variants of sentence ``i`` with ``rng``;
    ``maker.state()`` is what the candidates came to (JSON-able), which a pool's manifest records.
    """
    if method not in AUGMENT_METHODS:
        raise TinyDistillError(f"unknown augmentation method {method!r}; expected one of {list(AUGMENT_METHODS)}")
    if not sentences:
        raise TinyDistillError("no sentences to augment")
    if method == "tang":
        tokens = [tokenize(s, lowercase=False) for s in sentences]  # the students' word split, case kept
        tagger = tagger or textblob_tagger()
        maker: _Replacer | _Tang = _Tang(tokens, [tagger(t) if t else [] for t in tokens], tang)
    else:
        if method == "mlm" and mlm is None:
            raise TinyDistillError("method 'mlm' needs a masked LM (--mlm NAME, e.g. bert-base-uncased)")
        if method == "glove" and neighbours is None:
            neighbours = glove_neighbours(sentences, k)
        scored = None if mlm is None else mlm_candidates(mlm[0], mlm[1], sentences, k, progress=progress)
        maker = _replacer(sentences, p, k, neighbours or {}, scored)
    empty = maker.empty()
    if len(empty) == len(sentences):
        raise TinyDistillError(f"none of the {len(sentences)} sentences has a word that {method} can change")
    for i in empty:
        log.debug("skipping sentence %d, no word to change: %r", i, sentences[i])
    if empty:
        log.info("skipping %d of %d sentences with no word to change", len(empty), len(sentences))
    return maker


def iter_augmented(sentences: Sequence[str], method: str = "glove", n: int = 20, p: float = 0.4, k: int = 15,
                   seed: int = 0, *, neighbours: dict[str, list[str]] | None = None, mlm=None,
                   tagger: Tagger | None = None, tang: TangOps = TangOps(),
                   progress: bool = False) -> Iterator[str]:
    """Up to ``n`` distinct variants of each sentence in turn, never the sentence; same seed, same output.

    ``neighbours``: word -> candidates (``build_neighbour_table``); for ``glove`` it defaults to GloVe 6B 50d,
    for ``mlm`` it is the fallback for words the model cannot score. ``mlm``: a ``(model, tokenizer)`` pair
    from ``transformers``. ``tagger``: for ``tang``, defaults to ``textblob_tagger()``. ``p`` and ``k`` apply
    to ``glove``/``mlm``, ``tang`` to ``tang``. Candidates are computed before this returns.
    """
    maker = variant_maker(sentences, method, p, k, neighbours, mlm, tagger, tang, progress)
    return (text for i in range(len(sentences))
            for text in maker.variants(i, np.random.default_rng([seed, 0, i]), n))
