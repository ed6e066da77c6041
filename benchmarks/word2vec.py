"""word2vec: words per second and WordSim-353 Spearman of ``mpips run word2vec`` next to gensim
with one worker thread and to the same skip-gram kernel in one process, on one corpus in one
run.

    python benchmarks/word2vec.py                   # gensim's head500 corpus, 4 ranks
    python benchmarks/word2vec.py --seeds 1 --out ''

The corpus and pair file default to those bundled in gensim's tests
(``head500.noblanks.cor``, ``wordsim353.tsv``). Everything uses gensim's hyperparameters
``sg=1, vector_size=100, window=5, min_count=5, negative=5, sample=1e-3, epochs=5``:

- gensim: ``Word2Vec(LineSentence(corpus), workers=1, seed=s, ...)``, timed around the
  constructor (vocabulary and training); words/s = corpus words x epochs / seconds;
- mpips: ``mpips launch -n --ranks -- -m mpips run word2vec --servers --servers ...``, its own
  words/s (corpus words x epochs over the slowest worker's training time);
- kernel: ``mpips.kernels.skipgram.train_batch`` over the whole subsampled corpus each epoch
  in one process (rows in local arrays): one core's compute, no messages.

Each system runs --seeds seeds; one JSON object per run, then a summary (means), appended to
--out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from jsonlines import emit  # noqa: E402  (benchmarks/jsonlines.py, next to this script)

PARAMS = {"dim": 100, "window": 5, "min_count": 5, "negative": 5, "sample": 1e-3, "epochs": 5}


def test_data(name: str) -> str:
    from gensim.test.utils import datapath

    return datapath(name)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default=None, help="default: gensim's head500.noblanks.cor")
    p.add_argument("--pairs", default=None, help="default: gensim's wordsim353.tsv")
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--servers", type=int, default=1)
    p.add_argument("--batch-words", type=int, default=10_000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "word2vec.jsonl"),
                   help="JSON-lines file the results are appended to ('' for none)")
    args = p.parse_args(argv)
    args.corpus = args.corpus or test_data("head500.noblanks.cor")
    args.pairs = args.pairs or test_data("wordsim353.tsv")
    return args


def run_gensim(args, seed: int) -> dict:
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    began = time.perf_counter()
    model = Word2Vec(LineSentence(args.corpus), sg=1, vector_size=PARAMS["dim"],
                     window=PARAMS["window"], min_count=PARAMS["min_count"],
                     negative=PARAMS["negative"], sample=PARAMS["sample"],
                     epochs=PARAMS["epochs"], workers=1, seed=seed)
    seconds = time.perf_counter() - began
    _, spearman, oov = model.wv.evaluate_word_pairs(args.pairs)
    return {"system": "gensim", "seed": seed, "words_per_s":
            model.corpus_total_words * PARAMS["epochs"] / seconds, "seconds": seconds,
            "spearman": float(spearman.statistic), "oov_share": oov / 100,
            "vocabulary": len(model.wv), "threads": 1}


def run_mpips(args, seed: int) -> dict:
    command = [sys.executable, "-m", "mpips", "launch", "-n", str(args.ranks), "--", "-m",
               "mpips", "run", "word2vec", "--servers", str(args.servers), "--corpus",
               args.corpus, "--similarity", args.pairs, "--batch-words", str(args.batch_words),
               "--seed", str(seed), "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                          cwd=REPO_ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"mpips run word2vec failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    pairs = result["similarity"][os.path.basename(args.pairs)]
    return {"system": "mpips", "seed": seed, "words_per_s": result["words_per_s"],
            "spearman": pairs["spearman"], "oov_share": pairs["oov_share"],
            "vocabulary": result["vocabulary"], "servers": result["servers"],
            "workers": result["workers"], "batch_words": args.batch_words}


def run_kernel(args, seed: int) -> dict:
    from mpips.kernels.skipgram import train_batch
    from mpips.ml import corpus as text

    sentences, _ = text.read_sentences(args.corpus)
    keys, counts = text.count_words(sentences)
    vocab = text.Vocabulary.from_counts(keys, counts, PARAMS["min_count"])
    words, starts = text.in_vocabulary(sentences, vocab)
    in_rows = text.input_rows(vocab.keys, PARAMS["dim"], seed)
    out_rows = np.zeros_like(in_rows)
    keep, table = vocab.keep_probabilities(PARAMS["sample"]), vocab.cum_table()
    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    for epoch in range(PARAMS["epochs"]):
        kept, kept_starts = text.subsample(words, starts, keep, rng)
        alpha = 0.025 - (0.025 - 0.0001) * epoch / PARAMS["epochs"]
        train_batch(kept, kept, kept_starts, np.full(kept_starts.size - 1, alpha, np.float32),
                    in_rows, out_rows, table, PARAMS["window"], PARAMS["negative"], seed,
                    np.zeros(vocab.size, np.uint8))
    seconds = time.perf_counter() - began
    return {"system": "kernel", "seed": seed, "seconds": seconds,
            "words_per_s": sentences.n_words * PARAMS["epochs"] / seconds, "processes": 1}


def main(argv=None) -> int:
    args = parse_args(argv)
    common = {"corpus": os.path.basename(args.corpus), **PARAMS, "ranks": args.ranks}
    rows = []
    for seed in range(1, args.seeds + 1):
        for run in (run_gensim, run_mpips, run_kernel):
            row = {**common, **run(args, seed)}
            rows.append(row)
            emit([row], args.out)

    def mean(system, field):
        return float(np.mean([r[field] for r in rows if r["system"] == system]))

    summary = {"system": "summary", **common, "seeds": args.seeds,
               "gensim_words_per_s": mean("gensim", "words_per_s"),
               "mpips_words_per_s": mean("mpips", "words_per_s"),
               "kernel_words_per_s": mean("kernel", "words_per_s"),
               "gensim_spearman": mean("gensim", "spearman"),
               "mpips_spearman": mean("mpips", "spearman")}
    summary["spearman_difference"] = summary["mpips_spearman"] - summary["gensim_spearman"]
    summary["mpips_over_gensim"] = summary["mpips_words_per_s"] / summary["gensim_words_per_s"]
    summary["goal_spearman_within_0_03"] = abs(summary["spearman_difference"]) <= 0.03
    summary["goal_rate_at_least_gensim"] = summary["mpips_over_gensim"] >= 1.0
    emit([summary], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
