"""The publisher's rendering: the page contracts readers, crawlers and newsroom tools rely on."""

from __future__ import annotations

import hashlib
import json
import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest
from pydantic import ValidationError

from services.ingest.sanitize import sanitize_html
from services.publisher.config import PublisherSettings
from services.publisher.rebuild import site_config
from services.publisher.render import (
    MAX_COMMENT_DEPTH,
    MAX_SITEMAP_URLS,
    Summary,
    asset_bytes,
    asset_path,
    author_profile,
    date_line,
    render_article,
    render_error,
    render_listing,
    render_news_sitemap,
    render_robots,
    render_rss,
    render_sitemap,
    render_sitemap_index,
)
from services.publisher.site import SiteConfig
from shared.contracts import (
    ArticlePublished,
    Author,
    CommentDecided,
    Correction,
    Picture,
    RelatedLink,
    Term,
)

SITE = SiteConfig(base_url="https://news.example", nav_sections=(("world", "World"), ("politics", "Politics")))
GUID = "urn:newsml:broadsheet:2024:putin-losses"
URL_PATH = "/russia-ukraine-war/2024/03/20/what-do-russias-losses-in-ukraine-mean-for-putin"
HEADLINE = "What Do Russia’s Losses in Ukraine Mean for Putin?"
SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
NEWS_NS = "{http://www.google.com/schemas/sitemap-news/0.9}"
VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)


# --- a small DOM, so assertions speak of elements rather than substrings -----------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    content: list[str | Node] = field(default_factory=list)

    def iter(self) -> list[Node]:
        found: list[Node] = []
        stack = list(reversed(self.children))
        while stack:
            node = stack.pop()
            found.append(node)
            stack.extend(reversed(node.children))
        return found

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        return [
            node
            for node in self.iter()
            if (tag is None or node.tag == tag)
            and all(node.attrs.get(key.rstrip("_")) == value for key, value in attrs.items())
        ]

    def find(self, tag: str | None = None, **attrs: str) -> Node:
        matches = self.find_all(tag, **attrs)
        assert len(matches) == 1, f"expected one <{tag} {attrs}>, found {len(matches)}"
        return matches[0]

    def by_id(self, element_id: str) -> Node:
        return self.find(None, id=element_id)

    def with_class(self, class_name: str) -> list[Node]:
        return [node for node in self.iter() if class_name in node.attrs.get("class", "").split()]

    def text(self) -> str:
        parts = [item if isinstance(item, str) else item.text() for item in self.content]
        return " ".join("".join(parts).split())

    def contains(self, other: Node) -> bool:
        cursor = other.parent
        while cursor is not None:
            if cursor is self:
                return True
            cursor = cursor.parent
        return False


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.current = self.root
        self.raw_attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.raw_attrs.extend(attrs)
        node = Node(tag, {name: value or "" for name, value in attrs}, parent=self.current)
        self.current.children.append(node)
        self.current.content.append(node)
        if tag not in VOID_ELEMENTS:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_ELEMENTS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        cursor: Node | None = self.current
        while cursor is not None and cursor.tag != tag:
            cursor = cursor.parent
        assert cursor is not None, f"stray </{tag}>"
        assert cursor.parent is not None, f"stray </{tag}>"
        self.current = cursor.parent

    def handle_data(self, data: str) -> None:
        self.current.content.append(data)


def parse(page: bytes) -> TreeBuilder:
    builder = TreeBuilder()
    builder.feed(page.decode("utf-8"))
    builder.close()
    return builder


def parse_xml(document: bytes) -> ET.Element:
    """Parses what the renderer produced, never outside input, so the stdlib parser is fine here."""
    return ET.fromstring(document)


# --- realistic events --------------------------------------------------------------------------------------

BODY_HTML = (
    "<p>Usually, a program on Russian state television would celebrate the Kremlin’s victories.</p>"
    "<p>However, the show on Sunday opened with an odd confession.</p>"
    "<h2>But Nothing of The Sort Occurred</h2>"
    "<p>On the contrary, the Russian army lost captured territory.</p>"
    '<figure><img src="https://cdn.news.example/nato.jpg" alt="NATO Assistance">'
    "<figcaption>NATO Assistance</figcaption></figure>"
    "<h2>However, Everything Changed After February 24</h2>"
    "<p>The events of the last six months demonstrate a colossal blunder.</p>"
)


def make_article(**changes: object) -> ArticlePublished:
    fields: dict[str, object] = {
        "guid": GUID,
        "version": 7,
        "url_path": URL_PATH,
        "slug": "what-do-russias-losses-in-ukraine-mean-for-putin",
        "headline": HEADLINE,
        "excerpt": "Russian state television admitted the most challenging week at the front.",
        "body_html": BODY_HTML,
        "section": Term(code="russia-ukraine-war", name="Russia-Ukraine war"),
        "tags": [Term(code="nato", name="NATO"), Term(code="kremlin", name="Kremlin")],
        "authors": [
            Author(
                name="muhammadahmad",
                slug="muhammadahmad",
                role="Correspondent",
                biography="Covers Russia and Eastern Europe.",
                avatar_url="https://cdn.news.example/avatars/ma.jpg",
            )
        ],
        "language": "en",
        "date_published": datetime(2024, 3, 20, 9, 30, tzinfo=UTC),
        "date_modified": datetime(2024, 3, 20, 14, 5, tzinfo=UTC),
        "picture": Picture(
            href="https://cdn.news.example/putin.jpg",
            width=1200,
            height=800,
            caption="Vladimir Putin in Moscow",
            alt="Vladimir Putin at a podium",
        ),
        "word_count": 1042,
        "reading_minutes": 5,
        "story_root": GUID,
    }
    fields.update(changes)
    return ArticlePublished.model_validate(fields)


def make_links() -> list[RelatedLink]:
    return [
        RelatedLink(
            guid="urn:related:pac-naqvi",
            url_path="/pakistan/2024/03/18/pac-is-seeking-assets-from-scs-justice-mazahar-naqvi",
            headline="PAC is Seeking Assets From SC’s Justice Mazahar Naqvi",
            excerpt="On Monday, the Parliament’s Public Accounts Committee (PAC) urged authorities to present",
            score=0.91,
        ),
        RelatedLink(
            guid="urn:related:kharkiv",
            url_path="/russia-ukraine-war/2024/03/12/kharkiv-counteroffensive",
            headline="Kharkiv Counteroffensive Explained",
            excerpt="How Ukraine retook the north-east.",
            score=0.72,
        ),
        RelatedLink(
            guid="urn:related:nato-aid",
            url_path="/world/2024/03/01/nato-aid-package",
            headline="NATO Agrees New Aid Package",
            excerpt="Allies pledge air defence.",
            score=0.55,
        ),
    ]


def make_comment(comment_id: str, minute: int, *, parent_id: str | None = None, **changes: object) -> CommentDecided:
    fields: dict[str, object] = {
        "id": comment_id,
        "article_guid": GUID,
        "parent_id": parent_id,
        "status": "approved",
        "actor": "pipeline",
        "decided_at": datetime(2024, 3, 20, 16, minute, tzinfo=UTC),
        "revision": 1,
        "author": f"Reader {comment_id}",
        "author_url": None,
        "body_html": f"<p>Comment text of {comment_id}.</p>",
        "submitted_at": datetime(2024, 3, 20, 15, minute, tzinfo=UTC),
    }
    fields.update(changes)
    return CommentDecided.model_validate(fields)


def make_comments() -> list[CommentDecided]:
    return [
        make_comment("c1", 1, author="Anna", author_url="https://anna.example/blog"),
        make_comment("c2", 2, parent_id="c1", author="Boris"),
        make_comment("c3", 3),
        make_comment("held", 4, status="pending", body_html="<p>Held text must not show.</p>"),
        make_comment("gone", 5, status="approved", body_html="<p>Removed later.</p>"),
        make_comment("gone", 5, status="removed", revision=2, body_html="<p>Removed later.</p>"),
    ]


def article_page(**changes: object) -> bytes:
    return render_article(make_article(**changes), make_links(), make_comments(), SITE)


def json_ld(document: Node) -> dict[str, object]:
    scripts = document.find_all("script", type="application/ld+json")
    assert len(scripts) == 1
    parsed = json.loads(scripts[0].text())
    assert isinstance(parsed, dict)
    return parsed


# --- the article page --------------------------------------------------------------------------------------


def test_article_has_one_h1_language_title_and_canonical() -> None:
    document = parse(article_page()).root

    assert [h1.text() for h1 in document.find_all("h1")] == [HEADLINE]
    assert document.find("html").attrs["lang"] == "en"
    assert document.find("title").text().startswith(HEADLINE)
    assert document.find("link", rel="canonical").attrs["href"] == f"https://news.example{URL_PATH}"
    assert document.find("meta", name="description").attrs["content"].startswith("Russian state television")
    assert document.find("meta", name="broadsheet:guid").attrs["content"] == GUID
    assert document.find("meta", name="broadsheet:version").attrs["content"] == "7"


def test_article_language_comes_from_the_article() -> None:
    document = parse(article_page(language="fr")).root
    assert document.find("html").attrs["lang"] == "fr"


@pytest.mark.parametrize(
    ("language", "direction"),
    [("ar", "rtl"), ("he-IL", "rtl"), ("fa", "rtl"), ("ur", "rtl"), ("ckb", "rtl"), ("uz-Arab", "rtl"),
     ("en", None), ("fr", None), ("ku-Latn", None), ("az-Latn", None)],
)
def test_right_to_left_articles_say_so(language: str, direction: str | None) -> None:
    """Browsers lay a page out left to right unless told: `lang` alone does not set the direction."""
    html_element = parse(article_page(language=language)).root.find("html")
    assert html_element.attrs["lang"] == language
    assert html_element.attrs.get("dir") == direction


def test_pages_in_the_sites_language_keep_their_bytes_without_dir() -> None:
    assert b'<html lang="en">' in article_page()
    assert b'<html lang="en">' in render_error(404, SITE)


def test_article_open_graph_tags() -> None:
    document = parse(article_page()).root
    og = {
        meta.attrs["property"]: meta.attrs["content"] for meta in document.find_all("meta") if "property" in meta.attrs
    }

    assert og["og:type"] == "article"
    assert og["og:title"] == HEADLINE
    assert og["og:description"].startswith("Russian state television")
    assert og["og:url"] == f"https://news.example{URL_PATH}"
    assert og["og:image"] == "https://cdn.news.example/putin.jpg"
    assert og["og:site_name"] == "Broadsheet"
    assert og["article:published_time"] == "2024-03-20T09:30:00+00:00"
    assert og["article:modified_time"] == "2024-03-20T14:05:00+00:00"
    assert og["article:section"] == "Russia-Ukraine war"


def test_article_without_picture_has_no_og_image_and_relative_pictures_become_absolute() -> None:
    without = parse(article_page(picture=None)).root
    assert not without.find_all("meta", property="og:image")
    assert "image" not in json_ld(without)

    relative = parse(article_page(picture=Picture(href="/media/p.jpg", alt="A map"))).root
    assert relative.find("meta", property="og:image").attrs["content"] == "https://news.example/media/p.jpg"


def test_article_json_ld_news_article() -> None:
    data = json_ld(parse(article_page()).root)

    assert data["@context"] == "https://schema.org"
    assert data["@type"] == "NewsArticle"
    assert data["headline"] == HEADLINE
    assert data["image"] == ["https://cdn.news.example/putin.jpg"]
    assert data["datePublished"] == "2024-03-20T09:30:00+00:00"
    assert data["dateModified"] == "2024-03-20T14:05:00+00:00"
    assert data["author"] == [
        {"@type": "Person", "name": "muhammadahmad", "url": "https://news.example/author/muhammadahmad"}
    ]
    assert data["publisher"] == {"@type": "Organization", "name": "Broadsheet", "url": "https://news.example/"}
    assert data["mainEntityOfPage"] == {"@type": "WebPage", "@id": f"https://news.example{URL_PATH}"}


def test_a_story_without_a_named_author_is_the_publications_own_in_json_ld() -> None:
    data = json_ld(parse(article_page(authors=[])).root)
    assert data["author"] == [{"@type": "Organization", "name": "Broadsheet", "url": "https://news.example/"}]


def test_a_lead_picture_that_the_body_already_shows_appears_once_where_the_body_puts_it() -> None:
    href = "https://cdn.news.example/putin.jpg?w=1200&h=800"
    inline = f'<p>Intro.</p><figure><img src="{href.replace("&", "&amp;")}" alt="x"></figure><p>More.</p>'
    once = parse(article_page(picture=Picture(href=href, alt="A podium"), body_html=inline)).root
    assert once.find_all("figure", class_="featured-picture") == []
    assert [img.attrs["src"] for img in once.find_all("img") if "avatars" not in img.attrs["src"]] == [href]

    elsewhere = '<p>Intro.</p><figure><img src="https://cdn.news.example/other.jpg" alt="x"></figure>'
    both = parse(article_page(picture=Picture(href=href, alt="A podium"), body_html=elsewhere)).root
    shown = [img.attrs["src"] for img in both.find_all("img") if "avatars" not in img.attrs["src"]]
    assert shown == [href, "https://cdn.news.example/other.jpg"]


def body_pictures(page: bytes) -> dict[str, dict[str, str]]:
    body = parse(page).root.with_class("story-body")[0]
    return {img.attrs["src"]: img.attrs for img in body.find_all("img")}


def test_with_no_picture_above_the_story_the_bodys_lead_picture_loads_first_and_the_rest_lazily() -> None:
    first, lead, last = (f"https://cdn.news.example/{n}.jpg" for n in ("first", "lead", "last"))
    body = "".join(
        sanitize_html(f'<p>Paragraph {n}.</p><figure><img src="{src}" alt="a > b"></figure>')
        for n, src in enumerate((first, lead, last))
    )
    assert body.count('loading="lazy"') == 3  # as the sanitizer leaves every body picture

    without_picture = body_pictures(article_page(picture=None, body_html=body))
    assert without_picture[first].get("fetchpriority") == "high" and "loading" not in without_picture[first]
    assert [without_picture[src].get("loading") for src in (lead, last)] == ["lazy", "lazy"]

    own = body_pictures(article_page(picture=Picture(href=lead, alt="The lead"), body_html=body))
    assert own[lead].get("fetchpriority") == "high" and "loading" not in own[lead]
    assert [own[src].get("loading") for src in (first, last)] == ["lazy", "lazy"]
    assert own[lead]["alt"] == "a > b"

    above = article_page(picture=Picture(href="https://cdn.news.example/top.jpg", alt="Top"), body_html=body)
    assert parse(above).root.find("figure", class_="featured-picture").find("img").attrs["fetchpriority"] == "high"
    assert all(a.get("loading") == "lazy" and "fetchpriority" not in a for a in body_pictures(above).values())


def test_each_comment_can_be_reported_from_the_page() -> None:
    document = parse(article_page()).root
    ids = [comment.attrs["id"].removeprefix("comment-") for comment in document.find_all("article", class_="comment")]
    forms = document.find_all("form", class_="comment-report")
    assert ids and [form.attrs["action"] for form in forms] == [f"/comments/{cid}/report" for cid in ids]
    for form in forms:
        assert form.attrs["method"] == "post"
        assert form.find("input", name="comment_post_ID").attrs["value"] == GUID


def test_headline_cannot_break_out_of_the_json_ld_script() -> None:
    hostile = "Putin </script><script>alert(1)</script> & <!-- friends"
    page = article_page(headline=hostile, excerpt="</script><script>alert(2)</script>")
    text = page.decode("utf-8")

    assert "</script><script>" not in text
    assert "<script>alert" not in text
    document = parse(page).root
    assert json_ld(document)["headline"] == hostile
    assert json_ld(document)["description"] == "</script><script>alert(2)</script>"
    assert [h1.text() for h1 in document.find_all("h1")] == [hostile]


def test_no_inline_styles_handlers_or_scripts_besides_json_ld() -> None:
    builder = parse(article_page())
    names = [name for name, _ in builder.raw_attrs]

    assert "style" not in names
    assert not [name for name in names if name.startswith("on")]
    scripts = builder.root.find_all("script")
    inline = [script for script in scripts if "src" not in script.attrs]
    assert [script.attrs.get("type") for script in inline] == ["application/ld+json"]
    external = [script.attrs["src"] for script in scripts if "src" in script.attrs]
    assert external == [asset_path("site.js")]
    assert all(src.startswith("/") for src in external)
    assert builder.root.find("link", rel="stylesheet").attrs["href"] == asset_path("site.css")


def test_article_landmarks_and_header_navigation() -> None:
    document = parse(article_page()).root
    for landmark in ("header", "nav", "main", "article", "aside", "footer"):
        assert document.find_all(landmark), landmark
    nav_links = [a.attrs["href"] for a in document.find("nav", class_="site-nav").find_all("a")]
    assert nav_links == ["/", "/section/world", "/section/politics"]


def test_article_section_date_line_byline_picture_and_tags() -> None:
    document = parse(article_page()).root

    breadcrumb = document.find("nav", class_="breadcrumb")
    assert "/section/russia-ukraine-war" in [a.attrs["href"] for a in breadcrumb.find_all("a")]
    assert document.with_class("dateline")[0].text() == "Wednesday, March 20 2024"
    byline = document.with_class("byline")[0]
    assert [a.attrs["href"] for a in byline.find_all("a")] == ["/author/muhammadahmad"]
    figure = document.find("figure", class_="featured-picture")
    image = figure.find("img")
    assert image.attrs == {
        "src": "https://cdn.news.example/putin.jpg",
        "alt": "Vladimir Putin at a podium",
        "width": "1200",
        "height": "800",
        "fetchpriority": "high",  # the top of the page, likely its largest paint: never deferred
    }
    assert figure.find("figcaption").text() == "Vladimir Putin in Moscow"
    assert [a.attrs["href"] for a in document.find("ul", class_="tags").find_all("a")] == ["/tag/nato", "/tag/kremlin"]
    body = document.with_class("story-body")[0]
    assert [h2.text() for h2 in body.find_all("h2")] == [
        "But Nothing of The Sort Occurred",
        "However, Everything Changed After February 24",
    ]
    assert body.find("figcaption").text() == "NATO Assistance"


def test_date_line_is_english_and_utc() -> None:
    assert date_line(datetime(2024, 3, 20, 9, 30, tzinfo=UTC)) == "Wednesday, March 20 2024"
    late_in_karachi = datetime(2024, 3, 21, 2, 0, tzinfo=timezone(timedelta(hours=5)))
    assert date_line(late_in_karachi) == "Wednesday, March 20 2024"
    assert date_line(datetime(2023, 12, 31, 23, 59)) == "Sunday, December 31 2023"


def test_correction_notice_only_when_corrected() -> None:
    assert not parse(article_page()).root.find_all("aside", class_="correction")
    corrected = make_article(
        correction=Correction(
            note="An earlier version misspelled Kupiansk.", corrected_at=datetime(2024, 3, 21, 8, tzinfo=UTC)
        )
    )
    document = parse(render_article(corrected, [], [], SITE)).root
    notice = document.find("aside", class_="correction")
    assert notice.text() == "Correction, March 21 2024: An earlier version misspelled Kupiansk."


def test_author_box() -> None:
    document = parse(article_page()).root
    box = document.find("section", class_="author-box")
    assert box.find("h2").text() == "About muhammadahmad"
    assert "Covers Russia and Eastern Europe." in box.text()
    assert box.find("img").attrs["src"] == "https://cdn.news.example/avatars/ma.jpg"
    assert box.find("img").attrs["alt"] == "muhammadahmad"


def test_check_also_shows_the_best_link_first_with_its_excerpt() -> None:
    document = parse(article_page()).root
    block = document.find(None, class_="check-also")

    assert block.tag == "section"
    assert block.find("h2").text() == "Check Also"
    links = block.find_all("a")
    assert [a.attrs["data-guid"] for a in links] == [
        "urn:related:pac-naqvi",
        "urn:related:kharkiv",
        "urn:related:nato-aid",
    ]
    assert [a.attrs["href"] for a in links] == [link.url_path for link in make_links()]
    lead = block.with_class("check-also-lead")[0]
    assert lead.find("a").text() == "PAC is Seeking Assets From SC’s Justice Mazahar Naqvi"
    assert "Public Accounts Committee (PAC) urged authorities" in lead.text()
    assert "How Ukraine retook" not in block.text()


def test_check_also_skips_the_article_itself_and_repeats() -> None:
    links = make_links()
    self_link = RelatedLink(guid=GUID, url_path=URL_PATH, headline=HEADLINE, excerpt="x", score=1.0)
    page = render_article(make_article(), [self_link, links[0], links[0], links[1]], [], SITE)
    block = parse(page).root.find(None, class_="check-also")
    assert [a.attrs["data-guid"] for a in block.find_all("a")] == ["urn:related:pac-naqvi", "urn:related:kharkiv"]


def test_no_check_also_without_links() -> None:
    page = render_article(make_article(), [], make_comments(), SITE)
    assert b"check-also" not in page
    assert b"Check Also" not in page
    assert b"data-guid" not in page


def test_comments_are_approved_only_threaded_and_counted() -> None:
    document = parse(article_page()).root
    section = document.find("section", id="comments")

    assert section.find("h2").text() == "3 Comments"
    shown = [node.attrs["id"] for node in section.find_all("article") if "comment" in node.attrs.get("class", "")]
    assert shown == ["comment-c1", "comment-c2", "comment-c3"]
    assert all(node.attrs["class"] == "comment" for node in section.find_all("article"))
    assert "Held text must not show." not in section.text()
    assert "Removed later." not in section.text()
    parent, reply, top = (document.by_id(f"comment-{cid}") for cid in ("c1", "c2", "c3"))
    assert parent.contains(reply)
    assert not parent.contains(top)
    assert not reply.contains(parent)


def test_comment_author_link_reply_link_and_date() -> None:
    document = parse(article_page()).root
    anna = document.by_id("comment-c1")
    author_links = [a for a in anna.find_all("a") if a.attrs.get("rel") == "nofollow ugc noopener"]
    assert [a.attrs["href"] for a in author_links] == ["https://anna.example/blog"]
    reply_links = [a for a in anna.find_all("a") if "comment-reply-link" in a.attrs.get("class", "")]
    reply_form = "/comments/c1/reply?comment_post_ID=urn%3Anewsml%3Abroadsheet%3A2024%3Aputin-losses"
    assert reply_links[0].attrs["href"] == reply_form
    assert reply_links[0].attrs["data-comment-id"] == "c1"
    assert "March 20 2024" in anna.find_all("time")[0].text()
    boris = document.by_id("comment-c2")
    assert not [a for a in boris.find_all("a") if a.attrs.get("rel") == "nofollow ugc noopener"]


def test_readers_words_take_their_own_direction() -> None:
    """A comment in Arabic under an English article, or the reverse, is laid out by its own first strong letter."""
    anna = parse(article_page()).root.by_id("comment-c1")
    authors = [p.attrs.get("dir") for p in anna.find_all("p") if "comment-author" in p.attrs.get("class", "")]
    bodies = [d.attrs.get("dir") for d in anna.find_all("div") if "comment-body" in d.attrs.get("class", "")]
    assert authors and bodies and set(authors) == set(bodies) == {"auto"}


def test_comment_author_url_must_be_http() -> None:
    hostile = make_comment("x1", 1, author="Mallory", author_url="javascript:alert(1)")
    page = render_article(make_article(), [], [hostile], SITE)
    assert b"javascript:" not in page
    assert parse(page).root.find("section", id="comments").find("h2").text() == "1 Comment"


def test_comment_count_headings() -> None:
    none = parse(render_article(make_article(), [], [], SITE)).root
    assert none.find("section", id="comments").find("h2").text() == "No comments yet"
    one = parse(render_article(make_article(), [], [make_comment("c1", 1)], SITE)).root
    assert one.find("section", id="comments").find("h2").text() == "1 Comment"


def test_comments_of_other_articles_are_ignored() -> None:
    stray = make_comment("other", 1, article_guid="urn:another")
    page = render_article(make_article(), [], [stray], SITE)
    assert b"comment-other" not in page


def test_replies_nest_at_most_five_deep_and_orphans_still_show() -> None:
    chain = [make_comment("d0", 0)]
    chain += [make_comment(f"d{i}", i, parent_id=f"d{i - 1}") for i in range(1, 8)]
    orphan = make_comment("orphan", 30, parent_id="held")
    document = parse(render_article(make_article(), [], [*chain, orphan], SITE)).root

    def nesting(node: Node) -> int:
        depth, cursor = 0, node.parent
        while cursor is not None:
            depth += cursor.tag == "article" and cursor.attrs.get("class") == "comment"
            cursor = cursor.parent
        return depth + 1

    depths = {f"d{i}": nesting(document.by_id(f"comment-d{i}")) for i in range(8)}
    assert depths == {"d0": 1, "d1": 2, "d2": 3, "d3": 4, "d4": 5, "d5": 5, "d6": 5, "d7": 5}
    assert max(depths.values()) == MAX_COMMENT_DEPTH
    assert nesting(document.by_id("comment-orphan")) == 1
    ids = [node.attrs["id"] for node in document.find_all("article", class_="comment")]
    assert ids == [
        "comment-d0",
        "comment-d1",
        "comment-d2",
        "comment-d3",
        "comment-d4",
        "comment-d5",
        "comment-d6",
        "comment-d7",
        "comment-orphan",
    ]


def test_comment_form_contract() -> None:
    page = article_page()
    text = page.decode("utf-8")
    document = parse(page).root
    respond = document.find("section", id="respond")

    assert respond.find("h2").text() == "Leave a Reply"
    assert "<p>Your email address will not be published. Required fields are marked *</p>" in text
    assert '<form id="commentform" class="comment-form" method="post" action="/comments">' in text
    form = respond.find("form")
    assert (form.attrs["method"], form.attrs["action"]) == ("post", "/comments")
    controls = {node.attrs["name"]: node for node in form.iter() if node.tag in ("input", "textarea")}
    assert set(controls) == {
        "comment",
        "author",
        "email",
        "url",
        "website_url",
        "comment_post_ID",
        "comment_parent",
        "form_token",
    }
    assert controls["comment"].tag == "textarea"
    for required in ("comment", "author", "email"):
        assert "required" in controls[required].attrs
    assert "required" not in controls["url"].attrs
    assert controls["email"].attrs["type"] == "email"
    assert controls["comment_post_ID"].attrs == {"type": "hidden", "name": "comment_post_ID", "value": GUID}
    assert controls["comment_parent"].attrs["value"] == "0"
    assert controls["form_token"].attrs["value"] == "__FORM_TOKEN__"
    assert controls["form_token"].attrs["type"] == "hidden"
    honeypot = controls["website_url"]
    assert (honeypot.attrs["tabindex"], honeypot.attrs["autocomplete"]) == ("-1", "off")
    assert "hp" in (honeypot.parent.attrs.get("class", "") if honeypot.parent else "")

    labels = {label.attrs["for"]: label.text() for label in form.find_all("label")}
    visible = [node for node in controls.values() if node.attrs.get("type") != "hidden"]
    for control in visible:
        assert control.attrs["id"] in labels, control.attrs["name"]
    assert labels["website_url"] == "Leave this field empty"
    assert form.find("button", type="submit").text() == "Post Comment"

    notice = document.by_id("comment-pending")
    assert '<div id="comment-pending" class="notice" role="status">Your comment is awaiting moderation.</div>' in text
    assert notice.attrs["role"] == "status"


def test_comment_email_never_rendered() -> None:
    # CommentDecided has no e-mail; even if a producer sends one it is dropped by the contract and not shown.
    leaky = CommentDecided.model_validate({**make_comment("c9", 9).model_dump(), "email": "secret@reader.example"})
    page = render_article(make_article(), [], [leaky], SITE)
    assert b"secret@reader.example" not in page


def test_article_rendering_is_deterministic() -> None:
    first = article_page()
    shuffled_comments = make_comments()
    random.Random(4).shuffle(shuffled_comments)
    second = render_article(make_article(), make_links(), shuffled_comments, SITE)
    assert first == second
    assert first == article_page()


def test_pending_notice_shown_only_as_fragment_target() -> None:
    css = asset_bytes("site.css")[0].decode("utf-8")
    assert ".notice {\n  display: none;" in css
    assert ".notice:target {\n  display: block;" in css


def test_site_js_builds_pending_comments_without_inner_html() -> None:
    js = asset_bytes("site.js")[0].decode("utf-8")
    assert "innerHTML" not in js
    assert "textContent" in js
    assert "localStorage" in js
    assert "comment_parent" in js
    assert "Awaiting moderation" in js


# --- assets -----------------------------------------------------------------------------------------------


def test_asset_paths_carry_a_content_hash() -> None:
    for name, content_type in (("site.css", "text/css"), ("site.js", "text/javascript")):
        content, served_type = asset_bytes(name)
        assert served_type.startswith(content_type)
        digest = hashlib.sha256(content).hexdigest()
        assert asset_path(name) == f"/static/{name}?v={digest[:12]}"


def test_unknown_assets_are_refused() -> None:
    with pytest.raises(KeyError):
        asset_bytes("../render.py")
    with pytest.raises(KeyError):
        asset_path("secrets.txt")


# --- summaries and listings -------------------------------------------------------------------------------


def make_summaries(count: int) -> list[Summary]:
    return [
        Summary.of(
            make_article(
                guid=f"urn:story:{n}",
                url_path=f"/world/2024/03/{n + 1:02d}/story-{n}",
                slug=f"story-{n}",
                headline=f"Story number {n}",
                section=Term(code="world", name="World"),
                date_published=datetime(2024, 3, n + 1, 8, tzinfo=UTC),
                date_modified=datetime(2024, 3, n + 1, 9 + n % 3, tzinfo=UTC),
                picture=None if n % 2 else Picture(href=f"https://cdn.news.example/{n}.jpg", alt=f"Picture {n}"),
            )
        )
        for n in range(count)
    ]


def test_summary_json_round_trip_is_compact_and_deterministic() -> None:
    summary = Summary.of(make_article())
    encoded = summary.to_json()

    assert Summary.from_json(encoded) == summary
    assert Summary.from_json(encoded.encode("utf-8")) == summary
    assert Summary.from_json(encoded).to_json() == encoded
    assert '": ' not in encoded
    assert '", "' not in encoded
    assert json.loads(encoded)["guid"] == GUID
    assert summary.authors[0].name == "muhammadahmad"


def test_listing_page_with_pagination_and_feeds() -> None:
    items = make_summaries(3)
    page = render_listing(
        kind="section", title="World", path="/section/world", items=items, page=2,
        newer_url="/section/world/page/3", older_url="/section/world/page/1", site=SITE
    )
    document = parse(page).root

    assert len(document.find_all("h1")) == 1
    assert "World" in document.find("h1").text()
    assert document.find("link", rel="canonical").attrs["href"] == "https://news.example/section/world/page/2"
    assert document.find("link", rel="prev").attrs["href"] == "/section/world/page/3"
    assert document.find("link", rel="next").attrs["href"] == "/section/world/page/1"
    assert document.find("a", rel="prev").attrs["href"] == "/section/world/page/3"
    assert document.find("a", rel="next").attrs["href"] == "/section/world/page/1"
    feeds = [link.attrs["href"] for link in document.find_all("link", rel="alternate")]
    assert feeds == ["/feed.xml", "/section/world/feed.xml"]
    summaries = document.find_all("article", class_="summary")
    assert [node.find("h2").find("a").attrs["href"] for node in summaries] == [item.url_path for item in items]
    assert summaries[0].with_class("summary-excerpt")[0].text().startswith("Russian state television")
    assert summaries[0].find("time").text() == "Friday, March 1 2024"
    assert summaries[0].find("a", class_="summary-section").attrs["href"] == "/section/world"
    assert "style" not in [name for name, _ in parse(page).raw_attrs]
    assert page == render_listing(
        kind="section", title="World", path="/section/world", items=items, page=2,
        newer_url="/section/world/page/3", older_url="/section/world/page/1", site=SITE
    )


def test_home_first_page_has_only_next_and_the_site_feed() -> None:
    document = parse(
        render_listing(
            kind="home", title="Latest", path="/", items=make_summaries(2), page=0,
            newer_url=None, older_url="/page/2", site=SITE,
        )
    ).root
    assert document.find("link", rel="canonical").attrs["href"] == "https://news.example/"
    assert not document.find_all("link", rel="prev")
    assert document.find("link", rel="next").attrs["href"] == "/page/2"
    assert [link.attrs["href"] for link in document.find_all("link", rel="alternate")] == ["/feed.xml"]
    assert document.find("html").attrs["lang"] == "en"


def test_an_authors_front_page_presents_them_as_their_latest_story_does() -> None:
    older, newer = (
        Summary.of(make_article(guid=f"urn:story:{n}", authors=[
            Author(name="Dana Roe", slug="dana-roe", role=role, biography=bio, avatar_url=avatar),
            Author(name="Sam Poe", slug="sam-poe", biography="Sam edits."),
        ]))
        for n, role, bio, avatar in (
            (1, "trainee", "Dana joined in 2023.", None),
            (2, "Moscow correspondent", "Dana covers Russia <and> Ukraine.", "https://cdn.news.example/dana.jpg"),
        )
    )
    profile = author_profile("dana-roe", [newer, older])
    assert profile is not None and profile.role == "Moscow correspondent"
    assert author_profile("nobody", [newer, older]) is None

    page = render_listing(kind="author", title="Dana Roe", path="/author/dana-roe", items=[newer, older], page=0,
                          newer_url=None, older_url=None, site=SITE, profile=profile)
    about = parse(page).root.find("section", class_="author-profile")
    assert about.attrs["aria-label"] == "About Dana Roe"
    assert about.find("p", class_="author-role").text() == "Moscow correspondent"
    assert about.find("p", class_="author-biography").text() == "Dana covers Russia <and> Ukraine."
    assert b"Russia &lt;and&gt; Ukraine" in page
    assert about.find("img", class_="avatar").attrs["src"] == "https://cdn.news.example/dana.jpg"
    assert "Dana joined" not in page.decode()

    bare = render_listing(kind="author", title="Sam Poe", path="/author/sam-poe", items=[newer], page=0,
                          newer_url=None, older_url=None, site=SITE,
                          profile=Author(name="Sam Poe", slug="sam-poe"))
    assert b"author-profile" not in bare  # nothing to say: no empty box


def test_empty_listing_has_no_pagination() -> None:
    document = parse(
        render_listing(
            kind="tag", title="NATO", path="/tag/nato", items=[], page=0, newer_url=None, older_url=None, site=SITE
        )
    ).root
    assert not document.find_all("nav", class_="pagination")
    assert not document.find_all("article")
    assert len(document.find_all("h1")) == 1


# --- feeds and sitemaps -----------------------------------------------------------------------------------


def test_rss_feed() -> None:
    items = make_summaries(3)
    feed = parse_xml(render_rss(title="World — Broadsheet", path="/section/world", items=items, site=SITE))

    assert feed.tag == "rss"
    assert feed.attrib["version"] == "2.0"
    channel = feed.find("channel")
    assert channel is not None
    assert channel.findtext("title") == "World — Broadsheet"
    assert channel.findtext("link") == "https://news.example/section/world"
    self_link = channel.find("{http://www.w3.org/2005/Atom}link")
    assert self_link is not None
    assert self_link.attrib["href"] == "https://news.example/section/world/feed.xml"
    newest_modified = max(item.date_modified for item in items)
    assert channel.findtext("lastBuildDate") == "Sun, 03 Mar 2024 11:00:00 GMT"
    assert newest_modified == datetime(2024, 3, 3, 11, tzinfo=UTC)
    entries = channel.findall("item")
    assert [entry.findtext("guid") for entry in entries] == [item.guid for item in items]
    assert {entry.find("guid").attrib["isPermaLink"] for entry in entries} == {"false"}  # type: ignore[union-attr]
    assert entries[0].findtext("link") == "https://news.example/world/2024/03/01/story-0"
    assert entries[0].findtext("pubDate") == "Fri, 01 Mar 2024 08:00:00 GMT"
    assert entries[0].findtext("{http://purl.org/dc/elements/1.1/}creator") == "muhammadahmad"


def test_rss_feed_language_is_the_one_its_items_share_else_the_sites() -> None:
    arabic = [Summary.of(make_article(guid=f"urn:ar:{n}", language="ar")) for n in range(2)]
    feed = parse_xml(render_rss(title="عربي", path="/section/arabic", items=arabic, site=SITE))
    assert feed.findtext("channel/language") == "ar"
    assert feed.findall("channel/item/{http://purl.org/dc/elements/1.1/}language") == []

    mixed = [*arabic, *make_summaries(1)]
    feed = parse_xml(render_rss(title="Broadsheet", path="/", items=mixed, site=SITE))
    assert feed.findtext("channel/language") == "en"
    languages = [item.findtext("{http://purl.org/dc/elements/1.1/}language") for item in feed.findall("channel/item")]
    assert languages == ["ar", "ar", None]


def test_a_listing_marks_items_in_another_language() -> None:
    items = [Summary.of(make_article(guid="urn:ar:1", language="ar")), *make_summaries(1)]
    page = render_listing(kind="home", title="Latest", path="/", items=items, page=0, newer_url=None,
                          older_url=None, site=SITE)
    summaries = parse(page).root.find_all("article")
    assert summaries[0].attrs.get("lang") == "ar" and summaries[0].attrs.get("dir") == "rtl"
    assert "lang" not in summaries[1].attrs and "dir" not in summaries[1].attrs


def test_nav_sections_setting_reaches_every_pages_header() -> None:
    settings = PublisherSettings(site_nav_sections="world=World, business ,world=Again,uk=United Kingdom")
    site = site_config(settings)
    assert site.nav_sections == (("world", "World"), ("business", "business"), ("uk", "United Kingdom"))
    for page in (render_error(404, site), render_article(make_article(), [], [], site)):
        nav = parse(page).root.find("nav", class_="site-nav")
        assert [(a.attrs["href"], a.text()) for a in nav.find_all("a")] == [
            ("/", "Home"), ("/section/world", "World"), ("/section/business", "business"),
            ("/section/uk", "United Kingdom"),
        ]
    assert site_config(PublisherSettings()).nav_sections == ()
    for bad in ("=World", "world=", "world=World,=x"):
        with pytest.raises(ValidationError):
            PublisherSettings(site_nav_sections=bad)


def test_rss_feed_accepts_the_feed_path_and_an_empty_list() -> None:
    feed = parse_xml(render_rss(title="Broadsheet", path="/feed.xml", items=[], site=SITE))
    channel = feed.find("channel")
    assert channel is not None
    assert channel.findtext("link") == "https://news.example/"
    assert channel.find("lastBuildDate") is None
    assert channel.findall("item") == []


def test_rss_escapes_markup_in_headlines() -> None:
    items = [Summary.of(make_article(headline="Tom & Jerry <b>return</b>"))]
    feed = parse_xml(render_rss(title="Broadsheet", path="/", items=items, site=SITE))
    assert feed.findtext("channel/item/title") == "Tom & Jerry <b>return</b>"


def test_sitemap() -> None:
    urls = [("/", datetime(2024, 3, 20, 14, tzinfo=UTC)), (URL_PATH, datetime(2024, 3, 20, 14, 5, tzinfo=UTC))]
    root = parse_xml(render_sitemap(urls, SITE))

    assert root.tag == f"{SITEMAP_NS}urlset"
    locs = [url.findtext(f"{SITEMAP_NS}loc") for url in root.findall(f"{SITEMAP_NS}url")]
    assert locs == ["https://news.example/", f"https://news.example{URL_PATH}"]
    assert root.findall(f"{SITEMAP_NS}url")[1].findtext(f"{SITEMAP_NS}lastmod") == "2024-03-20T14:05:00+00:00"


def test_sitemap_refuses_more_than_the_limit() -> None:
    moment = datetime(2024, 3, 20, tzinfo=UTC)
    with pytest.raises(ValueError, match="split"):
        render_sitemap([(f"/a/{n}", moment) for n in range(MAX_SITEMAP_URLS + 1)], SITE)


def test_sitemap_index() -> None:
    parts = [
        ("/sitemaps/1.xml", datetime(2024, 3, 19, tzinfo=UTC)),
        ("/sitemaps/2.xml", datetime(2024, 3, 20, tzinfo=UTC)),
    ]
    root = parse_xml(render_sitemap_index(parts, SITE))
    assert root.tag == f"{SITEMAP_NS}sitemapindex"
    assert [node.findtext(f"{SITEMAP_NS}loc") for node in root.findall(f"{SITEMAP_NS}sitemap")] == [
        "https://news.example/sitemaps/1.xml",
        "https://news.example/sitemaps/2.xml",
    ]


def test_news_sitemap() -> None:
    items = [Summary.of(make_article(headline="Tom & Jerry", language="en-GB")), *make_summaries(1)]
    root = parse_xml(render_news_sitemap(items, SITE))

    assert root.tag == f"{SITEMAP_NS}urlset"
    first = root.findall(f"{SITEMAP_NS}url")[0]
    assert first.findtext(f"{SITEMAP_NS}loc") == f"https://news.example{URL_PATH}"
    news = first.find(f"{NEWS_NS}news")
    assert news is not None
    assert news.findtext(f"{NEWS_NS}publication/{NEWS_NS}name") == "Broadsheet"
    assert news.findtext(f"{NEWS_NS}publication/{NEWS_NS}language") == "en"
    assert news.findtext(f"{NEWS_NS}publication_date") == "2024-03-20T09:30:00+00:00"
    assert news.findtext(f"{NEWS_NS}title") == "Tom & Jerry"
    assert len(root.findall(f"{SITEMAP_NS}url")) == 2


def test_robots() -> None:
    robots = render_robots(SITE).decode("utf-8")
    lines = robots.splitlines()
    assert "User-agent: *" in lines
    assert "Allow: /" in lines
    assert not [line for line in lines if line.startswith("Disallow: /")]
    assert "Sitemap: https://news.example/sitemap.xml" in lines
    assert "Sitemap: https://news.example/news-sitemap.xml" in lines


@pytest.mark.parametrize(("status", "heading"), [(404, "Not found"), (410, "Gone: this article has been removed")])
def test_error_pages(status: int, heading: str) -> None:
    document = parse(render_error(status, SITE)).root  # type: ignore[arg-type]
    assert [h1.text() for h1 in document.find_all("h1")] == [heading]
    assert document.find("meta", name="robots").attrs["content"] == "noindex"
    assert not document.find_all("link", rel="canonical")


def test_the_lead_pictures_credit_is_shown_with_its_caption() -> None:
    """Agency pictures are licensed on condition that the credit shows; without one, the caption alone."""
    credited = Picture(href="https://cdn.news.example/a.jpg", caption="Cranes at dawn", credit="Photo: J. Smith/Agency")
    figure = parse(render_article(make_article(picture=credited), [], [], SITE)).root.find(
        "figure", class_="featured-picture"
    )
    assert figure.find("figcaption").text() == "Cranes at dawn Photo: J. Smith/Agency"
    assert figure.find("span", class_="credit").text() == "Photo: J. Smith/Agency"
    only_credit = Picture(href="https://cdn.news.example/a.jpg", credit="Reuters")
    page = render_article(make_article(picture=only_credit), [], [], SITE).decode()
    assert '<figcaption><span class="credit">Reuters</span></figcaption>' in page
