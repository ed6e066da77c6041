"""word2vec: skip-gram with negative sampling over a whitespace-tokenised corpus, on the
parameter server.

    mpips launch -n 4 -- -m mpips run word2vec --servers 2 --corpus text.cor \\
        --similarity wordsim353.tsv --analogies questions-words.txt --export vectors.txt

Each worker reads its own block of the corpus's lines (one sentence or document per line)
and counts its words; the counts are summed over the launch (uint64 word keys and int64
counts, mpips.ml.corpus) and the words seen --min-count times make the vocabulary, the same
on every worker. Two sparse tables keyed by word hold the input vectors ("in", starting
uniform in +-0.5/--dim, a fixed function of the word: the table holds each vector's change
from it) and the output vectors ("out", starting at 0). Every epoch a worker subsamples
frequent words (--sample), cuts its sentences into batches of about --batch-words words, and
for each batch pulls the input rows of its words and the output rows of the vocabulary,
trains skip-gram (--window, --negative draws from unigram^0.75, the rate falling linearly
from --alpha to --min-alpha over the epochs) on its copies of them, pushes the rows' changes
(the servers add them up) and ends the step with ``kv.clock()``. Worker 0 then scores the
input vectors on --similarity (Spearman against the file's scores, and the share of pairs out
of vocabulary) and --analogies files, writes them in the word2vec text format (--export, what
gensim's ``KeyedVectors.load_word2vec_format`` reads), and prints the metrics as one JSON line,
the last line of stdout.

--corpus takes a text file or the .h5 data file ``mpips data convert --kind corpus`` makes of
it, of which a worker reads only its block of lines (the text's block: the same training).
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np
from mpi4py import MPI

from mpips.errors import UsageError
from mpips.jobs.runtime import gather_floats, max_over_workers, out_of_bounds
from mpips.kernels.skipgram import train_batch
from mpips.ml import corpus as text
from mpips.ml import embeddings
from mpips.ml.csr_file import is_data_file, open_data
from mpips.mpi.agree import everywhere

OPTION_BOUNDS = (("--dim", 1, True), ("--window", 1, True), ("--min-count", 1, True),
                 ("--negative", 0, True), ("--sample", 0.0, True), ("--alpha", 0.0, False),
                 ("--min-alpha", 0.0, True), ("--epochs", 1, True), ("--batch-words", 1, True),
                 ("--seed", 0, True))
"""Lower bounds of the numeric options (runtime.out_of_bounds)."""


def add_arguments(parser) -> None:
    """The job's command-line options (added to ``mpips run word2vec``'s parser)."""
    parser.add_argument("--corpus", metavar="PATH", required=True,
                        help="text file, one sentence or document per line, words separated "
                             "by whitespace, or the .h5 data file 'mpips data convert --kind "
                             "corpus' makes of it")
    parser.add_argument("--dim", type=int, default=100, help="vector size (default 100)")
    parser.add_argument("--window", type=int, default=5,
                        help="largest distance between a word and its context (default 5)")
    parser.add_argument("--min-count", type=int, default=5,
                        help="ignore words seen fewer times (default 5)")
    parser.add_argument("--negative", type=int, default=5, help="negative draws (default 5)")
    parser.add_argument("--sample", type=float, default=1e-3,
                        help="subsampling threshold of frequent words (default 0.001; 0: off)")
    parser.add_argument("--alpha", type=float, default=0.025, help="first learning rate")
    parser.add_argument("--min-alpha", type=float, default=0.0001, help="last learning rate")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-words", type=int, default=10_000,
                        help="words per worker per step (default 10000, gensim's batch_words)")
    parser.add_argument("--seed", type=int, default=1, help="vectors, subsampling and draws")
    parser.add_argument("--consistency", choices=("bsp", "async"), default="async",
                        help="consistency model of the tables (default async, as Hogwild)")
    parser.add_argument("--similarity", metavar="FILE", action="append", default=[],
                        help="word-pair similarity file to score (repeatable)")
    parser.add_argument("--analogies", metavar="FILE", action="append", default=[],
                        help="analogy file (questions-words.txt layout) to score (repeatable)")
    parser.add_argument("--export", metavar="PATH", default=None,
                        help="write the vectors here in the word2vec text format")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def main(ps, args) -> dict | None:
    """Train and evaluate. Collective over the launch; returns the metrics on worker 0.
    UsageError on every rank, before training, for bad options or unreadable files."""
    started = time.perf_counter()
    problems = out_of_bounds(args, OPTION_BOUNDS)
    if args.min_alpha > args.alpha:
        problems.append(f"--min-alpha {args.min_alpha} is above --alpha {args.alpha}")
    if problems:
        raise UsageError("; ".join(problems))
    everywhere(ps.comm, lambda: _check_files(args))
    sentences = read_part(args.corpus, ps.worker_rank, ps.num_workers) \
        if ps.is_worker else text.Sentences(np.empty(0, np.uint64), np.zeros(1, np.int64))
    vocab = merged_vocabulary(ps.comm, sentences, args.min_count)
    if vocab.size == 0:  # the same vocabulary on every rank: refused alike
        raise UsageError(f"--corpus {args.corpus}: no word is seen --min-count "
                         f"{args.min_count} times")
    tables = (ps.sparse_table("in", width=args.dim, rule="sum", consistency=args.consistency),
              ps.sparse_table("out", width=args.dim, rule="sum", consistency=args.consistency))
    result = ps.run(lambda kv: train_and_evaluate(kv, tables, sentences, vocab, args))
    if result is not None:
        result.update(servers=ps.num_servers, seconds=time.perf_counter() - started)
        print(json.dumps(result), flush=True)
    return result


def _check_files(args) -> None:
    for option, path in [("--corpus", args.corpus)] + [
            ("--similarity", p) for p in args.similarity] + [
            ("--analogies", p) for p in args.analogies]:
        if not os.path.isfile(path):
            raise UsageError(f"{option} {path}: " + ("a directory, not a file"
                                                      if os.path.isdir(path) else "no such file"))
    if is_data_file(args.corpus):  # its attributes and shapes, before any rank reads rows
        open_data(args.corpus, kind="corpus").close()
    try:  # a malformed line is the user's: one line naming it
        for path in args.similarity:
            embeddings.read_word_pairs(path)
        for path in args.analogies:
            embeddings.read_analogies(path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def read_part(path, index: int, count: int) -> text.Sentences:
    """Block ``index`` of ``count`` of the corpus's lines, from the text or from its data file
    (only those rows: the same Sentences)."""
    if not is_data_file(path):
        return text.read_sentences(path, index, count)[0]
    with open_data(path, kind="corpus") as data:
        return data.read_part(index, count, words=False)[0]


def word_names(path, keys: np.ndarray) -> dict:
    """{key: word} of (at least) ``keys``, from the corpus text or its data file."""
    if not is_data_file(path):
        return text.read_sentences(path)[1]
    with open_data(path, kind="corpus") as data:
        return data.words(keys)


def train_and_evaluate(kv, tables, sentences: text.Sentences, vocab: text.Vocabulary,
                       args) -> dict | None:
    """A worker's whole job: train ``args.epochs`` epochs over its ``sentences``, then worker
    0 scores."""
    comm = kv.worker_comm
    words, starts = text.in_vocabulary(sentences, vocab)
    keep, cum_table = vocab.keep_probabilities(args.sample), vocab.cum_table()
    mine = np.array([max(1, math.ceil(words.size / args.batch_words))], np.int64)
    steps = int(kv.collective(lambda c: max_over_workers(c, mine))[0])
    began, trained = time.perf_counter(), 0
    for epoch in range(args.epochs):
        epoch_began = time.perf_counter()
        rng = np.random.default_rng([args.seed, comm.Get_rank(), epoch])
        kept, kept_starts = text.subsample(words, starts, keep, rng)
        pairs = 0
        for step, (lo, hi) in enumerate(_batches(kept_starts, steps)):
            progress = (epoch + step / steps) / args.epochs
            alpha = args.alpha - (args.alpha - args.min_alpha) * progress
            pairs += train_step(kv, tables, vocab, kept, kept_starts[lo:hi + 1], alpha,
                                cum_table, args, rng)
            kv.clock()
        trained += sentences.n_words
        if comm.Get_rank() == 0 and not args.quiet:
            rate = sentences.n_words * comm.Get_size() / (time.perf_counter() - epoch_began)
            print(f"epoch {epoch + 1}/{args.epochs}  pairs {pairs:,}  words/s about "
                  f"{rate:,.0f}", flush=True)
    seconds = time.perf_counter() - began
    runs = kv.collective(lambda c: gather_floats(c, [seconds, trained]))
    if comm.Get_rank() != 0:
        return None
    result = evaluate(kv, tables, vocab, args)
    result.update(epochs=args.epochs, workers=kv.num_workers, dim=args.dim,
                  window=args.window, negative=args.negative, min_count=args.min_count,
                  sample=args.sample, consistency=args.consistency,
                  corpus_words=int(runs[:, 1].sum() / args.epochs),
                  words_per_s=float(runs[:, 1].sum() / max(runs[:, 0].max(), 1e-9)))
    return result


def merged_vocabulary(comm, sentences: text.Sentences, min_count: int) -> text.Vocabulary:
    """Every rank's word counts summed (servers count none), words below ``min_count``
    dropped: the same Vocabulary on every rank. Collective over ``comm`` (Allgatherv of
    uint64 keys and int64 counts: no pickling)."""
    keys, counts = text.count_words(sentences)
    sizes = np.empty(comm.Get_size(), np.int64)
    comm.Allgather(np.array([keys.size], np.int64), sizes)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    all_keys = np.empty(int(sizes.sum()), np.uint64)
    all_counts = np.empty(int(sizes.sum()), np.int64)
    comm.Allgatherv(keys, [all_keys, sizes, offsets, MPI.UINT64_T])
    comm.Allgatherv(counts, [all_counts, sizes, offsets, MPI.INT64_T])
    return text.Vocabulary.from_counts(all_keys, all_counts, min_count)


def _batches(starts: np.ndarray, count: int) -> list[tuple[int, int]]:
    """``count`` runs of whole sentences, (first, past-last sentence), of nearly equal word
    counts (some empty when there are fewer sentences)."""
    targets = np.linspace(0, starts[-1], count + 1)
    cuts = np.searchsorted(starts, targets, side="left")
    cuts[0], cuts[-1] = 0, starts.size - 1
    cuts = np.maximum.accumulate(np.minimum(cuts, starts.size - 1))
    return [(int(cuts[k]), int(cuts[k + 1])) for k in range(count)]


def train_step(kv, tables, vocab: text.Vocabulary, words: np.ndarray, starts: np.ndarray,
               alpha: float, cum_table: np.ndarray, args, rng) -> int:
    """Train one batch (``starts``: its sentences' bounds into ``words``) on copies of the rows
    it needs and push their changes; returns the pairs trained."""
    lo, hi = int(starts[0]), int(starts[-1])
    if hi - lo < 2:
        return 0
    batch = words[lo:hi]
    used, inputs = np.unique(batch, return_inverse=True)
    in_keys = vocab.keys[used]
    pulls = kv.pull(tables[0], in_keys), kv.pull(tables[1], vocab.keys)
    in_rows = kv.wait(pulls[0]) + text.input_rows(in_keys, args.dim, args.seed)
    out_rows = kv.wait(pulls[1])
    in_before, out_before = in_rows.copy(), out_rows.copy()
    local_starts = (starts - lo).astype(np.int64)
    alphas = np.full(local_starts.size - 1, alpha, np.float32)
    inputs = inputs.astype(np.int64)
    text.check_batch(batch, inputs, local_starts, alphas, in_rows, out_rows, cum_table)
    touched = np.zeros(vocab.size, np.uint8)
    pairs = train_batch(batch, inputs, local_starts, alphas, in_rows, out_rows, cum_table,
                        args.window, args.negative, int(rng.integers(2**31)), touched)
    changed = np.flatnonzero(touched)
    pushes = (kv.push(tables[0], in_keys, in_rows - in_before),
              kv.push(tables[1], vocab.keys[changed], out_rows[changed] - out_before[changed]))
    for ts in pushes:
        kv.wait(ts)
    return int(pairs)


def evaluate(kv, tables, vocab: text.Vocabulary, args) -> dict:
    """Worker 0: the input vectors of the vocabulary, most frequent first, scored on the
    similarity and analogy files and exported."""
    pulled = kv.wait(kv.pull(tables[0], vocab.keys))  # sorted keys
    order = np.argsort(-vocab.counts, kind="stable")
    keys = vocab.keys[order]
    vectors = pulled[order] + text.input_rows(keys, args.dim, args.seed)
    names = word_names(args.corpus, keys)
    wv = embeddings.WordVectors([names[int(k)] for k in keys], vectors)
    result = {"vocabulary": vocab.size, "similarity": {}, "analogies": {}}
    for path in args.similarity:
        result["similarity"][os.path.basename(path)] = embeddings.evaluate_pairs(
            wv, embeddings.read_word_pairs(path))
    for path in args.analogies:
        result["analogies"][os.path.basename(path)] = embeddings.evaluate_analogies(
            wv, embeddings.read_analogies(path))
    if args.export:
        embeddings.write_word2vec_text(wv, args.export)
        result["export"] = args.export
    return result
