"""Offline fitting of the frozen text model shipped as ``news_lsa64.npz``.

This runs once, by hand, never in the service: its output is a release artefact.  It needs the
``wordfreq`` package (general English word frequencies) and the public BBC news corpus, neither of
which the service itself depends on::

    uv pip install --target /tmp/wordfreq wordfreq
    PYTHONPATH=/tmp/wordfreq .venv/bin/python -m services.related.model_fit

What it fits, and why on half of the corpus: the latent projection is learned from the articles
whose name hashes to an even CRC-32 (about half of them), so the other half stays unseen and the
quality test can report precision on articles the model never saw next to the overall figure.
Only word weights and projection coefficients are stored, never article text.
"""

from __future__ import annotations

import importlib
import math
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from services.related.textvec import MODEL_PATH, TITLE_REPEAT, term_weight, tokens

DIMS = 64
WEIGHT_LIST_SIZE = 80_000  # most frequent English words whose frequency is shipped
MIN_DOC_FREQ = 2  # a word seen in one article only cannot teach co-occurrence


def in_fitting_half(name: str) -> bool:
    """The deterministic half of the corpus the projection is fitted on."""
    return zlib.crc32(name.encode()) % 2 == 0


def _join(words: list[str]) -> npt.NDArray[np.uint8]:
    return np.frombuffer("\n".join(words).encode("utf-8"), dtype=np.uint8)


def fit(texts: list[tuple[str, str]], zipf_of: Any, top_words: list[str]) -> dict[str, npt.NDArray[Any]]:
    """Fit the projection on (title, body) pairs; returns the arrays stored in the model file."""
    from scipy.sparse import csr_matrix
    from sklearn.decomposition import TruncatedSVD

    bags: list[Counter[str]] = []
    seen: set[tuple[str, str]] = set()
    for title, body in texts:
        if (title, body) in seen:  # exact duplicates would count their words twice
            continue
        seen.add((title, body))
        bag = Counter(tokens(body))
        for term in tokens(title):
            bag[term] += TITLE_REPEAT
        bags.append(bag)
    doc_freq: Counter[str] = Counter()
    for bag in bags:
        doc_freq.update(bag.keys())
    vocab_words = sorted(t for t, n in doc_freq.items() if n >= MIN_DOC_FREQ)
    vocab = {t: i for i, t in enumerate(vocab_words)}
    zipf = {t: float(zipf_of(t, "en")) for t in sorted(set(top_words) | set(vocab_words))}
    indices: list[int] = []
    values: list[float] = []
    indptr = [0]
    for bag in bags:
        for term, count in bag.items():
            if term in vocab:
                indices.append(vocab[term])
                values.append(math.sqrt(count) * term_weight(zipf[term]))
        indptr.append(len(indices))
    matrix = csr_matrix((values, indices, indptr), shape=(len(bags), len(vocab)), dtype=np.float64)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    matrix = csr_matrix(matrix.multiply(1.0 / norms[:, None]))
    svd = TruncatedSVD(DIMS, n_iter=10, random_state=0).fit(matrix)
    weight_words = sorted(zipf)
    return {
        "weight_words": _join(weight_words),
        "weight_zipf": np.asarray([round(zipf[w] * 100) for w in weight_words], dtype=np.uint16),
        "vocab_words": _join(vocab_words),
        "projection": svd.components_.T.astype(np.float32),
    }


def main(out: Path = MODEL_PATH) -> None:
    from bench.corpus_bbc import load_bbc

    wordfreq = importlib.import_module("wordfreq")
    articles = [a for a in load_bbc() if in_fitting_half(a.name)]
    arrays = fit(
        [(a.title, a.text) for a in articles],
        wordfreq.zipf_frequency,
        list(wordfreq.top_n_list("en", WEIGHT_LIST_SIZE)),
    )
    np.savez_compressed(out, allow_pickle=False, **arrays)
    print(f"fitted on {len(articles)} articles -> {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
