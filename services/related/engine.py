"""The "Check Also" engine: for every public article, the few most related other articles.

Pure and in-process: no I/O, no clocks.  The service feeds it article events and publishes the link
lists it returns.

What "related" means
--------------------
``score(a, b) = (topic + 0.25 * shared_tags + 0.10 * same_section) * recency`` where

* ``topic`` is the cosine of the two articles' frozen 64-dimensional topic vectors (headline and
  body; see :mod:`services.related.textvec` for why the vectors never drift as the archive grows),
* ``shared_tags`` is the cosine of their tag sets (subjects, keywords, places; at most
  ``MAX_TAGS`` per article, the alphabetically first),
* ``same_section`` is 1 when both carry the same non-empty section code,
* ``recency = 0.9 + 0.1 * 30 / (30 + days between the two publications)``: a mild preference for
  stories from the same period that never hides a strong older match.  It depends on the gap between
  the two articles, not on "now", so scores do not change while nothing is published.

A list holds up to ``k`` links in descending score, ties broken by guid, chosen greedily while
skipping the article itself, any version of the same story (same ``story_root``), removed articles,
scores below ``min_score`` (weak slots stay empty rather than padded), near-duplicates of the
article, and anything that is a near-duplicate of, or another version of, a link already chosen.
The same agency copy filed twice therefore never shows twice, nor next to its own twin.

Why incremental equals recomputation exactly
--------------------------------------------
Topic and sketch vectors hold small integers, so their dot products are exact in float32 whatever
the summation order; every further step is an elementwise float32 operation (correctly rounded by
IEEE 754) on symmetric inputs.  A pair's score is therefore bit-identical whichever article is the
query and whichever code path (single upsert, batched start-up, recomputation) computes it, and the
candidate relation (who may link to whom) is a fixed symmetric function of the two articles.  A new
article can only enter the lists of its own candidates, and is compared with each list's last entry;
an article that leaves (removal, or an update that changes what it scores) only affects the lists
that showed it, which are recomputed.  Hence ``links(g) == recompute_all()[g]`` after any sequence
of calls, whatever the order of arrival.

Scaling
-------
An engine created empty compares every article with every other (exact, brute force over a float32
matrix: fine to a few hundred thousand articles, a few milliseconds per upsert).
``RelatedEngine.build`` on an archive of ``EXACT_LIMIT`` articles or more partitions the topic space
into about one cell per ``DOCS_PER_PARTITION`` articles (spherical k-means fitted once at start-up,
then frozen; pass ``centroids`` to start another engine with the same cells) and files each article
under its ``probes`` nearest cells; two articles are candidates when they share a cell.  An upsert
then scores a few thousand candidates however large the archive is.  The cells are part of the
engine's definition of "related" and ``recompute_all`` uses them too, so equality still holds
exactly; compared with the exact search, a related article filed only in other cells is missed.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from services.related.textvec import DENSE_SCALE, SKETCH_DIMS, TextModel, load_model, quantise

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Scores = npt.NDArray[np.float32]

MAX_TAGS = 8
TAG_WEIGHT = 0.25
SECTION_WEIGHT = 0.10
RECENCY_WEIGHT = 0.10
RECENCY_HALF_DAYS = 30.0
NEAR_DUPLICATE = 0.9
_DUP_MEMO_SKETCHES = 32
_DUP_ASKED_SKETCHES = 4096
EXACT_LIMIT = 20_000
_ENCODE_BATCH = 1024
DOCS_PER_PARTITION = 250
_SECONDS_PER_DAY = 86_400.0
_TEXT_NORM = DENSE_SCALE * DENSE_SCALE
_NO_SCORE = -math.inf


@dataclass(frozen=True, slots=True)
class RelatedDoc:
    guid: str
    story_root: str  # first guid of an evolvedfrom chain: same root = versions of one story
    headline: str
    excerpt: str
    url_path: str
    text: str  # plain-text body
    tags: tuple[str, ...]
    section: str  # may be ""
    published_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class Link:
    guid: str
    url_path: str
    headline: str
    excerpt: str
    score: float


@dataclass(frozen=True)
class _Encoded:
    """What the engine keeps of an article: vectors and codes, never the body text."""

    guid: str
    dense: npt.NDArray[np.float32]
    sketch: npt.NDArray[np.float32]
    doc: RelatedDoc


class _Cells:
    """Inverted file over the topic space: cell -> member slots, growable, with O(1) removal."""

    def __init__(self, centroids: npt.NDArray[np.float32], probes: int) -> None:
        self.centroids = centroids
        self.probes = probes
        n = centroids.shape[0]
        self.members: list[npt.NDArray[np.int32]] = [np.empty(8, dtype=np.int32) for _ in range(n)]
        self.counts = np.zeros(n, dtype=np.int64)

    def assign(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.int32]:
        """The `probes` best cells per vector (exact integer dot products, ties to the lower cell)."""
        out = np.empty((vectors.shape[0], self.probes), dtype=np.int32)
        for start in range(0, vectors.shape[0], 4096):
            sims = vectors[start : start + 4096] @ self.centroids.T
            rows = np.arange(sims.shape[0])
            for j in range(self.probes):
                best = np.argmax(sims, axis=1)  # first maximum: ties go to the lower cell
                out[start : start + 4096, j] = best
                sims[rows, best] = -np.inf
        out.sort(axis=1)
        return out

    def add(self, slot: int, cells: npt.NDArray[np.int32], where: npt.NDArray[np.int32]) -> None:
        for j, cell in enumerate(cells.tolist()):
            count = int(self.counts[cell])
            members = self.members[cell]
            if count == members.shape[0]:
                members = np.concatenate([members, np.empty(count, dtype=np.int32)])
                self.members[cell] = members
            members[count] = slot
            where[j] = count
            self.counts[cell] = count + 1

    def discard(
        self,
        cells: npt.NDArray[np.int32],
        where: npt.NDArray[np.int32],
        positions: npt.NDArray[np.int32],
        slot_cells: npt.NDArray[np.int32],
    ) -> None:
        """Swap-remove a slot from its cells, fixing the position of the member moved into its place.

        `positions` and `slot_cells` are the engine's per-slot tables of cell positions and cells.
        """
        for cell, pos in zip(cells.tolist(), where.tolist(), strict=True):
            last = int(self.counts[cell]) - 1
            members = self.members[cell]
            moved = int(members[last])
            members[pos] = moved
            self.counts[cell] = last
            if pos != last:
                row = int(np.flatnonzero(slot_cells[moved] == cell)[0])
                positions[moved, row] = pos

    def candidates(self, cells: Iterable[int]) -> Ints:
        parts = [self.members[c][: int(self.counts[c])] for c in cells]
        return np.unique(np.concatenate(parts)).astype(np.int64) if parts else np.empty(0, dtype=np.int64)


def _fit_cells(vectors: npt.NDArray[np.float32], partitions: int, iterations: int = 8) -> npt.NDArray[np.float32]:
    """Spherical k-means with a fixed seed; centroids quantised like article vectors, then frozen.

    Callers pass the vectors in guid order, so the same archive gives the same cells whatever
    order its articles arrived in.
    """
    rng = np.random.default_rng(20050101)
    sample = vectors[rng.permutation(vectors.shape[0])[: max(partitions * 40, 10_000)]]
    centroids = sample[rng.choice(sample.shape[0], partitions, replace=False)].astype(np.float32)
    for _ in range(iterations):
        nearest = np.concatenate(
            [np.argmax(sample[i : i + 4096] @ centroids.T, axis=1) for i in range(0, sample.shape[0], 4096)]
        )
        sums = np.zeros_like(centroids)
        np.add.at(sums, nearest, sample)
        empty = ~np.isin(np.arange(partitions), nearest)
        sums[empty] = centroids[empty]
        centroids = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-9)
    return np.stack([quantise(c.astype(np.float64), DENSE_SCALE) for c in centroids])


class RelatedEngine:
    """Incrementally maintained related-article lists; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        k: int = 4,
        min_score: float = 0.3,
        model: TextModel | None = None,
        centroids: npt.NDArray[np.float32] | None = None,
        probes: int = 2,
    ) -> None:
        self.k = k
        self.min_score = min_score
        self.model = model if model is not None else load_model()
        dims = self.model.dims
        self._cells = _Cells(centroids, min(probes, centroids.shape[0])) if centroids is not None else None
        probes_used = self._cells.probes if self._cells is not None else 0
        cap = 16
        self._n = 0  # slots handed out
        self._live = 0
        self._dense = np.zeros((cap, dims), dtype=np.float32)
        self._sketch = np.zeros((cap, SKETCH_DIMS), dtype=np.int8)
        self._sketch_norm = np.zeros(cap, dtype=np.float64)
        self._days = np.zeros(cap, dtype=np.float32)  # publication time in days since the epoch
        self._section = np.full(cap, -1, dtype=np.int64)
        self._tags = np.full((cap, MAX_TAGS), -1, dtype=np.int64)
        self._tag_count = np.zeros(cap, dtype=np.int64)
        self._root = np.zeros(cap, dtype=np.int64)
        self._alive = np.zeros(cap, dtype=bool)
        self._links = np.full((cap, k), -1, dtype=np.int64)
        self._link_scores = np.full((cap, k), _NO_SCORE, dtype=np.float64)
        self._cell_of = np.zeros((cap, probes_used), dtype=np.int32)
        self._cell_pos = np.zeros((cap, probes_used), dtype=np.int32)
        self._guids: list[str] = []
        self._docs: list[RelatedDoc | None] = []
        self._slot: dict[str, int] = {}
        self._codes: dict[str, dict[str, int]] = {"section": {}, "tag": {}, "story": {}}
        self._dup_memo: dict[bytes, npt.NDArray[np.int8]] | None = None
        """While every list is computed at once: near-duplicate answers per sketch (see `_near_duplicates_of`)."""
        self._dup_asked: dict[bytes, None] = {}
        """Sketches that asked once during that computation: the second question starts a memo entry."""

    # ------------------------------------------------------------------ public API

    @classmethod
    def build(
        cls,
        docs: Iterable[RelatedDoc],
        *,
        k: int = 4,
        min_score: float = 0.3,
        partitions: int | None = None,
        probes: int = 2,
        model: TextModel | None = None,
    ) -> RelatedEngine:
        """Start-up: load a whole archive at once and compute every list in batches.

        ``partitions`` defaults to exact search below ``EXACT_LIMIT`` articles and to about one cell
        per ``DOCS_PER_PARTITION`` articles above.  The result equals upserting the same articles
        one by one into an engine with the same cells.
        """
        engine = cls(k=k, min_score=min_score, model=model)
        batch: list[RelatedDoc] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) == _ENCODE_BATCH:
                engine._write_batch(batch)
                batch = []
        engine._write_batch(batch)
        live = np.flatnonzero(engine._alive[: engine._n])
        if partitions is None:
            partitions = 1 if live.shape[0] < EXACT_LIMIT else max(2, live.shape[0] // DOCS_PER_PARTITION)
        if partitions > 1 and live.shape[0] >= partitions:
            by_guid = np.asarray(sorted(live.tolist(), key=engine._guids.__getitem__), dtype=np.int64)
            engine._install_cells(_fit_cells(engine._dense[by_guid], partitions), probes)
        for slot, chosen in engine._compute_lists():
            engine._store(slot, chosen)
        return engine

    def _install_cells(self, centroids: npt.NDArray[np.float32], probes: int) -> None:
        """File every stored article under its cells (start-up only, before any list exists)."""
        cells = _Cells(centroids, min(probes, centroids.shape[0]))
        self._cells = cells
        cap = self._alive.shape[0]
        self._cell_of = np.zeros((cap, cells.probes), dtype=np.int32)
        self._cell_pos = np.zeros((cap, cells.probes), dtype=np.int32)
        live = np.flatnonzero(self._alive[: self._n])
        for start in range(0, live.shape[0], 65_536):
            batch = live[start : start + 65_536]
            self._cell_of[batch] = cells.assign(self._dense[batch])
        for slot in live.tolist():
            cells.add(slot, self._cell_of[slot], self._cell_pos[slot])

    @property
    def partitions(self) -> int:
        """Cells of the candidate index; 1 means every article is a candidate of every other."""
        return 1 if self._cells is None else int(self._cells.centroids.shape[0])

    @property
    def centroids(self) -> npt.NDArray[np.float32] | None:
        """The frozen cells, to start another engine with the same definition of candidates."""
        return None if self._cells is None else self._cells.centroids

    def __len__(self) -> int:
        return self._live

    def __contains__(self, guid: object) -> bool:
        return guid in self._slot

    def links(self, guid: str) -> tuple[Link, ...]:
        slot = self._slot.get(guid)
        return () if slot is None else self._as_links(slot)

    def upsert(self, doc: RelatedDoc) -> dict[str, tuple[Link, ...]]:
        """Add or replace an article; returns every list that changed (always including its own)."""
        item = self._encode(self.model, doc)
        slot = self._slot.get(doc.guid)
        before: dict[int, tuple[Link, ...]] = {}
        if slot is not None:
            holders = self._holders(slot)
            for h in holders.tolist():
                before[h] = self._as_links(h)
            before[slot] = self._as_links(slot)
            if self._same_scoring(slot, item):
                self._docs[slot] = replace(doc, text="")
                return self._changes(before, always=slot)
            self._detach(slot)
            self._write(slot, item, self._assign(item))
            for h in holders.tolist():
                if h != slot:
                    self._store(h, self._select_for(h))
            skip = set(holders.tolist())
        else:
            slot = self._new_slot(doc.guid)
            self._write(slot, item, self._assign(item))
            before[slot] = ()
            skip = set()
        cands, scores = self._scored_candidates(slot)
        self._store(slot, self._select(slot, cands, scores))
        self._backfill(slot, cands, scores, skip, before)
        return self._changes(before, always=slot)

    def remove(self, guid: str) -> dict[str, tuple[Link, ...]]:
        """Take an article out of every list; freed slots go to the next best candidates."""
        slot = self._slot.get(guid)
        if slot is None:
            return {}
        holders = [h for h in self._holders(slot).tolist() if h != slot]
        before = {h: self._as_links(h) for h in holders}
        self._detach(slot)
        self._alive[slot] = False
        self._live -= 1
        self._links[slot] = -1
        self._link_scores[slot] = _NO_SCORE
        self._docs[slot] = None
        del self._slot[guid]
        for h in holders:
            self._store(h, self._select_for(h))
        changes = self._changes(before, always=None)
        changes[guid] = ()
        return changes

    def recompute_all(self) -> dict[str, tuple[Link, ...]]:
        """Reference result: every list computed from scratch over the current archive (no state change)."""
        result: dict[str, tuple[Link, ...]] = {}
        for slot, chosen in self._compute_lists():
            result[self._guids[slot]] = tuple(self._link(s, score) for s, score in chosen)
        return result

    def doc(self, guid: str) -> RelatedDoc | None:
        """The stored article, without its body text (the engine keeps vectors, not copy)."""
        slot = self._slot.get(guid)
        return None if slot is None else self._docs[slot]

    # ------------------------------------------------------------------ encoding and storage

    def _write_batch(self, docs: list[RelatedDoc]) -> None:
        """Encode many articles in one pass (same bits as one at a time) and store them."""
        if not docs:
            return
        dense, sketch = self.model.vectors_batch([(d.headline, d.text) for d in docs])
        for i, doc in enumerate(docs):
            slot = self._slot.get(doc.guid)
            if slot is None:
                slot = self._new_slot(doc.guid)
            self._write(slot, _Encoded(guid=doc.guid, dense=dense[i], sketch=sketch[i], doc=doc), None)

    @staticmethod
    def _encode(model: TextModel, doc: RelatedDoc) -> _Encoded:
        dense, sketch = model.vectors(doc.headline, doc.text)
        return _Encoded(guid=doc.guid, dense=dense, sketch=sketch, doc=doc)

    def _code(self, kind: str, value: str) -> int:
        """Small integer standing for a section, tag or story root (compared, never interpreted)."""
        codes = self._codes[kind]
        code = codes.get(value)
        if code is None:
            code = codes[value] = len(codes)
        return code

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        cap = self._alive.shape[0]
        if need <= cap:
            return
        while cap < need:
            cap *= 2

        def grow(arr: npt.NDArray[Any], fill: Any) -> npt.NDArray[Any]:
            out = np.full((cap, *arr.shape[1:]), fill, dtype=arr.dtype)
            out[: arr.shape[0]] = arr
            return out

        self._dense = grow(self._dense, 0)
        self._sketch = grow(self._sketch, 0)
        self._sketch_norm = grow(self._sketch_norm, 0)
        self._days = grow(self._days, 0)
        self._section = grow(self._section, -1)
        self._tags = grow(self._tags, -1)
        self._tag_count = grow(self._tag_count, 0)
        self._root = grow(self._root, 0)
        self._alive = grow(self._alive, False)
        self._links = grow(self._links, -1)
        self._link_scores = grow(self._link_scores, _NO_SCORE)
        self._cell_of = grow(self._cell_of, 0)
        self._cell_pos = grow(self._cell_pos, 0)

    def _new_slot(self, guid: str) -> int:
        self._reserve(1)
        slot = self._n
        self._n += 1
        self._guids.append(guid)
        self._docs.append(None)
        self._slot[guid] = slot
        return slot

    def _assign(self, item: _Encoded) -> npt.NDArray[np.int32] | None:
        return None if self._cells is None else self._cells.assign(item.dense[None, :])[0]

    def _write(self, slot: int, item: _Encoded, cells: npt.NDArray[np.int32] | None) -> None:
        doc = item.doc
        self._dense[slot] = item.dense
        self._sketch[slot] = item.sketch.astype(np.int8)
        self._sketch_norm[slot] = float(item.sketch @ item.sketch)
        self._days[slot] = (doc.published_at if math.isfinite(doc.published_at) else 0.0) / _SECONDS_PER_DAY
        self._section[slot] = self._code("section", doc.section) if doc.section else -1
        tags = sorted(set(doc.tags))[:MAX_TAGS]
        self._tags[slot] = -1
        self._tags[slot, : len(tags)] = [self._code("tag", t) for t in tags]
        self._tag_count[slot] = len(tags)
        self._root[slot] = self._code("story", doc.story_root or doc.guid)
        self._docs[slot] = replace(doc, text="")
        if not self._alive[slot]:
            self._alive[slot] = True
            self._live += 1
        if self._cells is not None and cells is not None:
            self._cell_of[slot] = cells
            self._cells.add(slot, cells, self._cell_pos[slot])

    def _detach(self, slot: int) -> None:
        if self._cells is not None:
            self._cells.discard(self._cell_of[slot], self._cell_pos[slot].copy(), self._cell_pos, self._cell_of)

    def _same_scoring(self, slot: int, item: _Encoded) -> bool:
        """True when an update leaves every score and near-duplicate relation as it was."""
        old = self._docs[slot]
        new = item.doc
        return (
            old is not None
            and np.array_equal(self._dense[slot], item.dense)
            and np.array_equal(self._sketch[slot].astype(np.float32), item.sketch)
            and sorted(set(old.tags))[:MAX_TAGS] == sorted(set(new.tags))[:MAX_TAGS]
            and old.section == new.section
            and old.published_at == new.published_at
            and (old.story_root or old.guid) == (new.story_root or new.guid)
        )

    # ------------------------------------------------------------------ scoring

    def _candidate_slots(self, slot: int) -> Ints:
        if self._cells is None:
            return np.flatnonzero(self._alive[: self._n]).astype(np.int64)
        return self._cells.candidates(self._cell_of[slot].tolist())

    def _score_rows(self, queries: Ints, cands: Ints) -> Scores:
        """Scores of each query against each candidate, shape (len(queries), len(cands)).

        Elementwise float32 IEEE operations on exact integer dot products: the same pair always gets
        the same bits, whichever side is the query and however the batch is shaped.
        """
        if self._cells is None and cands.shape[0] > self._n // 2:
            score: Scores = (self._dense[queries] @ self._dense[: self._n].T)[:, cands]
        else:
            score = self._dense[queries] @ self._dense[cands].T
        score *= np.float32(1.0 / _TEXT_NORM)
        q_tags = self._tag_count[queries]
        if q_tags.any():
            c_tags = self._tags[cands]
            shared = np.zeros((queries.shape[0], cands.shape[0]), dtype=np.float32)
            for i, q in enumerate(queries.tolist()):
                mine = self._tags[q, : q_tags[i]]
                if mine.shape[0]:
                    shared[i] = np.isin(c_tags, mine).sum(axis=1)
            denom = np.sqrt((q_tags[:, None] * self._tag_count[cands][None, :]).astype(np.float32))
            tag_cos = np.divide(shared, denom, out=np.zeros_like(shared), where=denom > 0)
            score += np.float32(TAG_WEIGHT) * tag_cos
        q_sec = self._section[queries]
        if (q_sec >= 0).any():
            same = (self._section[cands][None, :] == q_sec[:, None]) & (q_sec[:, None] >= 0)
            score += np.float32(SECTION_WEIGHT) * same
        # recency = (1 - W) + W * H / (H + |days apart|), computed in place
        gap = np.subtract(self._days[cands][None, :], self._days[queries][:, None])
        np.abs(gap, out=gap)
        gap += np.float32(RECENCY_HALF_DAYS)
        np.divide(np.float32(RECENCY_WEIGHT * RECENCY_HALF_DAYS), gap, out=gap)
        gap += np.float32(1.0 - RECENCY_WEIGHT)
        score *= gap
        return score

    def _scored_candidates(self, slot: int) -> tuple[Ints, Scores]:
        cands = self._candidate_slots(slot)
        return cands, self._score_rows(np.asarray([slot], dtype=np.int64), cands)[0]

    def _near_duplicates(self, slots: Sequence[int]) -> npt.NDArray[np.bool_]:
        """Pairwise near-duplicate matrix from the integer sketches (exact dot products)."""
        idx = np.asarray(slots, dtype=np.int64)
        sk = self._sketch[idx].astype(np.float32)
        dots = (sk @ sk.T).astype(np.float64)
        norms = self._sketch_norm[idx]
        denom = np.sqrt(norms[:, None] * norms[None, :])
        cos = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
        dup: npt.NDArray[np.bool_] = cos > NEAR_DUPLICATE
        return dup

    def _near_duplicates_of(self, slot: int, cands: Ints) -> npt.NDArray[np.bool_]:
        """Which of `cands` are near-duplicates of `slot`: one matrix-vector product, the same exact integer
        arithmetic (so the same answers) as `_near_duplicates`.

        While all lists are computed at once, answers are remembered per sketch: the copies of one story share
        their sketch, so a flood of copies asks the same question once instead of once per copy.
        """
        memo = self._dup_memo
        if memo is None:
            return self._near_duplicates_computed(slot, cands)
        key = self._sketch[slot].tobytes()
        known = memo.get(key)
        if known is None:
            # Remembered from the second time a sketch asks: a distinct article asks once, and must not cost a
            # table the size of the archive.
            if self._dup_asked.pop(key, None) is None:
                self._dup_asked[key] = None
                if len(self._dup_asked) > _DUP_ASKED_SKETCHES:
                    self._dup_asked.pop(next(iter(self._dup_asked)))
                return self._near_duplicates_computed(slot, cands)
            if len(memo) >= _DUP_MEMO_SKETCHES:
                memo.pop(next(iter(memo)))
            known = memo[key] = np.full(self._n, -1, dtype=np.int8)
        unknown = cands[known[cands] < 0]
        if unknown.shape[0]:
            known[unknown] = self._near_duplicates_computed(slot, unknown)
        dup: npt.NDArray[np.bool_] = known[cands] == 1
        return dup

    def _near_duplicates_computed(self, slot: int, cands: Ints) -> npt.NDArray[np.bool_]:
        sk = self._sketch[cands].astype(np.float32)
        dots = (sk @ self._sketch[slot].astype(np.float32)).astype(np.float64)
        denom = np.sqrt(self._sketch_norm[cands] * self._sketch_norm[slot])
        cos = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
        dup: npt.NDArray[np.bool_] = cos > NEAR_DUPLICATE
        return dup

    def _window(self) -> int:
        """Candidates ranked before the greedy walk; when near-duplicates eat them, `_eliminating_walk` takes over."""
        return 2 * self.k + 4

    def _select(self, slot: int, cands: Ints, scores: Scores) -> list[tuple[int, float]]:
        """Greedy top-k under the linking rules, in (score desc, guid) order."""
        keep = (
            self._alive[cands] & (cands != slot) & (self._root[cands] != self._root[slot]) & (scores >= self.min_score)
        )
        cands = cands[keep]
        scores = scores[keep]
        if cands.shape[0] == 0:
            return []
        want = self._window()
        if cands.shape[0] > want:
            part = np.argpartition(-scores, want - 1)[:want]
            top = np.flatnonzero(scores >= scores[part].min())
        else:
            top = np.arange(cands.shape[0])
        if top.shape[0] <= 4 * want:  # else a tie wider than the window: copies filed at the same minute
            chosen = self._walk(slot, self._ordered(cands[top], scores[top]))
            if len(chosen) == self.k or top.shape[0] == cands.shape[0]:
                return chosen
        return self._eliminating_walk(slot, cands, scores)

    def _eliminating_walk(self, slot: int, cands: Ints, scores: Scores) -> list[tuple[int, float]]:
        """The greedy walk over every candidate, for when the best ones run out (near-duplicates fill them).

        Copies of one story (a wire story filed many times) fill a ranking: the window walk would widen over
        all of them and compare each pair. Here each pick removes at once every candidate the walk would skip
        because of it (its near-duplicates, its story line), so the cost is k vector passes, and the picks are
        the walk's: the best remaining candidate in (score desc, guid) order, k times.
        """
        distinct = ~self._near_duplicates_of(slot, cands)
        cands, scores = cands[distinct], scores[distinct]
        guids = self._guids
        chosen: list[tuple[int, float]] = []
        while len(chosen) < self.k and cands.shape[0]:
            best = scores.max()
            pick = min(cands[scores == best].tolist(), key=guids.__getitem__)
            chosen.append((pick, float(best)))
            rest = (cands != pick) & (self._root[cands] != self._root[pick]) & ~self._near_duplicates_of(pick, cands)
            cands, scores = cands[rest], scores[rest]
        return chosen

    def _ordered(self, cands: Ints, scores: Scores) -> list[tuple[float, int]]:
        guids = self._guids
        return sorted(
            zip(scores.tolist(), cands.tolist(), strict=True),
            key=lambda sc: (-sc[0], guids[sc[1]]),
        )

    def _walk(self, slot: int, ordered: list[tuple[float, int]]) -> list[tuple[int, float]]:
        dup = self._near_duplicates([slot] + [c for _, c in ordered])
        chosen: list[tuple[int, float]] = []
        rows: list[int] = []
        roots: set[int] = set()
        for j, (score, cand) in enumerate(ordered, start=1):
            if dup[0, j] or int(self._root[cand]) in roots or any(dup[j, r] for r in rows):
                continue
            chosen.append((cand, score))
            rows.append(j)
            roots.add(int(self._root[cand]))
            if len(chosen) == self.k:
                break
        return chosen

    def _select_for(self, slot: int) -> list[tuple[int, float]]:
        cands, scores = self._scored_candidates(slot)
        return self._select(slot, cands, scores)

    def _compute_lists(self) -> Iterable[tuple[int, list[tuple[int, float]]]]:
        """Every live article's list, computed cell by cell (start-up and recomputation).

        Each cell is scored as one block of its members against each other; every article keeps
        the best ``_window()`` eligible candidates of each of its cells, and its list is the greedy
        walk over the best of their union, exactly as `_select` would rank them (an article falls
        back to `_select` itself when a cell's window ends in a tie, or when the walk runs short
        and some cell had more candidates than its window).
        """
        self._dup_memo, self._dup_asked = {}, {}
        try:
            yield from self._compute_lists_memoized()
        finally:
            self._dup_memo, self._dup_asked = None, {}

    def _compute_lists_memoized(self) -> Iterable[tuple[int, list[tuple[int, float]]]]:
        live = np.flatnonzero(self._alive[: self._n]).astype(np.int64)
        if live.shape[0] == 0:
            return
        width = self._window()
        if self._cells is None:
            probes = 1
            cells: list[Ints] = [live]
        else:
            probes = self._cells.probes
            cells = [
                np.sort(self._cells.members[c][: int(self._cells.counts[c])]).astype(np.int64)
                for c in range(self._cells.counts.shape[0])
            ]
        best_slots = np.full((self._n, probes, width), -1, dtype=np.int64)
        best_scores = np.full((self._n, probes, width), _NO_SCORE, dtype=np.float32)
        tied = np.zeros(self._n, dtype=bool)
        overflow = np.zeros(self._n, dtype=bool)
        for cell, members in enumerate(cells):
            if members.shape[0] == 0:
                continue
            chunk = max(1, min(1024, 262_144 // members.shape[0]))
            for start in range(0, members.shape[0], chunk):
                batch = members[start : start + chunk]
                rows = self._score_rows(batch, members)
                ineligible = (
                    (members[None, :] == batch[:, None])
                    | (self._root[members][None, :] == self._root[batch][:, None])
                    | (rows < self.min_score)
                )
                masked = np.where(ineligible, np.float32(_NO_SCORE), rows)
                take = min(width, members.shape[0])
                part = np.argpartition(-masked, take - 1, axis=1)[:, :take]
                top = np.take_along_axis(masked, part, axis=1)
                cut = top.min(axis=1)
                tied[batch] |= np.isfinite(cut) & ((masked >= cut[:, None]).sum(axis=1) != take)
                overflow[batch] |= (~ineligible).sum(axis=1) > take
                probe = 0 if self._cells is None else np.argmax(self._cell_of[batch] == cell, axis=1)
                best_slots[batch, probe, :take] = np.where(np.isfinite(top), members[part], -1)
                best_scores[batch, probe, :take] = top
        guids = self._guids
        for slot in live.tolist():
            if tied[slot]:
                yield slot, self._select_for(slot)
                continue
            found = {
                c: v
                for c, v in zip(best_slots[slot].ravel().tolist(), best_scores[slot].ravel().tolist(), strict=True)
                if c >= 0
            }
            ordered = sorted(((v, c) for c, v in found.items()), key=lambda sc: (-sc[0], guids[sc[1]]))
            if len(ordered) > width:
                cut_score = ordered[width - 1][0]
                ordered = [sc for sc in ordered if sc[0] >= cut_score]
            chosen = self._walk(slot, ordered)
            if len(chosen) < self.k and overflow[slot]:
                chosen = self._select_for(slot)
            yield slot, chosen

    def _store(self, slot: int, chosen: list[tuple[int, float]]) -> None:
        self._links[slot] = -1
        self._link_scores[slot] = _NO_SCORE
        for i, (cand, score) in enumerate(chosen):
            self._links[slot, i] = cand
            self._link_scores[slot, i] = score

    def _holders(self, slot: int) -> Ints:
        """Articles whose list shows `slot` (only its candidates can)."""
        cands = self._candidate_slots(slot)
        holders: Ints = cands[(self._links[cands] == slot).any(axis=1)]
        return holders

    # ------------------------------------------------------------------ back-fill

    def _backfill(
        self, slot: int, cands: Ints, scores: Scores, skip: set[int], before: dict[int, tuple[Link, ...]]
    ) -> None:
        """Offer the new or changed article to every candidate whose list it may now enter."""
        last = self._link_scores[cands, self.k - 1]
        eligible = (
            self._alive[cands]
            & (cands != slot)
            & (self._root[cands] != self._root[slot])
            & (scores >= self.min_score)
            & (scores >= last)
        )
        offered, offered_scores = cands[eligible], scores[eligible]
        # Copies of this article can never take it in (checked at once: a flood of copies must stay linear).
        distinct = ~self._near_duplicates_of(slot, offered)
        guid = self._guids[slot]
        for other, score in zip(offered[distinct].tolist(), offered_scores[distinct].tolist(), strict=True):
            if other in skip:
                continue
            current = [
                (int(s), float(v))
                for s, v in zip(self._links[other].tolist(), self._link_scores[other].tolist(), strict=True)
                if s >= 0
            ]
            keys = [(-v, self._guids[s]) for s, v in current]
            pos = bisect.bisect_left(keys, (-score, guid))
            if pos >= self.k:
                continue
            listed = [s for s, _ in current]
            dup = self._near_duplicates([slot, other, *listed])
            if dup[0, 1]:
                continue
            root = self._root[slot]
            earlier = range(pos)
            if any(dup[0, 2 + i] or self._root[listed[i]] == root for i in earlier):
                continue
            later = range(pos, len(listed))
            if other not in before:
                before[other] = self._as_links(other)
            if any(dup[0, 2 + i] or self._root[listed[i]] == root for i in later):
                self._store(other, self._select_for(other))
            else:
                self._store(other, [*current[:pos], (slot, score), *current[pos:]][: self.k])

    # ------------------------------------------------------------------ output

    def _link(self, slot: int, score: float) -> Link:
        doc = self._docs[slot]
        url_path, headline, excerpt = ("", "", "") if doc is None else (doc.url_path, doc.headline, doc.excerpt)
        return Link(guid=self._guids[slot], url_path=url_path, headline=headline, excerpt=excerpt, score=score)

    def _as_links(self, slot: int) -> tuple[Link, ...]:
        return tuple(
            self._link(int(s), float(v))
            for s, v in zip(self._links[slot].tolist(), self._link_scores[slot].tolist(), strict=True)
            if s >= 0
        )

    def _changes(self, before: dict[int, tuple[Link, ...]], always: int | None) -> dict[str, tuple[Link, ...]]:
        out: dict[str, tuple[Link, ...]] = {}
        for slot, old in before.items():
            if not self._alive[slot]:
                continue
            new = self._as_links(slot)
            if new != old or slot == always:
                out[self._guids[slot]] = new
        return out
