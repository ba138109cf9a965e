"""From a ninjs draft to the article event: the seed page, slugs, paths, people, pictures and corrections."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.domain import (
    DEFAULT_CORRECTION_NOTE,
    FALLBACK_SLUG,
    UnpublishableDraft,
    article_path,
    authors_of,
    base_slug,
    build_article,
    correction_of,
    event_version,
    picture_of,
    plain_text,
    section_of,
    slugify,
    tags_of,
    unpublishable_reason,
    word_count,
)
from shared.contracts.articles import ArticlePublished, Author, Picture, Term
from shared.contracts.drafts import NinjsDraft

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SEED_PUBLISHED = datetime(2024, 3, 20, 9, 30, tzinfo=UTC)
SEED_PATH = "/russia-ukraine-war/2024/03/20/what-do-russias-losses-in-ukraine-mean-for-putin"


def _seed_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "seed_draft.json").read_text(encoding="utf-8"))
    return data


def _draft(**fields: Any) -> NinjsDraft:
    base: dict[str, Any] = {
        "guid": "g-1",
        "version": 1,
        "headline": "A headline",
        "body_html": "<p>Body text.</p>",
        "versioncreated": "2024-03-20T09:30:00Z",
    }
    base.update(fields)
    return NinjsDraft.model_validate(base)


def _build(draft: NinjsDraft, **overrides: Any) -> ArticlePublished:
    slug = base_slug(draft)
    published = draft.firstpublished or draft.firstcreated or draft.versioncreated
    assert published is not None
    arguments: dict[str, Any] = {
        "slug": slug,
        "url_path": article_path(section_of(draft).code, published, slug),
        "previous_paths": [],
        "story_root": draft.guid,
    }
    arguments.update(overrides)
    return build_article(draft, **arguments)


@pytest.fixture(scope="module")
def seed_draft() -> NinjsDraft:
    return NinjsDraft.model_validate(_seed_data())


@pytest.fixture(scope="module")
def seed_article(seed_draft: NinjsDraft) -> ArticlePublished:
    return _build(seed_draft)


# The seed page --------------------------------------------------------------------------------------------


def test_seed_fixture_carries_the_duplicates_it_is_meant_to_exercise(seed_draft: NinjsDraft) -> None:
    raw_blocks = plain_text(seed_draft.body_html or "").split("\n\n")
    assert raw_blocks.count("Russia-Ukraine war") == 2
    assert raw_blocks.count("NATO Assistance") == 2


def test_seed_section_slug_and_path(seed_article: ArticlePublished) -> None:
    assert seed_article.section == Term(code="russia-ukraine-war", name="Russia-Ukraine war")
    assert seed_article.slug == "what-do-russias-losses-in-ukraine-mean-for-putin"
    assert seed_article.url_path == SEED_PATH


def test_seed_duplicates_are_collapsed(seed_article: ArticlePublished) -> None:
    blocks = plain_text(seed_article.body_html).split("\n\n")
    assert blocks.count("Russia-Ukraine war") == 1
    assert blocks.count("NATO Assistance") == 1
    assert seed_article.body_html.count("<figcaption>NATO Assistance</figcaption>") == 1
    assert "<p>NATO Assistance</p>" not in seed_article.body_html


def test_seed_subheadings_and_figure_survive(seed_article: ArticlePublished) -> None:
    for heading in (
        "But Nothing of The Sort Occurred",
        "However, Everything Changed After February 24",
        "What will Mr. Putin do next?",
    ):
        assert f"<h2>{heading}</h2>" in seed_article.body_html
    assert 'src="https://images.example.org/nato-assistance.jpg"' in seed_article.body_html


def test_seed_excerpt_is_at_most_55_words_on_a_boundary(seed_article: ArticlePublished) -> None:
    excerpt = seed_article.excerpt
    assert excerpt.endswith("…")
    words = excerpt[:-1].split()
    assert 45 <= len(words) <= 55
    body_text = plain_text(seed_article.body_html)
    assert body_text.startswith("Russia-Ukraine war\n\n")  # the section's kicker, which the excerpt skips
    body_words = body_text.removeprefix("Russia-Ukraine war\n\n").split()
    assert words[:-1] == body_words[: len(words) - 1]
    assert body_words[len(words) - 1].startswith(words[-1])


def test_seed_counts_and_dates(seed_article: ArticlePublished) -> None:
    assert seed_article.word_count == word_count(plain_text(seed_article.body_html))
    assert 800 <= seed_article.word_count <= 900
    assert seed_article.reading_minutes == 4
    assert seed_article.date_published == SEED_PUBLISHED
    assert seed_article.date_modified == SEED_PUBLISHED
    assert seed_article.date_published.utcoffset() == timedelta(0)


def test_seed_people_tags_and_picture(seed_article: ArticlePublished) -> None:
    assert seed_article.headline == "What Do Russia’s Losses in Ukraine Mean for Putin?"
    assert [a.name for a in seed_article.authors] == ["muhammadahmad"]
    assert seed_article.authors[0].slug == "muhammadahmad"
    assert seed_article.authors[0].role == "writer"
    assert seed_article.authors[0].biography
    assert [t.name for t in seed_article.tags] == ["Russia", "Ukraine", "Vladimir Putin", "NATO", "Kremlin"]
    assert seed_article.picture is not None
    assert seed_article.picture.href == "https://images.example.org/nato-assistance.jpg"
    assert (seed_article.picture.width, seed_article.picture.height) == (1200, 675)
    assert seed_article.picture.caption == "NATO Assistance"
    assert seed_article.picture.alt
    assert seed_article.correction is None
    assert seed_article.language == "en"
    assert seed_article.version == 1


def test_the_same_draft_gives_byte_identical_events() -> None:
    first = _build(NinjsDraft.model_validate(_seed_data())).model_dump_json()
    second = _build(NinjsDraft.model_validate(_seed_data())).model_dump_json()
    assert first == second


def test_every_sample_draft_builds() -> None:
    paths = sorted((FIXTURES / "sample_drafts").glob("*.json"))
    assert 5 <= len(paths) <= 6
    sections = set()
    for path in paths:
        draft = NinjsDraft.model_validate_json(path.read_text(encoding="utf-8"))
        article = _build(draft)
        sections.add(article.section.code)
        assert article.word_count > 100
        assert article.excerpt
    assert {"world", "business", "technology", "sport", "culture"} <= sections


def test_sample_with_non_ascii_slugline_gets_an_ascii_path() -> None:
    path = FIXTURES / "sample_drafts" / "culture-zurich-krakow-cafes.json"
    draft = NinjsDraft.model_validate_json(path.read_text(encoding="utf-8"))
    assert _build(draft).url_path == "/culture/2024/03/16/zurich-krakow-lodz-cafe"


# Slugs and paths ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Zürich–Kraków: Łódź café", "zurich-krakow-lodz-cafe"),
        ("What Do Russia’s Losses in Ukraine Mean for Putin?", "what-do-russias-losses-in-ukraine-mean-for-putin"),
        ("  --Hello,   World!!--  ", "hello-world"),
        ("Ελλάδα και Κύπρος", "ellada-kai-kypros"),
        ("Straße & Ærø", "strasse-aero"),
        ("Fans celebrate 🎉 title", "fans-celebrate-title"),
        ("2024 budget: 3.5% growth", "2024-budget-3-5-growth"),
    ],
)
def test_slugify_transliterates_and_hyphenates(text: str, slug: str) -> None:
    assert slugify(text) == slug


@pytest.mark.parametrize("text", ["", "   ", "!!!", "—", "🙂🙂"])
def test_slugify_never_returns_empty(text: str) -> None:
    assert slugify(text) == FALLBACK_SLUG


def test_slugify_cuts_on_a_word_boundary() -> None:
    text = "alpha beta gamma delta epsilon"
    assert slugify(text, max_length=20) == "alpha-beta-gamma"
    assert slugify(text, max_length=16) == "alpha-beta-gamma"
    assert slugify(text, max_length=15) == "alpha-beta"
    assert slugify("x" * 100, max_length=10) == "x" * 10


def test_slugify_default_length_is_80() -> None:
    slug = slugify(" ".join(["word"] * 40))
    assert len(slug) <= 80
    assert slug.endswith("word")
    assert "--" not in slug


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.integers(min_value=5, max_value=120))
def test_slugify_is_stable_and_well_formed(text: str, max_length: int) -> None:
    slug = slugify(text, max_length=max_length)
    assert slug == slugify(text, max_length=max_length)
    assert slug
    assert len(slug) <= max_length
    assert slug.isascii()
    assert slug == slug.lower()
    assert not slug.startswith("-")
    assert not slug.endswith("-")
    assert "--" not in slug
    assert slugify(slug, max_length=max_length) == slug


def test_base_slug_prefers_the_slugline() -> None:
    assert base_slug(_draft(slugline="Port fees", headline="Anything")) == "port-fees"
    assert base_slug(_draft(headline="Port Raises Fees")) == "port-raises-fees"
    assert base_slug(_draft(slugline="???", headline="Port Raises Fees")) == "port-raises-fees"


def test_a_headline_that_mentions_a_content_hiding_element_keeps_all_its_words() -> None:
    """Before, "<title> tags: …" sanitized to an empty headline and the draft was dead-lettered as unpublishable."""
    article = _build(_draft(headline="<title> tags: what search engines read", slugline=None))
    assert article.headline == "<title> tags: what search engines read"
    assert article.slug == "title-tags-what-search-engines-read"
    mention = _build(_draft(headline="Why <video> still breaks on phones"))
    assert mention.headline == "Why <video> still breaks on phones"


@pytest.mark.parametrize(
    "opening",
    ["<p>World</p>", "<p>WORLD</p><p>Talks resume</p>", "<p>Talks Resume</p>", "<h2>World</h2><p>world</p>"],
)
def test_the_excerpt_skips_opening_blocks_that_repeat_the_section_or_the_headline(opening: str) -> None:
    draft = _draft(
        headline="Talks resume", service=[{"code": "world", "name": "World"}],
        body_html=f"{opening}<p>Negotiators returned to the table on Wednesday.</p><p>More.</p>",
    )
    article = _build(draft)
    assert article.excerpt == "Negotiators returned to the table on Wednesday. More."
    assert article.body_html.startswith(opening.split("</")[0])  # the body keeps them


def test_an_excerpt_keeps_a_label_when_it_is_all_the_text_and_a_label_that_is_prose() -> None:
    only = _build(_draft(headline="World", service=[{"name": "World"}], body_html="<p>World</p>"))
    assert only.excerpt == "World"
    prose = _build(_draft(service=[{"name": "World"}], body_html="<p>World leaders met.</p><p>World</p>"))
    assert prose.excerpt == "World leaders met. World"


def test_article_path_is_dated_in_utc() -> None:
    late_evening_in_new_york = datetime(2024, 3, 19, 22, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert article_path("World", late_evening_in_new_york, "x") == "/world/2024/03/20/x"
    new_years_eve_in_new_york = datetime(2023, 12, 31, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert article_path("world", new_years_eve_in_new_york, "x") == "/world/2024/01/01/x"
    assert article_path("russia-ukraine-war", SEED_PUBLISHED, "s") == "/russia-ukraine-war/2024/03/20/s"


def test_article_path_rejects_naive_dates_and_bad_slugs() -> None:
    with pytest.raises(ValueError, match="timezone"):
        article_path("world", datetime(2024, 3, 20), "x")
    with pytest.raises(ValueError, match="slug"):
        article_path("world", SEED_PUBLISHED, "../admin")


# Section and tags -----------------------------------------------------------------------------------------


def test_section_is_the_first_service_with_a_code_or_name() -> None:
    draft = _draft(service=[{"code": "", "name": ""}, {"code": "Business News", "name": "Business"}])
    assert section_of(draft) == Term(code="business-news", name="Business")
    assert section_of(_draft(service=[{"name": "Culture & Arts"}])) == Term(code="culture-arts", name="Culture & Arts")
    assert section_of(_draft(service=[{"code": "sport"}])) == Term(code="sport", name="sport")


def test_section_defaults_to_news() -> None:
    assert section_of(_draft()) == Term(code="news", name="News")


def test_tags_come_from_subjects_then_keywords_deduplicated() -> None:
    draft = _draft(
        subject=[{"code": "11000000", "name": "Politics"}, {"code": "20000000"}, {"name": "NATO"}],
        keywords=["nato", "Vladimir Putin", "politics", "vladimir-putin", "<b>Kyiv</b>", "  "],
    )
    assert tags_of(draft) == [
        Term(code="politics", name="Politics"),
        Term(code="nato", name="NATO"),
        Term(code="vladimir-putin", name="Vladimir Putin"),
        Term(code="kyiv", name="Kyiv"),
    ]


def test_places_are_tags_after_subjects_and_keywords() -> None:
    draft = _draft(
        subject=[{"name": "Politics"}],
        keywords=["Kyiv"],
        place=[{"code": "UA", "name": "Ukraine"}, {"name": "kyiv"}, {"code": "XX"}],
        genre=[{"code": "analysis", "name": "Analysis"}],
    )
    assert tags_of(draft) == [
        Term(code="politics", name="Politics"),
        Term(code="kyiv", name="Kyiv"),
        Term(code="ukraine", name="Ukraine"),
    ]


def test_a_story_keeps_its_first_fifty_tags_and_twenty_authors() -> None:
    """Each tag and author is a page the publisher keeps up to date: 20,000 keywords in one draft held back every
    list on the site for minutes."""
    draft = _draft(
        keywords=[f"Topic {n}" for n in range(20_000)],
        authors=[{"name": f"Writer {n}"} for n in range(500)],
    )
    assert [tag.code for tag in tags_of(draft)] == [f"topic-{n}" for n in range(50)]
    assert [author.slug for author in authors_of(draft)] == [f"writer-{n}" for n in range(20)]


# Authors --------------------------------------------------------------------------------------------------


def test_authors_from_byline() -> None:
    draft = _draft(byline="By Elena Marsh and Tomasz Wójcik")
    assert authors_of(draft) == [
        Author(name="Elena Marsh", slug="elena-marsh"),
        Author(name="Tomasz Wójcik", slug="tomasz-wojcik"),
    ]


def test_authors_from_byline_with_commas_and_ampersand() -> None:
    draft = _draft(byline="by Ann Lee, Bo Chan & Cy Diaz and Ann Lee")
    assert [a.slug for a in authors_of(draft)] == ["ann-lee", "bo-chan", "cy-diaz"]


def test_titles_and_places_in_a_byline_are_not_authors() -> None:
    draft = _draft(byline="By Jane Doe, Political Editor, and Ahmed Ali in Cairo")
    assert authors_of(draft) == [
        Author(name="Jane Doe", slug="jane-doe"),
        Author(name="Ahmed Ali", slug="ahmed-ali"),
    ]


@pytest.mark.parametrize(
    ("byline", "names"),
    [
        ("By Senior Reporter Jane Doe", ["Jane Doe"]),
        ("Jane Doe & Ahmed Ali", ["Jane Doe", "Ahmed Ali"]),
        ("By Jane Doe in London and Ahmed Ali at the UN", ["Jane Doe", "Ahmed Ali"]),
        ("Jane Doe, Chief Political Correspondent", ["Jane Doe"]),
        ("By our Foreign Staff", []),
        ("Guardian staff and agencies", []),
    ],
)
def test_byline_fallback_keeps_only_names(byline: str, names: list[str]) -> None:
    assert [author.name for author in authors_of(_draft(byline=byline))] == names


def test_authors_list_wins_over_byline_and_is_sanitized() -> None:
    draft = _draft(
        byline="By Someone Else",
        authors=[
            {
                "name": "Priya <i>Raman</i>",
                "role": "editor",
                "biography": "<p>Covers <b>energy</b>.</p><script>alert(1)</script>",
                "avatar_url": "javascript:alert(1)",
            },
            {"name": "Priya Raman"},
            {"name": ""},
        ],
    )
    assert authors_of(draft) == [
        Author(name="Priya Raman", slug="priya-raman", role="editor", biography="Covers energy.", avatar_url=None)
    ]


def test_author_avatar_keeps_https_urls() -> None:
    url = "https://images.example.org/a.jpg"
    draft = _draft(authors=[{"name": "A B", "avatar_url": url}])
    assert authors_of(draft)[0].avatar_url == url


def test_no_authors_and_no_byline_gives_none() -> None:
    assert authors_of(_draft()) == []


# Picture --------------------------------------------------------------------------------------------------


def _with_picture(**media: Any) -> NinjsDraft:
    return _draft(associations={"featuremedia": media})


def test_picture_is_the_largest_rendition() -> None:
    draft = _with_picture(
        type="picture",
        description_text="Caption <b>text</b>",
        body_text="Alt text",
        renditions={
            "thumbnail": {"href": "https://i.example/t.jpg", "width": 200, "height": 100},
            "baseImage": {"href": "https://i.example/b.jpg", "width": 1400, "height": 700},
            "viewImage": {"href": "https://i.example/v.jpg", "width": 2000, "height": 1000},
            "original": {"href": "https://i.example/o.jpg", "width": 1000, "height": 500},
        },
    )
    assert picture_of(draft) == Picture(
        href="https://i.example/v.jpg", width=2000, height=1000, caption="Caption text", alt="Alt text"
    )


def test_picture_ties_prefer_the_original() -> None:
    draft = _with_picture(
        renditions={
            "viewImage": {"href": "https://i.example/v.jpg"},
            "original": {"href": "https://i.example/o.jpg"},
        }
    )
    picture = picture_of(draft)
    assert picture is not None
    assert picture.href == "https://i.example/o.jpg"
    assert picture.alt == ""


def test_picture_alt_falls_back_to_caption() -> None:
    draft = _with_picture(description_text="A caption", renditions={"original": {"href": "https://i.example/o.jpg"}})
    picture = picture_of(draft)
    assert picture is not None
    assert picture.alt == "A caption"


def test_picture_skips_unsafe_urls_and_non_pictures() -> None:
    unsafe = _with_picture(
        renditions={
            "original": {"href": "javascript:alert(1)", "width": 4000, "height": 3000},
            "viewImage": {"href": "https://i.example/v.jpg", "width": 640, "height": 360},
        }
    )
    picture = picture_of(unsafe)
    assert picture is not None
    assert picture.href == "https://i.example/v.jpg"
    assert picture_of(_with_picture(renditions={"original": {"href": "data:image/png;base64,AAAA"}})) is None
    assert picture_of(_with_picture(type="video", renditions={"original": {"href": "https://v.example/a.mp4"}})) is None
    assert picture_of(_draft(associations={"featuremedia": None})) is None
    assert picture_of(_draft()) is None


def test_picture_credit_is_the_sanitized_featuremedia_byline() -> None:
    draft = _with_picture(
        byline="Photo: <b>John Smith</b>/Agency",
        renditions={"original": {"href": "https://i.example/o.jpg"}},
    )
    picture = picture_of(draft)
    assert picture is not None
    assert picture.credit == "Photo: John Smith/Agency"
    no_credit = picture_of(_with_picture(byline=" ", renditions={"original": {"href": "https://i.example/o.jpg"}}))
    assert no_credit is not None
    assert no_credit.credit is None


def test_picture_prefers_an_original_of_unknown_size_to_a_thumbnail() -> None:
    draft = _with_picture(
        renditions={
            "thumbnail": {"href": "https://i.example/t.jpg", "width": 200, "height": 150},
            "original": {"href": "https://i.example/o.jpg"},
        }
    )
    picture = picture_of(draft)
    assert picture is not None
    assert (picture.href, picture.width, picture.height) == ("https://i.example/o.jpg", None, None)


def test_picture_skips_images_browsers_cannot_show() -> None:
    draft = _with_picture(
        renditions={
            "original": {"href": "https://i.example/o.tif", "width": 6000, "height": 4000, "mimetype": "image/tiff"},
            "vector": {"href": "https://i.example/v.svg", "width": 1600, "height": 900, "mimetype": "image/svg+xml"},
            "viewImage": {"href": "https://i.example/v.jpg", "width": 1280, "height": 853, "mimetype": "image/jpeg"},
            "thumbnail": {"href": "https://i.example/t.jpg", "width": 200, "height": 133, "mimetype": "IMAGE/JPEG"},
        }
    )
    picture = picture_of(draft)
    assert picture is not None
    assert picture.href == "https://i.example/v.jpg"
    only_tiff = _with_picture(renditions={"original": {"href": "https://i.example/o.tif", "mimetype": "image/tiff"}})
    assert picture_of(only_tiff) is None


def test_picture_prefers_a_web_sized_rendition_to_a_huge_original() -> None:
    draft = _with_picture(
        renditions={
            "original": {"href": "https://i.example/o.jpg", "width": 6000, "height": 4000, "mimetype": "image/jpeg"},
            "baseImage": {"href": "https://i.example/b.jpg", "width": 1280, "height": 853},
            "viewImage": {"href": "https://i.example/v.jpg", "width": 640, "height": 427},
        }
    )
    picture = picture_of(draft)
    assert picture is not None
    assert (picture.href, picture.width) == ("https://i.example/b.jpg", 1280)
    oversized_only = _with_picture(
        renditions={
            "original": {"href": "https://i.example/o.jpg", "width": 6000, "height": 4000},
            "large": {"href": "https://i.example/l.jpg", "width": 3000, "height": 2000},
            "thumbnail": {"href": "https://i.example/t.jpg", "width": 200, "height": 133},
        }
    )
    picture = picture_of(oversized_only)
    assert picture is not None
    assert picture.href == "https://i.example/l.jpg"


# Corrections, versions, build -----------------------------------------------------------------------------


def _correction_draft(**fields: Any) -> NinjsDraft:
    base: dict[str, Any] = {
        "version": 2,
        "signal": [{"code": "sig:correction"}],
        "ednote": "Correction: An earlier version gave the wrong date.",
        "firstpublished": "2024-03-20T09:30:00Z",
        "versioncreated": "2024-03-21T12:00:00+02:00",
    }
    base.update(fields)
    return _draft(**base)


def test_correction_note_and_time() -> None:
    correction = correction_of(_correction_draft())
    assert correction is not None
    assert correction.note == "An earlier version gave the wrong date."
    assert correction.corrected_at == datetime(2024, 3, 21, 10, 0, tzinfo=UTC)


def test_correction_without_ednote_gets_the_default_sentence() -> None:
    correction = correction_of(_correction_draft(ednote=None))
    assert correction is not None
    assert correction.note == DEFAULT_CORRECTION_NOTE


def test_ednote_marked_as_correction_counts_without_signal() -> None:
    correction = correction_of(_correction_draft(signal=[], ednote="CORRECTION — spelling of a name"))
    assert correction is not None
    assert correction.note == "spelling of a name"


def test_no_correction_without_signal_or_marked_ednote() -> None:
    assert correction_of(_correction_draft(signal=[], ednote="Please check with legal")) is None


def test_correction_keeps_the_given_publication_date() -> None:
    original = datetime(2024, 3, 20, 9, 30, tzinfo=UTC)
    article = _build(
        _correction_draft(firstpublished="2024-03-21T09:59:00Z"),
        date_published=original,
        previous_paths=["/news/2024/03/20/old"],
    )
    assert article.date_published == original
    assert article.date_modified == datetime(2024, 3, 21, 10, 0, tzinfo=UTC)
    assert article.correction is not None
    assert article.previous_paths == ["/news/2024/03/20/old"]


def test_date_published_falls_back_in_order() -> None:
    both = _draft(firstcreated="2024-03-19T08:00:00Z", firstpublished="2024-03-19T09:00:00Z")
    assert _build(both).date_published == datetime(2024, 3, 19, 9, 0, tzinfo=UTC)
    created_only = _draft(firstcreated="2024-03-19T08:00:00+01:00")
    assert _build(created_only).date_published == datetime(2024, 3, 19, 7, 0, tzinfo=UTC)
    assert _build(_draft()).date_published == SEED_PUBLISHED


def test_date_modified_is_never_before_date_published() -> None:
    draft = _draft(versioncreated="2024-03-19T08:00:00Z")
    article = _build(draft, date_published=SEED_PUBLISHED)
    assert article.date_modified == SEED_PUBLISHED


def test_event_version_uses_version_else_versioncreated_millis() -> None:
    assert event_version(_draft(version=7)) == 7
    without_version = _draft(version=None, versioncreated="2024-03-20T09:30:00.123456Z")
    assert event_version(without_version) == 1710927000123


def test_build_article_sanitizes_and_copies() -> None:
    draft = _draft(
        headline="<b>Big</b> &amp; bold\x00 headline",
        body_html='<h1>Intro</h1><p onclick="x()">Text <a href="https://e.org">link</a></p><script>x</script>',
        description_html="<p>Stand<em>first</em></p>",
        language="EN-gb",
        byline="By <i>Ann</i> Lee",
        evolvedfrom="g-0",
    )
    article = _build(draft, story_root="g-0")
    assert article.headline == "Big & bold headline"
    assert article.body_html == (
        '<h2>Intro</h2><p>Text <a href="https://e.org" rel="noopener noreferrer nofollow">link</a></p>'
    )
    assert article.excerpt == "Standfirst"
    assert article.language == "en-gb"
    assert article.byline == "By Ann Lee"
    assert article.evolvedfrom == "g-0"
    assert article.story_root == "g-0"


def test_description_text_wins_over_body_for_the_excerpt() -> None:
    draft = _draft(description_text="Short standfirst.", body_html="<p>" + "word " * 200 + "</p>")
    assert _build(draft).excerpt == "Short standfirst."


def test_excerpt_from_body_skips_leading_captions() -> None:
    draft = _draft(body_html="<figure><img src='a.jpg'><figcaption>Photo: agency</figcaption></figure><p>Story.</p>")
    assert _build(draft).excerpt == "Story."


def test_japanese_article_gets_a_short_excerpt_and_a_plausible_reading_time() -> None:
    """A Japanese paragraph is one whitespace "word": the excerpt was the whole body, the count its paragraphs."""
    first = "東京都は二十日、首都直下地震に備えた新しい防災計画を発表した。"
    paragraph = first + "避難所の数を増やし、食料や水の備蓄を強化する。"
    body = "".join(f"<p>{paragraph}（{i}）</p>" for i in range(90))  # 5,388 characters; no two paragraphs alike
    draft = _draft(language="ja", body_html=body)
    article = _build(draft)
    assert article.excerpt.endswith("…")
    assert len(article.excerpt) <= 190  # 180 characters, the spaces between paragraphs and the ellipsis
    assert 2000 <= article.word_count <= 2500
    assert 8 <= article.reading_minutes <= 12


def test_headline_that_sanitizes_to_nothing_is_unpublishable() -> None:
    draft = _draft(headline="<script>alert(1)</script>")
    with pytest.raises(UnpublishableDraft, match="headline"):
        _build(draft)
    assert unpublishable_reason(draft) == ("headline", "the headline is empty once sanitized")


@pytest.mark.parametrize("body", ["<script>x()</script>", "<iframe src='https://v.example/e'></iframe>", "<p> </p>"])
def test_a_body_with_nothing_to_show_once_sanitized_is_unpublishable(body: str) -> None:
    draft = _draft(body_html=body)
    with pytest.raises(UnpublishableDraft, match="body"):
        _build(draft)
    assert unpublishable_reason(draft) == ("body_html", "the body has no text or picture once sanitized")


def test_a_body_of_one_picture_is_published() -> None:
    draft = _draft(body_html="<figure><img src='https://img.example/a.jpg' alt='Harbour'></figure>")
    assert unpublishable_reason(draft) is None
    assert "<img" in _build(draft).body_html


def test_draft_without_any_date_needs_one_from_the_handler() -> None:
    draft = _draft(versioncreated=None)
    with pytest.raises(UnpublishableDraft, match="date"):
        build_article(draft, slug="a-headline", url_path="/news/2024/03/20/a", previous_paths=[], story_root="g-1")
    article = build_article(
        draft,
        slug="a-headline",
        url_path="/news/2024/03/20/a",
        previous_paths=[],
        story_root="g-1",
        date_published=SEED_PUBLISHED,
    )
    assert article.date_modified == SEED_PUBLISHED


def test_naive_date_published_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        _build(_draft(), date_published=datetime(2024, 3, 20))
