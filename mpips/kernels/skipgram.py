"""Kernel of skip-gram with negative sampling (mpips.ml.corpus, jobs/word2vec.py): one batch of
sentences trained on a worker's copies of the rows it pulled, in place, word2vec's update
order (Mikolov et al. 2013; gensim's ``fast_sentence_sg_neg``).

For each position ``i`` of a sentence, a window of ``window - b`` words on each side (``b``
uniform in [0, window)), and for each context word ``c`` in it: the input vector of ``c``
predicts its centre word (label 1) and ``negative`` words drawn from the unigram^0.75 table
(label 0, a draw equal to the centre word skipped); each prediction updates the output row
of its word at once, and the summed error updates ``c``'s input row after them.

Preconditions (checked by mpips.ml.corpus.check_batch): ``words`` int64 vocabulary indices,
``inputs`` int64 rows of ``in_rows`` per token, ``starts`` int64 sentence bounds (first 0,
last len(words)), ``cum_table`` int64 non-decreasing with a positive last entry, every
vocabulary index a row of ``out_rows``; ``alphas`` one learning rate per sentence.
"""
import numba
import numpy as np

# fastmath: the dot products and updates vectorise (float32, any summation order)
_jit = numba.njit(cache=True, nogil=True, fastmath=True)

MAX_EXP = np.float32(6.0)


@_jit
def train_batch(words, inputs, starts, alphas, in_rows, out_rows, cum_table, window, negative,
                seed, out_touched):
    """Train the batch; ``out_touched[v]`` = 1 for every output row it changed. Returns the
    number of (centre, context) pairs trained."""
    np.random.seed(seed)
    dim = in_rows.shape[1]
    work = np.empty(dim, np.float32)
    total = cum_table[-1]
    pairs = 0
    one = np.float32(1.0)
    for s in range(starts.size - 1):
        lo, hi = starts[s], starts[s + 1]
        alpha = alphas[s]
        for i in range(lo, hi):
            b = np.random.randint(0, window)
            first = max(lo, i - window + b)
            last = min(hi, i + window + 1 - b)
            centre = words[i]
            for j in range(first, last):
                if j == i:
                    continue
                pairs += 1
                row = inputs[j]
                vin = in_rows[row]
                work[:] = 0.0
                for k in range(negative + 1):
                    if k == 0:
                        target, label = centre, one
                    else:
                        target = np.searchsorted(cum_table, np.random.randint(0, total),
                                                 side="right")
                        if target == centre:
                            continue
                        label = np.float32(0.0)
                    vout = out_rows[target]
                    f = np.float32(0.0)
                    for d in range(dim):
                        f += vin[d] * vout[d]
                    if f > MAX_EXP:
                        g = (label - one) * alpha
                    elif f < -MAX_EXP:
                        g = label * alpha
                    else:
                        g = (label - one / (one + np.exp(-f))) * alpha
                    for d in range(dim):
                        work[d] += g * vout[d]
                        vout[d] += g * vin[d]
                    out_touched[target] = 1
                for d in range(dim):
                    vin[d] += work[d]
    return pairs
