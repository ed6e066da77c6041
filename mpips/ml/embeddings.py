"""Word vectors: scoring them on word-pair similarity and analogy files, and writing them in
the word2vec text format (what gensim's ``KeyedVectors.load_word2vec_format`` reads). Pure
module (NumPy).

Words are compared case-insensitively (lower-cased), as gensim's evaluations do by default.
A similarity file holds ``word1 word2 score`` per line (tabs or spaces; ``#`` comments), e.g.
WordSim-353; the score is the Spearman rank correlation between the file's scores and the
vectors' cosines over the pairs whose words both have vectors, next to the share of pairs
that did not (out of vocabulary). An analogy file holds ``a b c d`` per line in sections
starting with ``:`` (questions-words.txt); a question counts when its four words have vectors,
and is right when ``d`` is the nearest word by cosine to ``b - a + c`` among the others.
"""
from __future__ import annotations

import os

import numpy as np


class WordVectors:
    """``words`` (list of str) and their vectors (float32 rows); lookups lower-cased, the
    first of several words equal but for case winning (words come most frequent first)."""

    def __init__(self, words: list[str], vectors: np.ndarray):
        if len(words) != vectors.shape[0]:
            raise ValueError(f"{len(words)} words for {vectors.shape[0]} vectors")
        self.words, self.vectors = list(words), np.asarray(vectors, np.float32)
        self.index: dict[str, int] = {}
        for n, word in enumerate(self.words):
            self.index.setdefault(word.lower(), n)
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self.unit = self.vectors / np.where(norms > 0, norms, 1.0)

    def __contains__(self, word: str) -> bool:
        return word.lower() in self.index

    def similarity(self, a: str, b: str) -> float:
        return float(self.unit[self.index[a.lower()]] @ self.unit[self.index[b.lower()]])


def spearman(x, y) -> float:
    """Spearman's rank correlation (ties share their mean rank); nan for fewer than 2."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 2:
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denominator) if denominator else float("nan")


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, np.float64)
    ranks[order] = np.arange(1, values.size + 1)
    unique, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / np.bincount(inverse))[inverse]


def read_word_pairs(path) -> list[tuple[str, str, float]]:
    """(word1, word2, score) of each line of a similarity file; ValueError naming
    ``path:line`` for a line that is not two words and a number."""
    pairs = []
    with open(os.fspath(path), encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            try:
                if len(fields) != 3:
                    raise ValueError
                pairs.append((fields[0], fields[1], float(fields[2])))
            except ValueError:
                raise ValueError(f"{path}:{number}: expected 'word1 word2 score', got "
                                 f"{line.strip()[:60]!r}") from None
    return pairs


def evaluate_pairs(vectors: WordVectors, pairs) -> dict:
    """Spearman correlation of the scores and cosines of the pairs both of whose words have
    vectors ("spearman", nan below 2 such pairs), how many ("pairs"), and the share of pairs
    out of vocabulary ("oov_share")."""
    gold, model = [], []
    for a, b, score in pairs:
        if a in vectors and b in vectors:
            gold.append(score)
            model.append(vectors.similarity(a, b))
    oov = len(pairs) - len(gold)
    return {"spearman": spearman(gold, model), "pairs": len(gold),
            "oov_share": oov / len(pairs) if pairs else 0.0}


def read_analogies(path) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """[(section, [(a, b, c, d), ...]), ...] of an analogy file; ValueError naming
    ``path:line`` for a line that is not four words."""
    sections: list = []
    with open(os.fspath(path), encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if fields[0] == ":":
                sections.append((" ".join(fields[1:]), []))
                continue
            if len(fields) != 4:
                raise ValueError(f"{path}:{number}: expected four words, got "
                                 f"{line.strip()[:60]!r}")
            if not sections:
                sections.append(("", []))
            sections[-1][1].append(tuple(fields))
    return sections


def evaluate_analogies(vectors: WordVectors, sections) -> dict:
    """Accuracy over the questions whose four words have vectors ("accuracy", nan if none),
    their number ("questions") and the share of questions out of vocabulary ("oov_share")."""
    right = asked = total = 0
    for _, questions in sections:
        for a, b, c, d in questions:
            total += 1
            if not all(w in vectors for w in (a, b, c, d)):
                continue
            asked += 1
            ia, ib, ic = (vectors.index[w.lower()] for w in (a, b, c))
            target = vectors.unit[ib] - vectors.unit[ia] + vectors.unit[ic]
            scores = vectors.unit @ target
            scores[[ia, ib, ic]] = -np.inf
            right += int(int(np.argmax(scores)) == vectors.index[d.lower()])
    return {"accuracy": right / asked if asked else float("nan"), "questions": asked,
            "oov_share": (total - asked) / total if total else 0.0}


def write_word2vec_text(vectors: WordVectors, path) -> None:
    """``V D`` then ``word v1 ... vD`` per line (repr precision), written atomically."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(f"{len(vectors.words)} {vectors.vectors.shape[1]}\n")
        for word, row in zip(vectors.words, vectors.vectors):
            handle.write(word + " " + " ".join(repr(float(x)) for x in row) + "\n")
    os.replace(tmp, path)
