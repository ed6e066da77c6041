"""Ratings for matrix factorization: (user, item, rating) triples read from a MovieLens-layout
file or generated from a known low-rank model. Pure module (NumPy).

A file holds one rating per line, ``user item rating [timestamp]``, fields separated by tabs
or spaces (MovieLens 100k's ``u.data``; ``::`` as in MovieLens 1M/10M works too). User and item
ids are non-negative integers (any size up to 2**64 - 1: they are the tables' keys); the
rating is a finite number; blank lines and lines starting with ``#`` are skipped. Any other
line raises RatingsFormatError ``path:line: what``.

``make_ratings`` draws users and items with a heavy tail (a few users rate a lot, a few items
are rated by everybody, as in real rating data), and ratings from ``mu + b_u + b_i + p_u . q_i``
with a planted rank plus Gaussian noise, clipped to [1, 5].
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import RatingsFormatError


@dataclass(frozen=True, eq=False)
class RatingSet:
    """``users`` and ``items`` uint64 ids, ``ratings`` float32, one entry per rating."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray

    def __post_init__(self):
        set_field = object.__setattr__
        set_field(self, "users", np.ascontiguousarray(self.users, np.uint64))
        set_field(self, "items", np.ascontiguousarray(self.items, np.uint64))
        set_field(self, "ratings", np.ascontiguousarray(self.ratings, np.float32))
        if not self.users.shape == self.items.shape == self.ratings.shape \
                or self.users.ndim != 1:
            raise ValueError(f"users {self.users.shape}, items {self.items.shape} and ratings "
                             f"{self.ratings.shape} must be 1-D of one length")

    @property
    def n(self) -> int:
        return int(self.ratings.size)

    def take(self, index) -> "RatingSet":
        return RatingSet(self.users[index], self.items[index], self.ratings[index])

    def split(self, test_fraction: float, seed: int) -> tuple["RatingSet", "RatingSet"]:
        """Shuffle with ``seed`` and cut into (train, test); the test part gets
        ``round(test_fraction * n)`` ratings. Same seed, same split, on every rank."""
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
        order = np.random.default_rng(seed).permutation(self.n)
        cut = int(round(test_fraction * self.n))
        return self.take(order[cut:]), self.take(order[:cut])

    def shard(self, index: int, count: int) -> "RatingSet":
        """The ``index``-th of ``count`` contiguous, nearly equal parts."""
        bounds = np.linspace(0, self.n, count + 1).astype(np.int64)
        return self.take(slice(bounds[index], bounds[index + 1]))

    def batches(self, count: int) -> list["RatingSet"]:
        """``count`` contiguous batches of nearly equal size (some empty if n < count)."""
        bounds = np.linspace(0, self.n, count + 1).astype(np.int64)
        return [self.take(slice(bounds[k], bounds[k + 1])) for k in range(count)]


def read_ratings(path) -> RatingSet:
    """Read a ratings file (see the module docstring). RatingsFormatError for the first bad
    line, naming its number and what is wrong."""
    path = os.fspath(path)
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise RatingsFormatError(f"{path}:{line}: bytes that are not UTF-8 text") from None
    users, items, ratings, numbers = [], [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.replace("::", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (3, 4):
            raise RatingsFormatError(f"{path}:{number}: expected 'user item rating "
                                     f"[timestamp]', got {len(fields)} field(s): {line[:60]!r}")
        users.append(fields[0])
        items.append(fields[1])
        ratings.append(fields[2])
        numbers.append(number)
    return RatingSet(_ids(path, users, numbers, "user"), _ids(path, items, numbers, "item"),
                     _ratings(path, ratings, numbers))


def _ids(path: str, texts: list[str], numbers: list[int], what: str) -> np.ndarray:
    """Non-negative integer ids below 2**64 as uint64."""
    ok = np.fromiter((t.isdigit() and len(t) <= 20 for t in texts), bool, len(texts))
    if ok.all():
        values = [int(t) for t in texts]
        big = [k for k, v in enumerate(values) if v >= 2**64]
        if not big:
            return np.array(values, np.uint64)
        ok[big[0]] = False
    k = int(np.argmin(ok))
    raise RatingsFormatError(f"{path}:{numbers[k]}: {what} id {texts[k]!r} is not an integer "
                             f"in [0, 2**64)")


def _ratings(path: str, texts: list[str], numbers: list[int]) -> np.ndarray:
    """Finite float32 ratings."""
    out = np.empty(len(texts), np.float32)
    for k, text in enumerate(texts):
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value) or abs(value) > 3e38:
            raise RatingsFormatError(f"{path}:{numbers[k]}: rating {text!r} is not a finite "
                                     f"number")
        out[k] = value
    return out


def write_ratings(ratings: RatingSet, path) -> None:
    """Write ``user<TAB>item<TAB>rating`` lines (what read_ratings reads back)."""
    with open(path, "w") as handle:
        for u, i, r in zip(ratings.users.tolist(), ratings.items.tolist(),
                           ratings.ratings.tolist()):
            handle.write(f"{u}\t{i}\t{r!r}\n")


@dataclass(frozen=True, eq=False)
class PlantedRatings:
    """Generated ratings and the model that made them (``user_factors`` per user id 0..U-1,
    ``item_factors``, biases, ``mu``, ``noise``)."""

    data: RatingSet
    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray
    mu: float
    noise: float


def make_ratings(n: int, users: int = 2000, items: int = 1000, rank: int = 5,
                 noise: float = 0.3, seed: int = 0, zipf: float = 1.1) -> PlantedRatings:
    """``n`` ratings (distinct (user, item) pairs as far as the draws allow) from a planted
    rank-``rank`` model plus N(0, ``noise``) noise, clipped to [1, 5]; users and items drawn
    with popularity proportional to 1 / (rank + 1) ** ``zipf`` over a random order."""
    for name, value in (("n", n), ("users", users), ("items", items), ("rank", rank)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    rng = np.random.default_rng(seed)
    user_weights = _popularity(users, zipf, rng)
    item_weights = _popularity(items, zipf, rng)
    u = rng.choice(users, n, p=user_weights).astype(np.uint64)
    i = rng.choice(items, n, p=item_weights).astype(np.uint64)
    scale = 0.8 / np.sqrt(rank)
    p = rng.normal(0.0, scale, (users, rank))
    q = rng.normal(0.0, scale, (items, rank))
    bu, bi = rng.normal(0.0, 0.4, users), rng.normal(0.0, 0.4, items)
    mu = 3.5
    ui, ii = u.astype(np.int64), i.astype(np.int64)
    clean = mu + bu[ui] + bi[ii] + np.einsum("nk,nk->n", p[ui], q[ii])
    ratings = np.clip(clean + rng.normal(0.0, noise, n), 1.0, 5.0)
    return PlantedRatings(RatingSet(u, i, ratings), p, q, bu, bi, mu, noise)


def _popularity(count: int, zipf: float, rng) -> np.ndarray:
    weights = 1.0 / np.arange(1, count + 1) ** zipf
    rng.shuffle(weights)
    return weights / weights.sum()
