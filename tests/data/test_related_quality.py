"""Quality and freshness of "Check Also" on the public BBC corpus (2,225 articles, 5 classes).

The section is withheld from the engine, so links must find the class from the text alone; an
empty slot counts as a miss.  Orientation on this corpus: random 0.21, plain TF-IDF about 0.93-0.94,
LSA(100) about 0.95.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer

from bench.corpus_bbc import BbcArticle, default_published, load_bbc, to_ninjs
from services.related.engine import Link, RelatedDoc, RelatedEngine
from services.related.model_fit import in_fitting_half

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(
        not (DATA / "bbc-news").is_dir(), reason=f"../shared/data not present: no BBC corpus under {DATA}"
    ),
]

K = 5


def related_doc(article: BbcArticle) -> RelatedDoc:
    item = to_ninjs(article, with_section=False)
    return RelatedDoc(
        guid=item["guid"],
        story_root=item["guid"],
        headline=article.title,
        excerpt=article.paragraphs[0][:200] if article.paragraphs else "",
        url_path=f"/news/{item['guid']}",
        text=article.text,
        tags=(),
        section="",  # withheld: the class must come from the text
        published_at=default_published(article).timestamp(),
    )


@pytest.fixture(scope="module")
def corpus() -> tuple[list[RelatedDoc], dict[str, str], dict[str, BbcArticle]]:
    articles = load_bbc()
    docs = sorted((related_doc(a) for a in articles), key=lambda d: (d.published_at, d.guid))
    category = {f"bbc-{a.category}-{a.number}": a.category for a in articles}
    by_guid = {f"bbc-{a.category}-{a.number}": a for a in articles}
    return docs, category, by_guid


def precision(lists: dict[str, tuple[Link, ...]], category: dict[str, str], k: int) -> float:
    hits = sum(category[link.guid] == category[guid] for guid, links in lists.items() for link in links[:k])
    return hits / (k * len(lists))


def ndcg(lists: dict[str, tuple[Link, ...]], category: dict[str, str], k: int) -> float:
    ideal = sum(1.0 / math.log2(i + 2) for i in range(k))
    total = 0.0
    for guid, links in lists.items():
        total += sum(
            1.0 / math.log2(i + 2) for i, link in enumerate(links[:k]) if category[link.guid] == category[guid]
        )
    return total / (ideal * len(lists))


def term_cosines(docs: list[RelatedDoc]) -> tuple[dict[str, int], csr_matrix]:
    """Reference TF-IDF vectors fitted on the corpus, independent of the engine's own representation."""
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    matrix = vectorizer.fit_transform([f"{d.headline}\n\n{d.text}" for d in docs])
    return {d.guid: i for i, d in enumerate(docs)}, csr_matrix(matrix)


def near_duplicate_rate(lists: dict[str, tuple[Link, ...]], docs: list[RelatedDoc]) -> tuple[float, int]:
    """Share of links that are a near-duplicate (TF-IDF cosine > 0.9) of the article or of an earlier link."""
    index, matrix = term_cosines(docs)
    bad = 0
    total = 0
    for guid, links in lists.items():
        ids = [index[guid]] + [index[link.guid] for link in links]
        sims = (matrix[ids] @ matrix[ids].T).toarray()
        for j in range(1, len(ids)):
            total += 1
            if (sims[j, :j] > 0.9).any():
                bad += 1
    return bad / max(total, 1), total


def test_precision_ndcg_and_no_near_duplicates(
    corpus: tuple[list[RelatedDoc], dict[str, str], dict[str, BbcArticle]],
) -> None:
    docs, category, by_guid = corpus
    engine = RelatedEngine(k=K)
    for doc in docs:  # date order, as the newsroom publishes
        engine.upsert(doc)
    lists = {d.guid: engine.links(d.guid) for d in docs}
    p_at_5 = precision(lists, category, K)
    held_out = {g: links for g, links in lists.items() if not in_fitting_half(by_guid[g].name)}
    p_held_out = precision(held_out, category, K)
    wide = RelatedEngine.build(docs, k=10).recompute_all()
    ndcg_10 = ndcg(wide, category, 10)
    dup_rate, n_links = near_duplicate_rate(lists, docs)
    empty = sum(K - len(links) for links in lists.values())
    print(
        f"\nBBC related: p@5={p_at_5:.4f} (articles unseen by the model: {p_held_out:.4f}, n={len(held_out)}) "
        f"nDCG@10={ndcg_10:.4f} near-dup rate={dup_rate:.4f} over {n_links} links, empty slots={empty}"
    )
    assert len(engine) == 2225
    assert p_at_5 >= 0.95
    assert p_held_out >= 0.95
    assert dup_rate == 0.0
    assert engine.recompute_all() == lists


def test_back_fill_gives_old_articles_the_quality_of_new_ones(
    corpus: tuple[list[RelatedDoc], dict[str, str], dict[str, BbcArticle]],
) -> None:
    docs, category, _ = corpus
    engine = RelatedEngine(k=K)
    at_publish: dict[str, tuple[Link, ...]] = {}
    for doc in docs:
        at_publish[doc.guid] = engine.upsert(doc)[doc.guid]
    fifth = len(docs) // 5
    oldest = [d.guid for d in docs[:fifth]]
    newest = [d.guid for d in docs[-fifth:]]
    old_then = precision({g: at_publish[g] for g in oldest}, category, K)
    old_now = precision({g: engine.links(g) for g in oldest}, category, K)
    new_now = precision({g: engine.links(g) for g in newest}, category, K)
    print(f"\noldest fifth: p@5 when published {old_then:.4f}, now {old_now:.4f}; newest fifth now {new_now:.4f}")
    assert old_now >= 0.94
    assert abs(old_now - new_now) <= 0.03
    assert old_now > old_then + 0.05


def test_stream_of_publishes_updates_and_removes_drains_to_recomputation(
    corpus: tuple[list[RelatedDoc], dict[str, str], dict[str, BbcArticle]],
) -> None:
    docs, _, _ = corpus
    rng = random.Random(7)
    pool = rng.sample(docs, 500)
    engine = RelatedEngine.build(pool[:200], k=K)
    waiting = pool[200:]
    live = {d.guid: d for d in pool[:200]}
    removed: set[str] = set()
    for step in range(600):
        roll = rng.random()
        if waiting and roll < 0.45:
            doc = waiting.pop(rng.randrange(len(waiting)))
            engine.upsert(doc)
            live[doc.guid] = doc
        elif roll < 0.6 and live:
            guid = rng.choice(sorted(live))
            live[guid] = replace(live[guid], headline=f"{live[guid].headline} (updated {step})")
            engine.upsert(live[guid])
        elif roll < 0.75 and live:
            guid = rng.choice(sorted(live))
            donor = rng.choice(docs)
            live[guid] = replace(live[guid], text=donor.text, headline=donor.headline)
            engine.upsert(live[guid])
        elif roll < 0.85 and removed and rng.random() < 0.3:
            guid = rng.choice(sorted(removed))  # a withheld article comes back
            removed.discard(guid)
            live[guid] = next(d for d in pool if d.guid == guid)
            engine.upsert(live[guid])
        elif live:
            guid = rng.choice(sorted(live))
            engine.remove(guid)
            del live[guid]
            removed.add(guid)
    reference = engine.recompute_all()
    assert set(reference) == set(live)
    assert [g for g in reference if engine.links(g) != reference[g]] == []
    assert not {link.guid for links in reference.values() for link in links} & removed
    for guid, doc in live.items():
        for link in engine.links(guid):
            assert link.headline == live[link.guid].headline
        assert engine.doc(guid) == replace(doc, text="")


def test_corpus_loader_and_ninjs_shape() -> None:
    articles = load_bbc()
    assert len(articles) == 2225
    assert [a.name for a in articles] == sorted(a.name for a in articles)
    assert {a.category for a in articles} == {"business", "entertainment", "politics", "sport", "tech"}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    duplicates = 0
    for a in articles:
        key = (a.title, a.paragraphs)
        duplicates += key in seen
        seen.add(key)
    assert duplicates == 98
    assert all(a.title and a.paragraphs for a in articles)
    item = to_ninjs(articles[0])
    assert item["guid"] == "bbc-business-001"
    assert item["headline"] == articles[0].title
    assert item["body_html"].startswith("<p>") and item["body_html"].count("<p>") == len(articles[0].paragraphs)
    assert item["service"] == [{"code": "business", "name": "Business"}]
    assert item["firstcreated"].startswith("2005-") and item["firstcreated"].endswith("Z")
    assert to_ninjs(articles[0], with_section=False, guid="x", version=3)["service"] == []
    assert to_ninjs(articles[0]) == item  # deterministic
