"""The numpy forward passes of the students, on whole batches of flat token ids and lengths (torch-free).

CBoW sums word rows per text (a sparse product where scipy is installed) and averages them (the attention CBoW
also weighs by a per-word score), the BiLSTM runs every sequence of a batch in lockstep in PyTorch's packed
layout, the CNN sums per-word lookup tables. Outputs match the torch modules within float32 rounding. Each class
is built from the weights of a student folder (checked by shape against its config) and called on one batch;
`runtime.load` picks one by `model_type` from `FORWARDS`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from tinydistill.errors import TinyDistillError


def _need(weights: dict[str, np.ndarray], name: str, shape: tuple[int, ...], path: Path,
          model_type: str) -> np.ndarray:
    """A tensor of the expected shape, or an error naming the weights file."""
    if name not in weights:
        raise TinyDistillError(f"{path}: no tensor {name!r}; not the weights of a {model_type} student "
                               "as its config.json describes")
    if weights[name].shape != shape:
        raise TinyDistillError(f"{path}: tensor {name!r} has shape {weights[name].shape}, config.json implies "
                               f"{shape}")
    return weights[name]


def _starts(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


# From this many texts a call sums word rows as a sparse (texts x vocabulary) count matrix times the table: the
# attention CBoW's whole forward ran 3-4x faster than with a gather and `np.add.reduceat` on batches of 512 sst2
# texts, but scipy costs ~40 us to set one up: one text took 26 us by the gather, 67 by the product, and the two
# crossed near 50 texts
SPARSE_FROM = 64


@cache
def _csr_matrix():
    """scipy's `csr_matrix` where scipy is installed (it comes with scikit-learn), else None: numpy alone works."""
    try:
        from scipy.sparse import csr_matrix
    except ImportError:
        return None
    return csr_matrix


def _sums(table: np.ndarray, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per text, the sum of the `table` rows of its ids (zeros for an empty text), in the table's dtype."""
    csr_matrix = _csr_matrix() if len(lengths) >= SPARSE_FROM else None
    if csr_matrix is not None:
        ends = np.cumsum(lengths)
        counts = csr_matrix((np.ones(len(ids), table.dtype), ids, np.concatenate([[0], ends])),
                            shape=(len(lengths), len(table)))
        return np.asarray(counts @ table)
    # one zero row at the end lets reduceat take a start index equal to len(ids) (trailing empty texts)
    rows = np.concatenate([table[ids], np.zeros((1, table.shape[1]), table.dtype)])
    sums = np.add.reduceat(rows, _starts(lengths), axis=0)
    sums[lengths == 0] = 0.0  # reduceat gives the next row for an empty segment
    return sums


def _table(embedding: np.ndarray, weight: np.ndarray, bias: np.ndarray | float = 0.0) -> np.ndarray:
    """`embedding @ weight.T + bias` for every word, in float64 then float32: a linear layer on a looked-up
    embedding is a lookup in this table, which is exact up to one rounding and skips the matmul per token."""
    return (embedding.astype(np.float64) @ weight.T.astype(np.float64) + bias).astype(np.float32)


class _CBoW:
    """Mean of the word embeddings (empty text: zeros), then Linear, ReLU, Linear."""

    def __init__(self, w: dict, c: dict, path: Path):
        vocab, dim, hidden, k = c["vocab_size"], c["embed_dim"], c["hidden_dim"], c["n_classes"]
        self.embedding = _need(w, "embedding.weight", (vocab, dim), path, "cbow")
        self.w1 = _need(w, "ffn.0.weight", (hidden, dim), path, "cbow").T.copy()
        self.b1 = _need(w, "ffn.0.bias", (hidden,), path, "cbow")
        self.w2 = _need(w, "ffn.3.weight", (k, hidden), path, "cbow").T.copy()
        self.b2 = _need(w, "ffn.3.bias", (k,), path, "cbow")

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        means = _sums(self.embedding, ids, lengths) / np.maximum(lengths, 1)[:, None].astype(np.float32)
        hidden = np.maximum(means @ self.w1 + self.b1, 0)
        return hidden @ self.w2 + self.b2


class _AttnCBoW:
    """The mean of the word embeddings beside their attention-weighted mean (a softmax over each text's words of
    a per-word score, which is a lookup: `score` is linear in the embedding), then Linear, ReLU, Linear. An empty
    text reads zeros for both.

    A softmax does not change when every score moves by one constant, so the weights can be `exp(score - the
    vocabulary's highest score)`, fixed per word: one table row per word then holds [vector, weight x vector,
    weight], and a text is one sum of table rows (`_sums`), as for the mean alone. Where the scores span more than
    `SPREAD` (a weight could underflow to zero in float32) each text subtracts its own highest score instead.
    """

    SPREAD = 60.0

    def __init__(self, w: dict, c: dict, path: Path):
        vocab, dim, hidden, k = c["vocab_size"], c["embed_dim"], c["hidden_dim"], c["n_classes"]
        embedding = _need(w, "embedding.weight", (vocab, dim), path, "cbow-attn")
        scores = _table(embedding, _need(w, "score.weight", (1, dim), path, "cbow-attn"),
                        _need(w, "score.bias", (1,), path, "cbow-attn"))[:, 0]
        self.dim, self.scores, self.embedding = dim, scores, embedding
        self.table = None
        if scores.max() - scores.min() <= self.SPREAD:
            weights = np.exp(scores.astype(np.float64) - scores.max())[:, None]
            self.table = np.concatenate([embedding, embedding * weights, weights], axis=1).astype(np.float32)
        self.w1 = _need(w, "ffn.0.weight", (hidden, 2 * dim), path, "cbow-attn").T.copy()
        self.b1 = _need(w, "ffn.0.bias", (hidden,), path, "cbow-attn")
        self.w2 = _need(w, "ffn.3.weight", (k, hidden), path, "cbow-attn").T.copy()
        self.b2 = _need(w, "ffn.3.bias", (k,), path, "cbow-attn")

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        dim = self.dim
        if self.table is not None:
            pooled = _sums(self.table, ids, lengths)
        else:  # each text's weights relative to its own highest score
            starts, scores = _starts(lengths), self.scores[ids]
            # an extra element at the end lets reduceat take a start index equal to len(ids) (trailing empty
            # texts); -inf, so it never counts
            peak = np.maximum.reduceat(np.append(scores, np.float32(-np.inf)), starts)
            weights = np.exp(scores - np.repeat(peak, lengths))[:, None]
            vectors = self.embedding[ids]
            rows = np.concatenate([vectors, vectors * weights, weights], axis=1)
            pooled = _sums(rows, np.arange(len(ids)), lengths)
        # divide by the word count and by the weights' sum (at least exp(-SPREAD) for a text, 0 for an empty one)
        pooled[:, :dim] /= np.maximum(lengths, 1)[:, None]
        pooled[:, dim:2 * dim] /= np.maximum(pooled[:, 2 * dim:], np.float32(1e-30))
        hidden = np.maximum(pooled[:, :2 * dim] @ self.w1 + self.b1, 0)
        return hidden @ self.w2 + self.b2


class _BiLSTM:
    """Stacked bidirectional LSTM with PyTorch's packed-sequence semantics, then a linear layer on
    concat(last forward state, last backward state) of the top layer.

    All sequences of a batch advance in lockstep, sorted by falling length, so the rows still running at step
    t are a prefix (PyTorch's PackedSequence layout): no masks, no work on padding. The backward direction of
    each row starts at its own last token. An empty text is read as one [PAD] token (`lengths.clamp(min=1)`).
    """

    def __init__(self, w: dict, c: dict, path: Path):
        vocab, dim, h, layers, k = c["vocab_size"], c["embed_dim"], c["hidden_dim"], c["num_layers"], c["n_classes"]
        self.hidden, self.layers = h, layers
        embedding = _need(w, "embedding.weight", (vocab, dim), path, "bilstm")
        # torch's gate rows are i, f, g, o; reorder to i, f, o, g so one slice takes the three sigmoids, and halve
        # their rows: sigmoid(x) = 0.5 * tanh(x / 2) + 0.5, so a single tanh serves all four gates (x0.5 is exact)
        order = np.r_[0:2 * h, 3 * h:4 * h, 2 * h:3 * h]
        half = np.r_[np.full(3 * h, 0.5), np.ones(h)].astype(np.float32)
        self.w_in, self.w_hh = [], []
        for layer in range(layers):
            in_dim = dim if layer == 0 else 2 * h
            w_ih, bias, w_hh = [], [], []
            for suffix in (f"_l{layer}", f"_l{layer}_reverse"):
                name = f"lstm.{{}}{suffix}"
                w_ih.append(_need(w, name.format("weight_ih"), (4 * h, in_dim), path, "bilstm")[order] * half[:, None])
                w_hh.append(_need(w, name.format("weight_hh"), (4 * h, h), path, "bilstm")[order] * half[:, None])
                bias.append((_need(w, name.format("bias_ih"), (4 * h,), path, "bilstm")
                             + _need(w, name.format("bias_hh"), (4 * h,), path, "bilstm"))[order] * half)
            if layer == 0:  # the first layer's input projection becomes a per-word table (2, vocab, 4H)
                self.table = np.stack([_table(embedding, w_ih[d], bias[d]) for d in range(2)])
            else:  # (2H + 1, 8H): both directions in one matmul; the last row is the bias (inputs end in a 1)
                self.w_in.append(np.concatenate([np.concatenate(w_ih).T, np.concatenate(bias)[None]]))
            self.w_hh.append(np.stack([m.T for m in w_hh]))  # (2, H, 4H) for a batched matmul per step
        self.w_out = _need(w, "out.weight", (k, 2 * h), path, "bilstm").T.copy()
        self.b_out = _need(w, "out.bias", (k,), path, "bilstm")

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        starts = _starts(lengths)
        if (lengths == 0).any():
            ids = np.insert(ids, starts[lengths == 0], 0)
            lengths = np.maximum(lengths, 1)
            starts = _starts(lengths)
        order = np.argsort(-lengths, kind="stable")
        ls = lengths[order]
        active = (ls[None, :] > np.arange(int(ls[0]))[:, None]).sum(1)  # rows still running at each step
        offsets = _starts(active)
        # the packed index of (step t, sorted row r) is offsets[t] + r; `rev` maps the packed index of token p of
        # a row to that of its token len-1-p, which is where the backward direction reads token p
        rows = np.repeat(np.arange(len(ls)), ls)
        pos = np.arange(len(rows)) - np.repeat(_starts(ls), ls)
        fwd = offsets[pos] + rows
        packed = np.empty_like(ids)
        packed[fwd] = ids[np.repeat(starts[order], ls) + pos]
        rev = np.empty_like(fwd)
        rev[fwd] = offsets[np.repeat(ls, ls) - 1 - pos] + rows

        h4 = 4 * self.hidden
        # step t reads rows idx[o:o+n] of each source (rows o:o+n where idx is None)
        inputs: tuple[tuple[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray]]
        inputs = (self.table[0], packed), (self.table[1], packed[rev])
        for layer in range(self.layers):
            top = layer + 1 == self.layers
            out, h = self._recur(inputs, self.w_hh[layer], active, offsets, rev, len(ls), keep=not top)
            if not top:
                proj = out @ self.w_in[layer]
                inputs = (proj[:, :h4], None), (proj[:, h4:], rev)
        logits = np.empty((len(ls), self.b_out.shape[0]), np.float32)
        logits[order] = np.concatenate([h[0], h[1]], axis=1) @ self.w_out + self.b_out
        return logits

    def _recur(self, inputs, w_hh: np.ndarray, active: np.ndarray, offsets: np.ndarray, rev: np.ndarray,
               batch: int, keep: bool) -> tuple[np.ndarray | None, np.ndarray]:
        """Both directions of one layer. Returns the outputs in forward packed order as (tokens, 2H + 1) rows
        [forward h, backward h of the same token, 1] (the next layer's input), and the last states (2, batch, H).
        """
        hid = self.hidden
        h = np.zeros((2, batch, hid), np.float32)
        c = np.zeros_like(h)
        out = None
        if keep:
            out = np.empty((len(rev), 2 * hid + 1), np.float32)
            out[:, -1] = 1.0
        (src_f, idx_f), (src_b, idx_b) = inputs
        for n, o in zip(active.tolist(), offsets.tolist(), strict=True):
            g = h[:, :n] @ w_hh
            g[0] += src_f[o:o + n] if idx_f is None else src_f[idx_f[o:o + n]]
            g[1] += src_b[idx_b[o:o + n]]
            np.tanh(g, out=g)
            sig = g[..., :3 * hid]
            sig *= 0.5
            sig += 0.5
            cn = c[:, :n]
            cn *= sig[..., hid:2 * hid]
            cn += sig[..., :hid] * g[..., 3 * hid:]
            hn = h[:, :n]
            np.multiply(sig[..., 2 * hid:], np.tanh(cn), out=hn)
            if out is not None:
                out[o:o + n, :hid] = hn[0]
                out[rev[o:o + n], hid:2 * hid] = hn[1]
        return out, h  # rows leave the prefix when they end, so h holds each row's last state


class _CNN:
    """Kim's CNN: for each window width, max over time of relu(conv), then a linear layer.

    Each text is read as if alone, as the torch module does: padded with [PAD] to the widest window when
    shorter, and no window that starts past its end counts.
    Every conv is a sum of per-word tables: window w at t is `bias + sum_k table_k[ids[t + k]]`.
    """

    def __init__(self, w: dict, c: dict, path: Path):
        vocab, dim, f, k = c["vocab_size"], c["embed_dim"], c["filters"], c["n_classes"]
        windows = [int(x) for x in c["windows"]]
        embedding = _need(w, "embedding.weight", (vocab, dim), path, "cnn")
        # widths in rising order, so the windows that still cover offset k are a contiguous block of columns
        by_width = np.argsort(windows, kind="stable")
        self.widths = np.array([windows[j] for j in by_width])
        self.filters, self.min_len = f, max(windows)
        convs = [_need(w, f"convs.{j}.weight", (f, dim, windows[j]), path, "cnn") for j in by_width]
        bias = np.concatenate([_need(w, f"convs.{j}.bias", (f,), path, "cnn") for j in by_width])
        self.first = []  # first column block that offset k contributes to
        self.tables = []
        for offset in range(self.min_len):
            first = int(np.searchsorted(self.widths, offset, side="right"))
            weight = np.concatenate([conv[:, :, offset] for conv in convs[first:]])
            self.first.append(first * f)
            self.tables.append(_table(embedding, weight, bias if offset == 0 else 0.0))
        out = _need(w, "out.weight", (k, f * len(windows)), path, "cnn")
        columns = np.concatenate([np.arange(j * f, (j + 1) * f) for j in by_width])
        self.w_out = out[:, columns].T.copy()
        self.b_out = _need(w, "out.bias", (k,), path, "cnn")

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        padded = np.maximum(lengths, self.min_len)  # every filter fires at least once
        starts = _starts(padded)
        total = int(padded.sum())
        flat = np.zeros(total + self.min_len, np.int64)  # trailing [PAD]s keep the shifted views in range
        pos = np.arange(len(ids)) - np.repeat(_starts(lengths), lengths)
        flat[np.repeat(starts, lengths) + pos] = ids
        acc = self.tables[0][flat[:total]]
        for offset in range(1, self.min_len):
            acc[:, self.first[offset]:] += self.tables[offset][flat[offset:offset + total]]
        np.maximum(acc, 0, out=acc)
        # windows that would run past their text: zero is neutral here, since every value is >= 0 after relu
        left = np.repeat(starts + padded, padded) - np.arange(total)  # tokens from t to the end of the text
        near_end = np.flatnonzero(left < self.min_len)
        blocks = acc[near_end].reshape(len(near_end), len(self.widths), self.filters)
        blocks[left[near_end, None] < self.widths[None, :]] = 0.0
        acc[near_end] = blocks.reshape(len(near_end), -1)
        pooled = np.maximum.reduceat(acc, starts, axis=0)
        return pooled @ self.w_out + self.b_out


FORWARDS = {"cbow": _CBoW, "cbow-attn": _AttnCBoW, "bilstm": _BiLSTM, "cnn": _CNN}
