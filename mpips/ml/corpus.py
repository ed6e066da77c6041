"""Text for word2vec: sentences of a whitespace-tokenised corpus, words as uint64 keys, the
vocabulary, frequent-word subsampling and the negative-sampling table. Pure module (NumPy;
the training kernel is mpips.kernels.skipgram).

A corpus file holds one sentence (or document) per line; a line longer than
MAX_SENTENCE_WORDS words is cut into sentences of that many (as gensim's LineSentence). A word
is the key ``word_key(word)``: the first 8 bytes of its BLAKE2b hash (UTF-8), the same on
every rank and in every launch, so the tables are keyed by words without any rank holding a
word list; two words sharing a key (about one chance in 10**10 for 100,000 words) would
share a vector.

The vocabulary is the words seen at least ``min_count`` times (counted by every worker over its
own lines and summed: jobs/word2vec.py). Subsampling keeps each occurrence of a word of
count ``c`` with probability ``(sqrt(c / t) + 1) * t / c`` (at most 1; ``t = sample * total``,
gensim's and word2vec's formula); negatives are drawn from the unigram distribution raised to
0.75 through a cumulative table over ``2**31 - 1``.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from ..kernels.starting_rows import uniform_rows

MAX_SENTENCE_WORDS = 10_000
TABLE_DOMAIN = 2**31 - 1


def word_key(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True, eq=False)
class Sentences:
    """Tokens as uint64 word keys, sentence ``s`` being ``keys[starts[s]:starts[s + 1]]``."""

    keys: np.ndarray
    starts: np.ndarray

    @property
    def n_words(self) -> int:
        return int(self.keys.size)

    @property
    def n_sentences(self) -> int:
        return int(self.starts.size - 1)


def read_sentences(path, index: int = 0, count: int = 1) -> tuple[Sentences, dict]:
    """The sentences of block ``index`` of ``count`` contiguous blocks of the file's lines
    (nearly equal numbers of lines), and {key: word} of the words in it. Blank lines are
    skipped; bytes that are not UTF-8 are replaced."""
    path = os.fspath(path)
    with open(path, "rb") as handle:
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    bounds = np.linspace(0, len(lines), count + 1).astype(np.int64)
    words: dict[str, int] = {}
    keys, starts = [], [0]
    for line in lines[bounds[index]:bounds[index + 1]]:
        tokens = line.split()
        for at in range(0, len(tokens), MAX_SENTENCE_WORDS):
            for token in tokens[at:at + MAX_SENTENCE_WORDS]:
                key = words.get(token)
                if key is None:
                    key = words[token] = word_key(token)
                keys.append(key)
            starts.append(len(keys))
    sentences = Sentences(np.array(keys, np.uint64), np.array(starts, np.int64))
    return sentences, {key: word for word, key in words.items()}


def count_words(sentences: Sentences) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique keys, int64 counts) of the sentences' words."""
    keys, counts = np.unique(sentences.keys, return_counts=True)
    return keys, counts.astype(np.int64)


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """The words kept (``keys`` sorted, uint64) and their corpus ``counts`` (int64)."""

    keys: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_counts(cls, keys: np.ndarray, counts: np.ndarray, min_count: int) -> "Vocabulary":
        """Sum the counts of equal keys (several workers' counts concatenated) and keep the
        words counted at least ``min_count`` times."""
        unique, where = np.unique(keys, return_inverse=True)
        totals = np.bincount(where, weights=counts, minlength=unique.size).astype(np.int64)
        keep = totals >= min_count
        return cls(unique[keep], totals[keep])

    @property
    def size(self) -> int:
        return int(self.keys.size)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def index_of(self, keys: np.ndarray) -> np.ndarray:
        """The vocabulary index of each key, -1 for words not kept."""
        at = np.searchsorted(self.keys, keys)
        found = at < self.keys.size
        found[found] = self.keys[at[found]] == keys[found]
        return np.where(found, at, -1).astype(np.int64)

    def keep_probabilities(self, sample: float) -> np.ndarray:
        """Per word, the probability that subsampling keeps an occurrence (1 with sample 0)."""
        if sample <= 0:
            return np.ones(self.size)
        threshold = sample * self.total
        counts = self.counts.astype(np.float64)
        return np.minimum(1.0, (np.sqrt(counts / threshold) + 1.0) * threshold / counts)

    def cum_table(self, power: float = 0.75) -> np.ndarray:
        """int64 cumulative table of counts**power over TABLE_DOMAIN (negative draws)."""
        weights = self.counts.astype(np.float64) ** power
        return np.round(np.cumsum(weights) / weights.sum() * TABLE_DOMAIN).astype(np.int64)


def in_vocabulary(sentences: Sentences, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """(vocabulary index per token, sentence starts) without the words not kept."""
    index = vocab.index_of(sentences.keys)
    kept = index >= 0
    starts = np.concatenate([[0], np.cumsum(kept)])[sentences.starts]
    return index[kept], starts.astype(np.int64)


def subsample(words: np.ndarray, starts: np.ndarray, keep: np.ndarray, rng
              ) -> tuple[np.ndarray, np.ndarray]:
    """Drop occurrences at random (``keep[word]``: the chance an occurrence stays)."""
    kept = rng.random(words.size) < keep[words]
    new_starts = np.concatenate([[0], np.cumsum(kept)])[starts]
    return words[kept], new_starts.astype(np.int64)


def input_rows(keys: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """The starting input vectors of ``keys``: uniform in [-0.5/dim, 0.5/dim) (word2vec's
    and gensim's range), a fixed function of key and seed; float32 (len(keys), dim)."""
    out = np.empty((keys.size, dim), np.float32)
    if keys.size:
        uniform_rows(np.ascontiguousarray(keys, np.uint64), dim, 0.5 / dim, int(seed), out)
    return out


def check_batch(words, inputs, starts, alphas, in_rows, out_rows, cum_table) -> None:
    """ValueError unless the arrays fit mpips.kernels.skipgram.train_batch's preconditions
    (an unchecked index in the kernel would be a segfault, not an error)."""
    n = words.size
    if inputs.shape != (n,) or starts.ndim != 1 or starts.size < 1 or starts[0] != 0 \
            or starts[-1] != n or (np.diff(starts) < 0).any() or alphas.size != starts.size - 1:
        raise ValueError("batch: words, inputs, sentence starts and rates do not fit together")
    if n and (words.min() < 0 or words.max() >= out_rows.shape[0]
              or inputs.min() < 0 or inputs.max() >= in_rows.shape[0]):
        raise ValueError("batch: a word or input row out of range")
    if cum_table.size != out_rows.shape[0] or cum_table.size == 0 or cum_table[-1] <= 0 \
            or (np.diff(cum_table) < 0).any():
        raise ValueError("batch: the negative-sampling table does not fit the output rows")
    if in_rows.shape[1] != out_rows.shape[1] or in_rows.dtype != np.float32 \
            or out_rows.dtype != np.float32:
        raise ValueError("batch: input and output rows must be float32 of one width")
