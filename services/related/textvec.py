"""Turning an article's text into the fixed vectors the related-articles engine compares.

Why these vectors
-----------------
The engine must give exactly the same links whether an article arrived first or last, so a
document's vector may depend on nothing but the document and a model that does not move while the
archive grows.  A TF-IDF weighting refitted on the live archive would change every stored vector
with each publish, so it is ruled out.  Two things are used instead, both frozen and shipped as
``news_lsa64.npz`` next to this module:

* term weights from general English word frequencies (a public word-frequency list covering
  encyclopaedia, news, books, subtitles and web text): ``weight = max(9 - zipf, 0.5)``, where zipf
  is log10 of occurrences per billion words; words absent from the list are treated as rare.  This
  plays the part of an IDF without ever looking at the archive, and on news it ranks as well as an
  IDF fitted on the archive itself.
* a 64-dimensional latent semantic projection (truncated SVD of ``sqrt(tf) * weight`` vectors) fitted
  once, offline, on half of a public news corpus and frozen.  Comparing articles in this space
  matches "tariff" with "import duties" and scores topic agreement better than raw term overlap.
  How the file is made is in :mod:`services.related.model_fit`; refitting it is a deliberate
  release, after which the service rebuilds its index.

Exact arithmetic
----------------
Vectors are L2-normalised and quantised to small integers stored as float32.  Every dot product of
two such vectors is then an integer below 2**24, which float32 represents exactly, so the result does
not depend on the order BLAS sums in, on batch shapes or on which side is the query: score(a, b) is
bit-identical to score(b, a) on every code path.  That is what lets incremental updates equal a full
recomputation exactly.

A second, independent vector (a signed feature-hashing sketch of all terms, not just the model's
vocabulary) serves the near-duplicate rule: two texts are near-duplicates when the cosine of their
sketches exceeds 0.9.  Identical texts have identical sketches (cosine 1); the sketch's estimate
of the true term cosine is within a few hundredths near 0.9, where it matters.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix

MODEL_PATH = Path(__file__).with_name("news_lsa64.npz")

DENSE_SCALE = 200.0  # quantisation scale: a unit vector's components become integers in [-127, 127]
SKETCH_DIMS = 128
SKETCH_SCALE = 100.0
QUANT_LIMIT = 127.0
TITLE_REPEAT = 2  # the headline counts as if written twice in the body: it names the story
UNKNOWN_ZIPF = 0.0  # a word missing from the frequency list is rarer than anything in it
WEIGHT_CEILING_ZIPF = 9.0
WEIGHT_FLOOR = 0.5

_TOKEN = re.compile(r"[a-z0-9]+")

# Common English function words, which carry no topic (the scikit-learn list, frozen here so the
# vectors cannot change with a library upgrade).
_STOP_WORDS_TEXT = """
    a about above across after afterwards again against all almost alone along already also although
    always am among amongst amoungst amount an and another any anyhow anyone anything anyway anywhere
    are around as at back be became because become becomes becoming been before beforehand behind being
    below beside besides between beyond bill both bottom but by call can cannot cant co con could
    couldnt cry de describe detail do done down due during each eg eight either eleven else elsewhere
    empty enough etc even ever every everyone everything everywhere except few fifteen fifty fill find
    fire first five for former formerly forty found four from front full further get give go had has
    hasnt have he hence her here hereafter hereby herein hereupon hers herself him himself his how
    however hundred i ie if in inc indeed interest into is it its itself keep last latter latterly least
    less ltd made many may me meanwhile might mill mine more moreover most mostly move much must my
    myself name namely neither never nevertheless next nine no nobody none noone nor not nothing now
    nowhere of off often on once one only onto or other others otherwise our ours ourselves out over own
    part per perhaps please put rather re same see seem seemed seeming seems serious several she should
    show side since sincere six sixty so some somehow someone something sometime sometimes somewhere
    still such system take ten than that the their them themselves then thence there thereafter thereby
    therefore therein thereupon these they thick thin third this those though three through throughout
    thru thus to together too top toward towards twelve twenty two un under until up upon us very via
    was we well were what whatever when whence whenever where whereafter whereas whereby wherein
    whereupon wherever whether which while whither who whoever whole whom whose why will with within
    without would yet you your yours yourself yourselves
"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_WORDS_TEXT.split())

Vector = npt.NDArray[np.float32]


def tokens(text: str) -> list[str]:
    """Lower-cased content words: letters/digits runs of 2+ characters, no stop words, no bare numbers."""
    return [t for t in _TOKEN.findall(text.lower()) if len(t) > 1 and t not in STOP_WORDS and not t.isdigit()]


def term_weight(zipf: float) -> float:
    """IDF stand-in from general word frequency: rare words say more about a story than common ones."""
    return max(WEIGHT_CEILING_ZIPF - zipf, WEIGHT_FLOOR)


def quantise_rows(vectors: npt.NDArray[np.float64], scale: float) -> Vector:
    """Normalise each row and round to integers in [-127, 127], kept as float32 so BLAS sums them exactly.

    Each row's result depends on that row alone, so a batch gives the same bits as one at a time.
    """
    norms = np.sqrt((vectors * vectors).sum(axis=1))
    factors = np.divide(scale, norms, out=np.zeros_like(norms), where=norms > 0)
    scaled = np.rint(vectors * factors[:, None])
    np.clip(scaled, -QUANT_LIMIT, QUANT_LIMIT, out=scaled)
    result: Vector = scaled.astype(np.float32)
    return result


def quantise(vector: npt.NDArray[np.float64], scale: float) -> Vector:
    """`quantise_rows` for one vector."""
    result: Vector = quantise_rows(vector[None, :], scale)[0]
    return result


_CACHE_LIMIT = 4_000_000  # distinct words remembered; beyond that new words are looked up each time


class TextModel:
    """The frozen text model: word weights and the latent projection.

    Every distinct word seen gets a small integer id; per-id arrays hold its projection row (the
    all-zero last row for words outside the model's vocabulary), its weight (0 for stop words, bare
    numbers and single characters) and its signed sketch bucket, so that turning a text into vectors
    is a handful of array operations rather than a Python loop over its words.
    """

    def __init__(self, zipf: dict[str, float], vocab: dict[str, int], projection: npt.NDArray[np.float64]) -> None:
        self.zipf = zipf
        self.vocab = vocab
        self.projection = np.vstack([projection, np.zeros((1, projection.shape[1]))])
        self._ids: dict[str, int] = {}
        self._row = np.zeros(1024, dtype=np.int64)
        self._weight = np.zeros(1024, dtype=np.float64)
        self._bucket = np.zeros(1024, dtype=np.int64)

    @property
    def dims(self) -> int:
        return int(self.projection.shape[1])

    def weight(self, term: str) -> float:
        return term_weight(self.zipf.get(term, UNKNOWN_ZIPF))

    def _learn(self, term: str) -> int:
        """Id of a word not seen before (or, past the cache limit, a scratch id)."""
        if len(self._ids) < _CACHE_LIMIT:
            new_id = len(self._ids)
            self._ids[term] = new_id
        else:
            new_id = _CACHE_LIMIT
        if new_id >= self._row.shape[0]:
            size = 2 * new_id + 1
            self._row = np.concatenate([self._row, np.zeros(size - self._row.shape[0], dtype=np.int64)])
            self._weight = np.concatenate([self._weight, np.zeros(size - self._weight.shape[0])])
            self._bucket = np.concatenate([self._bucket, np.zeros(size - self._bucket.shape[0], dtype=np.int64)])
        code = zlib.crc32(term.encode())
        ignored = len(term) < 2 or term in STOP_WORDS or term.isdigit()
        self._row[new_id] = self.vocab.get(term, len(self.vocab))
        self._weight[new_id] = 0.0 if ignored else self.weight(term)
        self._bucket[new_id] = code % SKETCH_DIMS + (SKETCH_DIMS if code & 0x80000000 else 0)
        return new_id

    def vectors(self, title: str, text: str) -> tuple[Vector, Vector]:
        """(dense topic vector, near-duplicate sketch) of one article, both quantised."""
        dense, sketch = self.vectors_batch([(title, text)])
        return dense[0], sketch[0]

    def vectors_batch(self, articles: Sequence[tuple[str, str]]) -> tuple[Vector, Vector]:
        """Dense topic vectors and near-duplicate sketches of many (title, text) pairs, row by row.

        Term value is ``sqrt(count) * weight``; the headline's words count ``TITLE_REPEAT`` extra
        times.  The sketch hashes every term (known to the model or not) into ``SKETCH_DIMS``
        buckets with a hashed sign.  All sums run per row in the row's own term order (sparse
        row-by-dense product, bin counts), so a row's bits do not depend on the rest of the batch.
        """
        ids_all: list[int] = []
        counts_all: list[int] = []
        bounds = [0]
        known = self._ids
        for title, text in articles:
            counts = Counter(_TOKEN.findall(text.lower()))
            for term in _TOKEN.findall(title.lower()):
                counts[term] += TITLE_REPEAT
            ids = list(map(known.get, counts))
            if None in ids:
                ids = [self._learn(t) if i is None else i for t, i in zip(counts, ids, strict=True)]
            ids_all.extend(ids)  # type: ignore[arg-type]
            counts_all.extend(counts.values())
            bounds.append(len(ids_all))
        n = len(articles)
        idx = np.asarray(ids_all, dtype=np.int64)
        values = np.sqrt(np.asarray(counts_all, dtype=np.float64)) * self._weight[idx]
        matrix = csr_matrix(
            (values, self._row[idx], np.asarray(bounds, dtype=np.int64)), shape=(n, self.projection.shape[0])
        )
        dense = np.asarray(matrix @ self.projection, dtype=np.float64)
        owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(bounds))
        signed = np.bincount(
            owner * (2 * SKETCH_DIMS) + self._bucket[idx], weights=values, minlength=n * 2 * SKETCH_DIMS
        ).reshape(n, 2 * SKETCH_DIMS)
        sketch = np.asarray(signed[:, :SKETCH_DIMS] - signed[:, SKETCH_DIMS:], dtype=np.float64)
        return quantise_rows(dense, DENSE_SCALE), quantise_rows(sketch, SKETCH_SCALE)


def _split_words(blob: npt.NDArray[np.uint8]) -> list[str]:
    return bytes(blob).decode("utf-8").split("\n")


@lru_cache(maxsize=2)
def load_model(path: Path = MODEL_PATH) -> TextModel:
    """Read the shipped model (no pickles: word lists are stored as newline-joined UTF-8 bytes)."""
    with np.load(path, allow_pickle=False) as data:
        weight_words = _split_words(data["weight_words"])
        zipf_values = data["weight_zipf"].astype(np.float64) / 100.0
        vocab_words = _split_words(data["vocab_words"])
        projection = data["projection"].astype(np.float64)
    return TextModel(
        zipf=dict(zip(weight_words, zipf_values.tolist(), strict=True)),
        vocab={word: i for i, word in enumerate(vocab_words)},
        projection=projection,
    )
