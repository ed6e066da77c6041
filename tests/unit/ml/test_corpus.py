"""word2vec's text side (mpips.ml.corpus) and word-vector evaluation (mpips.ml.embeddings)
against gensim's own vocabulary, subsampling and table, scipy's Spearman, and plain models."""
import importlib

import numpy as np
import pytest

from mpips.kernels.skipgram import train_batch
from mpips.ml import corpus as text
from mpips.ml import embeddings


def test_sentences_keys_blocks_and_long_lines(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a b a\n\n" + " ".join(["w"] * 25_000) + "\nb c\n")
    whole, names = text.read_sentences(path)
    assert whole.n_words == 25_005 and whole.n_sentences == 5  # 25,000 words: 3 sentences
    assert np.diff(whole.starts).tolist() == [3, 10_000, 10_000, 5_000, 2]
    assert names[text.word_key("a")] == "a" and whole.keys[0] == whole.keys[2]
    parts = [text.read_sentences(path, i, 3)[0] for i in range(3)]
    assert sum(p.n_words for p in parts) == whole.n_words
    assert text.word_key("a") == text.word_key("a") != text.word_key("A")


def test_vocabulary_subsampling_and_table_follow_gensim(tmp_path):
    gensim = importlib.import_module("gensim.models")
    datapath = importlib.import_module("gensim.test.utils").datapath
    corpus = datapath("head500.noblanks.cor")
    halves = [text.read_sentences(corpus, i, 2)[0] for i in range(2)]
    counts = [text.count_words(h) for h in halves]
    vocab = text.Vocabulary.from_counts(np.concatenate([c[0] for c in counts]),
                                        np.concatenate([c[1] for c in counts]), 5)
    model = gensim.Word2Vec(min_count=5, sample=1e-3)
    model.build_vocab(gensim.word2vec.LineSentence(corpus))
    assert vocab.size == len(model.wv) and vocab.total == sum(model.wv.get_vecattr(w, "count")
                                                             for w in model.wv.index_to_key)
    keep = vocab.keep_probabilities(1e-3)
    for word in (model.wv.index_to_key[0], "anarch", "state"):
        mine = keep[vocab.index_of(np.array([text.word_key(word)], np.uint64))[0]]
        theirs = model.wv.get_vecattr(word, "sample_int") / 2**32
        assert mine == pytest.approx(theirs, abs=1e-6)
    table = vocab.cum_table()
    assert table[-1] == text.TABLE_DOMAIN and (np.diff(table) > 0).all()
    assert (vocab.keep_probabilities(0) == 1).all()


def test_in_vocabulary_and_subsample_keep_sentence_bounds():
    keys = np.array([5, 7, 9, 5, 11, 5], np.uint64)
    sentences = text.Sentences(keys, np.array([0, 3, 6], np.int64))
    vocab = text.Vocabulary(np.array([5, 9], np.uint64), np.array([3, 1], np.int64))
    words, starts = text.in_vocabulary(sentences, vocab)
    assert words.tolist() == [0, 1, 0, 0] and starts.tolist() == [0, 2, 4]
    rng = np.random.default_rng(0)
    kept, kept_starts = text.subsample(words, starts, np.array([1.0, 0.0]), rng)
    assert kept.tolist() == [0, 0, 0] and kept_starts.tolist() == [0, 1, 3]


def test_the_kernel_refuses_nothing_the_checks_let_through_and_learns_cooccurrence():
    rng = np.random.default_rng(0)
    words = rng.integers(0, 4, 4000).astype(np.int64)
    words[1::2] = (words[::2] + 1) % 4  # word w is followed by w + 1
    starts = np.array([0, words.size], np.int64)
    in_rows = text.input_rows(np.arange(4, dtype=np.uint64), 16, 1)
    out_rows = np.zeros_like(in_rows)
    table = text.Vocabulary(np.arange(4, dtype=np.uint64), np.full(4, 10, np.int64)).cum_table()
    alphas = np.full(1, 0.05, np.float32)
    text.check_batch(words, words, starts, alphas, in_rows, out_rows, table)
    touched = np.zeros(4, np.uint8)
    pairs = train_batch(words, words, starts, alphas, in_rows, out_rows, table, 1, 2, 3,
                        touched)
    assert pairs == 2 * (words.size - 1) and touched.all()
    scores = in_rows @ out_rows.T  # context c predicts its neighbours c - 1 and c + 1
    for c in range(4):
        assert scores[c, (c + 2) % 4] < min(scores[c, (c + 1) % 4], scores[c, (c - 1) % 4])
    for bad in ((words, words[:-1], starts, alphas, in_rows, out_rows, table),
                (words + 4, words, starts, alphas, in_rows, out_rows, table),
                (words, words, np.array([0, 5], np.int64), alphas, in_rows, out_rows, table),
                (words, words, starts, alphas, in_rows, out_rows, table[:3]),
                (words, words, starts, alphas, in_rows.astype(np.float64), out_rows, table)):
        with pytest.raises(ValueError, match="^batch: "):
            text.check_batch(*bad)


def test_spearman_matches_scipy_with_ties():
    stats = importlib.import_module("scipy.stats")
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 5, 50).astype(float), rng.normal(size=50)
    assert embeddings.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert np.isnan(embeddings.spearman([1.0], [2.0]))


def test_pairs_analogies_and_export(tmp_path):
    words = ["king", "queen", "man", "woman", "apple"]
    vectors = np.array([[1, 1, 0], [1, -1, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], np.float32)
    wv = embeddings.WordVectors(words, vectors)
    pairs = tmp_path / "p.tsv"
    pairs.write_text("# comment\nKing\tqueen\t8\nking\tman\t6\nking\tapple\t1\nx\ty\t3\n")
    got = embeddings.evaluate_pairs(wv, embeddings.read_word_pairs(pairs))
    # cosines 0, 0.71 and 0 against scores 8, 6 and 1: ranks 1.5, 3, 1.5 against 3, 2, 1
    assert got["pairs"] == 3 and got["oov_share"] == 0.25
    assert got["spearman"] == pytest.approx(0.0, abs=1e-12)
    questions = tmp_path / "q.txt"
    questions.write_text(": royal\nman king woman queen\nman king woman apple\nx y z w\n")
    got = embeddings.evaluate_analogies(wv, embeddings.read_analogies(questions))
    assert got == {"accuracy": 0.5, "questions": 2, "oov_share": 1 / 3}
    out = tmp_path / "v.txt"
    embeddings.write_word2vec_text(wv, out)
    keyed = importlib.import_module("gensim.models").KeyedVectors.load_word2vec_format(str(out))
    np.testing.assert_array_equal(keyed["queen"], vectors[1])
    (tmp_path / "bad.tsv").write_text("a b\n")
    with pytest.raises(ValueError, match="bad.tsv:1: expected 'word1 word2 score'"):
        embeddings.read_word_pairs(tmp_path / "bad.tsv")
