"""Rules of the "Check Also" engine, on small synthetic articles (no corpus needed)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from services.related.engine import RelatedDoc, RelatedEngine
from services.related.textvec import load_model
from tests.support.topics import TOPICS

DAY = 86_400.0


def article(guid: str, topic: str, seed: int, **overrides: object) -> RelatedDoc:
    rng = random.Random(seed)
    words = TOPICS[topic]
    text = " ".join(rng.sample(words, 25))
    doc = RelatedDoc(
        guid=guid,
        story_root=guid,
        headline=f"{topic} story {guid}",
        excerpt=f"excerpt of {guid}",
        url_path=f"/news/{guid}",
        text=text,
        tags=(),
        section="",
        published_at=1_100_000_000.0 + seed * DAY,
    )
    return replace(doc, **overrides)  # type: ignore[arg-type]


def archive(per_topic: int = 6) -> list[RelatedDoc]:
    return [
        article(f"{topic[:3]}-{i:02d}", topic, seed=100 * t + i)
        for t, topic in enumerate(TOPICS)
        for i in range(per_topic)
    ]


def engine_with(docs: list[RelatedDoc], **kwargs: object) -> RelatedEngine:
    engine = RelatedEngine(**kwargs)  # type: ignore[arg-type]
    for doc in docs:
        engine.upsert(doc)
    return engine


def assert_fresh(engine: RelatedEngine) -> None:
    reference = engine.recompute_all()
    assert len(reference) == len(engine)
    stale = [g for g, links in reference.items() if engine.links(g) != links]
    assert stale == []


def test_links_stay_within_topic_and_never_self() -> None:
    engine = engine_with(archive())
    for doc in archive():
        links = engine.links(doc.guid)
        assert len(links) == 4
        assert doc.guid not in {link.guid for link in links}
        assert all(link.guid[:3] == doc.guid[:3] for link in links)
        scores = [link.score for link in links]
        assert scores == sorted(scores, reverse=True)


def test_versions_of_one_story_never_link_each_other_nor_share_a_list() -> None:
    docs = archive()
    versions = [article(f"foo-v{i}", "football", seed=900 + i, story_root="foo-v0") for i in range(3)]
    engine = engine_with(docs + versions)
    for version in versions:
        assert not {link.guid for link in engine.links(version.guid)} & {v.guid for v in versions}
    for doc in docs:
        roots = [engine.doc(link.guid).story_root for link in engine.links(doc.guid)]  # type: ignore[union-attr]
        assert len(roots) == len(set(roots))
    assert_fresh(engine)


def test_removed_article_disappears_and_its_slot_is_refilled() -> None:
    docs = archive()
    engine = engine_with(docs)
    victim = engine.links("foo-00")[0].guid
    holders = [d.guid for d in docs if victim in {link.guid for link in engine.links(d.guid)}]
    changes = engine.remove(victim)
    assert changes[victim] == ()
    assert set(holders) <= set(changes)
    for guid in holders:
        links = changes[guid]
        assert victim not in {link.guid for link in links}
        assert len(links) == 4  # refilled by the next best candidate
        assert engine.links(guid) == links
    assert engine.links(victim) == ()
    assert victim not in {link.guid for g in engine.recompute_all() for link in engine.links(g)}
    assert_fresh(engine)


def test_near_duplicates_never_link_each_other_nor_appear_twice() -> None:
    docs = archive()
    original = docs[0]
    copy = replace(original, guid="foo-copy", story_root="foo-copy", url_path="/news/foo-copy")
    light_edit = replace(original, guid="foo-edit", story_root="foo-edit", text=original.text + " referee")
    engine = engine_with([*docs, copy, light_edit])
    twins = {original.guid, copy.guid, light_edit.guid}
    for guid in twins:
        assert not {link.guid for link in engine.links(guid)} & twins
    for doc in docs[1:]:
        shown = {link.guid for link in engine.links(doc.guid)} & twins
        assert len(shown) <= 1
    assert_fresh(engine)


def test_min_score_leaves_weak_slots_empty() -> None:
    docs = [article(f"foo-{i}", "football", seed=i) for i in range(3)]
    odd = article("odd-1", "cinema", seed=7, text="xylophone zeppelin quasar", headline="untitled")
    engine = engine_with([*docs, odd], k=4)
    assert len(engine.links("foo-0")) == 2  # only two other football articles exist
    assert engine.links("odd-1") == ()
    assert all(link.score >= engine.min_score for g in ("foo-0", "foo-1") for link in engine.links(g))
    strict = engine_with(docs, k=4, min_score=5.0)
    assert strict.links("foo-0") == ()


def test_result_does_not_depend_on_insertion_order() -> None:
    docs = archive()
    forward = engine_with(docs)
    shuffled = docs[:]
    random.Random(3).shuffle(shuffled)
    other = engine_with(shuffled)
    built = RelatedEngine.build(reversed(docs))
    for doc in docs:
        assert forward.links(doc.guid) == other.links(doc.guid) == built.links(doc.guid)


def test_a_flood_of_copies_gets_the_links_of_the_plain_greedy_walk() -> None:
    """Copies of a wire story fill every ranking, so lists are picked by the eliminating walk; its picks must be
    exactly those of the walk over every candidate in (score desc, guid) order (the definition)."""
    docs = archive(per_topic=4)
    for family, topic in (("wire", "election"), ("agency", "markets")):
        text = " ".join(TOPICS[topic][:30])
        docs += [
            article(f"{family}-{n:02d}", topic, seed=700 + n, text=text + (" update" if n % 3 == 0 else ""),
                    **({"published_at": 1_200_000_000.0} if family == "agency" else {}))  # agency: equal scores
            for n in range(25)
        ]
    engine = engine_with(docs)
    for doc in docs:
        slot = engine._slot[doc.guid]
        cands, scores = engine._scored_candidates(slot)
        keep = (
            engine._alive[cands] & (cands != slot) & (engine._root[cands] != engine._root[slot])
            & (scores >= engine.min_score)
        )
        reference = engine._walk(slot, engine._ordered(cands[keep], scores[keep]))
        assert engine._select_for(slot) == reference, doc.guid
        assert [link.guid for link in engine.links(doc.guid)] == [engine._guids[c] for c, _ in reference]
    wire = [link.guid for link in engine.links("ele-00") if link.guid.startswith("wire-")]
    assert len(wire) <= 1  # copies are near-duplicates of each other: one of them at most


def test_ties_are_broken_by_guid() -> None:
    docs = archive()
    base = article("foo-base", "football", seed=5000, text=" ".join(["striker goal"] * 20))
    # Identical content and date: equal scores, and near-duplicates, so only the lower guid may show.
    twin_b = article("foo-twin-b", "football", seed=5001, text="striker goal penalty " * 20, published_at=0.0)
    twin_a = replace(twin_b, guid="foo-twin-a", story_root="foo-twin-a")
    engine = engine_with([*docs, base, twin_b, twin_a])
    shown = [link.guid for link in engine.links("foo-base") if link.guid.startswith("foo-twin")]
    assert shown == ["foo-twin-a"]


def test_changed_headline_of_a_linked_article_re_emits_the_lists_showing_it() -> None:
    docs = archive()
    engine = engine_with(docs)
    target = engine.links("ele-00")[0].guid
    holders = {d.guid for d in docs if target in {link.guid for link in engine.links(d.guid)}}
    assert "ele-00" in holders
    updated = replace(next(d for d in docs if d.guid == target), headline="A new headline")
    changes = engine.upsert(updated)
    assert holders <= set(changes)
    shown = [link for link in changes["ele-00"] if link.guid == target]
    assert shown[0].headline == "A new headline"
    assert_fresh(engine)


def test_changed_text_moves_an_article_to_other_lists() -> None:
    docs = archive()
    engine = engine_with(docs)
    moved = replace(docs[0], text=article("x", "gadgets", seed=4242).text, headline="gadgets now")
    changes = engine.upsert(moved)
    assert moved.guid in changes
    assert all(link.guid.startswith("gad") for link in engine.links(moved.guid))
    for doc in docs[1:6]:
        assert moved.guid not in {link.guid for link in engine.links(doc.guid)}
    assert_fresh(engine)


def test_new_article_is_back_filled_into_older_lists() -> None:
    docs = [article(f"foo-{i}", "football", seed=i) for i in range(3)]
    engine = engine_with(docs)
    changes = engine.upsert(article("foo-new", "football", seed=50))
    assert {"foo-new", "foo-0", "foo-1", "foo-2"} <= set(changes)
    assert "foo-new" in {link.guid for link in engine.links("foo-0")}


@pytest.mark.parametrize("partitions", [1, 3])
def test_random_stream_of_publishes_updates_and_removes_stays_fresh(partitions: int) -> None:
    rng = random.Random(20050101)
    pool = archive(per_topic=12)
    initial, later = pool[:20], pool[20:]
    engine = RelatedEngine.build(initial, partitions=partitions, probes=2) if partitions > 1 else engine_with(initial)
    published = {d.guid: d for d in initial}
    removed: set[str] = set()
    for step in range(150):
        action = rng.random()
        if later and action < 0.4:
            doc = later.pop(rng.randrange(len(later)))
            engine.upsert(doc)
            published[doc.guid] = doc
        elif published and action < 0.7:
            guid = rng.choice(sorted(published))
            topic = rng.choice(sorted(TOPICS))
            doc = replace(
                published[guid],
                headline=f"update {step}",
                text=article(guid, topic, seed=10_000 + step).text if rng.random() < 0.5 else published[guid].text,
            )
            engine.upsert(doc)
            published[guid] = doc
        elif published:
            guid = rng.choice(sorted(published))
            engine.remove(guid)
            del published[guid]
            removed.add(guid)
        assert len(engine) == len(published)
    assert_fresh(engine)
    for guid in published:
        assert not {link.guid for link in engine.links(guid)} & removed


def test_upsert_reports_exactly_the_lists_that_changed() -> None:
    docs = archive()
    engine = engine_with(docs)
    before = {d.guid: engine.links(d.guid) for d in docs}
    newcomer = article("mar-new", "markets", seed=777)
    changes = engine.upsert(newcomer)
    after = {d.guid: engine.links(d.guid) for d in docs}
    changed = {g for g in before if before[g] != after[g]}
    assert set(changes) - {newcomer.guid} == changed
    for guid in changed:
        assert changes[guid] == after[guid]


def test_partitioned_build_equals_upserts_into_an_engine_with_the_same_cells() -> None:
    docs = archive(per_topic=10)
    built = RelatedEngine.build(docs, partitions=4, probes=2)
    assert built.partitions == 4
    incremental = RelatedEngine(centroids=built.centroids, probes=2)
    shuffled = docs[:]
    random.Random(11).shuffle(shuffled)
    for doc in shuffled:
        incremental.upsert(doc)
    for doc in docs:
        assert incremental.links(doc.guid) == built.links(doc.guid)
    assert_fresh(incremental)


def test_scores_are_symmetric() -> None:
    engine = engine_with(archive())
    pairs = {(guid, link.guid): link.score for guid in engine.recompute_all() for link in engine.links(guid)}
    mutual = [(a, b) for a, b in pairs if (b, a) in pairs]
    assert mutual
    assert all(pairs[a, b] == pairs[b, a] for a, b in mutual)


def test_batch_encoding_gives_the_same_bits_as_one_at_a_time() -> None:
    model = load_model()
    docs = [*archive(per_topic=3), article("empty", "cinema", seed=1, text="", headline="")]
    dense, sketch = model.vectors_batch([(d.headline, d.text) for d in docs])
    for i, doc in enumerate(docs):
        one_dense, one_sketch = model.vectors(doc.headline, doc.text)
        assert (one_dense == dense[i]).all()
        assert (one_sketch == sketch[i]).all()
    assert not dense[-1].any()


def test_partitioned_build_does_not_depend_on_arrival_order() -> None:
    docs = archive(per_topic=10)
    forward = RelatedEngine.build(docs, partitions=4)
    backward = RelatedEngine.build(list(reversed(docs)), partitions=4)
    assert forward.centroids is not None and backward.centroids is not None
    assert (forward.centroids == backward.centroids).all()
    assert forward.recompute_all() == backward.recompute_all()
