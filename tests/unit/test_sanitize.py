"""The sanitizer is the only thing between newsroom copy and readers' browsers: attack it."""

from __future__ import annotations

import html
import math
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.sanitize import (
    _CONTROLS,
    _IDEOGRAPHIC,
    _SOUTHEAST_ASIAN,
    EXTERNAL_LINK_REL,
    _collapse_scanned,
    _collapse_whitespace,
    _fast_text_blocks,
    _is_printable,
    _TextExtractor,
    collapse_duplicate_blocks,
    make_excerpt,
    plain_text,
    reading_minutes,
    sanitize_html,
    sanitize_text,
    word_count,
)

FORBIDDEN_TAGS = {
    "script", "style", "svg", "math", "iframe", "noscript", "object", "embed", "form", "input", "textarea",
    "frame", "frameset", "base", "meta", "link", "template", "button", "select", "option", "applet", "xmp",
}  # fmt: skip
DANGEROUS_SCHEMES = ("javascript:", "data:", "vbscript:", "livescript:")

XSS_VECTORS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=x OnErRoR=alert(1)>",
    '<img src="x" onerror = "alert(1)" >',
    "<img/src=x/onerror=alert(1)>",
    '<img src="javascript:alert(1)">',
    "<img src=JaVaScRiPt:alert(1)>",
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JAVASCRIPT:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="\x01javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="jav\tascript:alert(1)">x</a>',
    '<a href="jav&#x0A;ascript:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="javascript&colon;alert(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="x" onclick="alert(1)" onmouseover="alert(2)">x</a>',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<svg><a xlink:href='javascript:alert(1)'><text>x</text></a></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
    "<math><mi xlink:href='javascript:alert(1)'>x</mi></math>",
    "<svg></p><style><a id='</style><img src=1 onerror=alert(1)>'>",
    "<svg><p><style><img src=x onerror=alert(1)></style></p></svg>",
    "<form><math><mtext></form><form><mglyph><style></math><img src onerror=alert(1)>",
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<style>body{background:url(javascript:alert(1))}</style>",
    '<p style="background:url(javascript:alert(1))">x</p>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    "<noscript><style></noscript><img src=x onerror=alert(1)></style></noscript>",
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<form action="javascript:alert(1)"><button>go</button></form>',
    '<input autofocus onfocus="alert(1)">',
    '<details open ontoggle="alert(1)">x</details>',
    '<body onload="alert(1)">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    "<template><img src=x onerror=alert(1)></template>",
    "<!--<img src=x onerror=alert(1)>-->",
    "<![CDATA[<img src=x onerror=alert(1)>]]>",
    '<p title="&quot; onmouseover=alert(1) x=&quot;">x</p>',
    "<xmp><img src=x onerror=alert(1)></xmp>",
    "<textarea><img src=x onerror=alert(1)></textarea>",
    '<a href="https://ok.example" onclick="alert(1)">ok</a>',
    '<img src="https://ok.example/x.jpg" onload="alert(1)" alt="x">',
    '<blockquote cite="javascript:alert(1)">x</blockquote>',
    '<table background="javascript:alert(1)"><tr><td>x</td></tr></table>',
    '<div style="x:expression(alert(1))">x</div>',
    "<h1 onclick=alert(1)>x</h1>",
    '<a href="https://ok.example"\nonclick=alert(1)>x</a>',
    "<img src=`x`onerror=alert(1)>",
    '<a href="java\u0000script:alert(1)">x</a>',
]


class _Inventory(HTMLParser):
    """Every element and attribute a browser would build from the output."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend((tag, name, value or "") for name, value in attrs)

    handle_startendtag = handle_starttag


def _inventory(markup: str) -> _Inventory:
    inventory = _Inventory()
    inventory.feed(markup)
    inventory.close()
    return inventory


def _assert_inert(markup: str) -> None:
    lowered = markup.lower()
    assert "<script" not in lowered
    # Sanitized output always double-quotes attribute values; blank them so only names are searched.
    assert not re.search(r"<[^>]*\son\w+\s*=", re.sub(r'"[^"]*"', '""', lowered)), markup
    inventory = _inventory(markup)
    assert not FORBIDDEN_TAGS & set(inventory.tags), markup
    for _tag, name, value in inventory.attributes:
        assert not name.startswith("on"), markup
        assert name not in ("style", "srcdoc", "formaction", "action", "background", "xlink:href"), markup
        compact = re.sub(r"[\x00-\x20]", "", html.unescape(value)).lower()
        if name in ("href", "src", "cite"):
            assert not compact.startswith(DANGEROUS_SCHEMES), markup


@pytest.mark.parametrize("vector", XSS_VECTORS)
def test_attack_vectors_come_out_inert(vector: str) -> None:
    _assert_inert(sanitize_html(vector))
    _assert_inert(sanitize_html(f"<p>before</p>{vector}<p>after</p>"))


@pytest.mark.parametrize("vector", XSS_VECTORS)
def test_sanitized_output_is_stable_when_sanitized_again(vector: str) -> None:
    once = sanitize_html(vector)
    assert sanitize_html(once) == once


def test_script_content_is_dropped_not_shown_as_text() -> None:
    assert sanitize_html("<p>a</p><script>alert('x')</script><p>b</p>") == "<p>a</p><p>b</p>"
    assert "alert" not in sanitize_html("<style>p{}</style><svg><text>alert</text></svg>")


@pytest.mark.parametrize("tag", ["iframe", "noscript", "object", "template", "textarea", "form", "svg", "math"])
def test_embedded_and_fallback_content_is_dropped_with_its_element(tag: str) -> None:
    assert sanitize_html(f"<p>kept</p><{tag}>Please enable JavaScript</{tag}>") == "<p>kept</p>"


def test_article_markup_survives() -> None:
    markup = (
        "<h2>Heading</h2><h3>Sub</h3><h4>Minor</h4>"
        "<p>Text with <em>em</em>, <strong>strong</strong>, <b>b</b>, <i>i</i>, x<sup>2</sup>, H<sub>2</sub>O,"
        ' <code>code</code>, <cite>Cite</cite>, <q>q</q>, <abbr title="North Atlantic Treaty Organization">NATO'
        "</abbr>, <small>small</small><br>next line</p><hr>"
        '<figure><img src="/media/a.jpg" alt="Alt text" width="1200" height="675" loading="lazy">'
        "<figcaption>Cap</figcaption>"
        "</figure><blockquote><p>Quoted</p></blockquote><ul><li>one</li></ul><ol><li>two</li></ol>"
        "<table><caption>T</caption><thead><tr><th>h</th></tr></thead><tbody><tr><td>d</td></tr></tbody></table>"
        "<pre>pre  formatted</pre>"
    )
    assert sanitize_html(markup) == markup


def test_every_process_sanitizes_to_the_same_bytes() -> None:
    """Replicas must agree byte for byte (events and pages are compared and fenced by content); ammonia keeps some
    of its settings in hash maps whose order is drawn per process."""
    markup = (
        '<p lang="en" dir="ltr" title="t">x <a href="https://example.org/" title="e">link</a></p>'
        '<img src="a.jpg" alt="A" width="10" height="20" title="T" lang="en"><td colspan="2" rowspan="3">c</td>'
    )
    program = f"from services.ingest.sanitize import sanitize_html; print(sanitize_html({markup!r}))"
    outputs = {
        subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                       cwd=Path(__file__).resolve().parents[2]).stdout
        for _ in range(8)
    }
    assert len(outputs) == 1, outputs


def test_pictures_in_a_body_load_as_the_reader_scrolls_whatever_the_author_asked() -> None:
    for asked in ("", ' loading="eager"', ' loading="lazy"', ' fetchpriority="high"'):
        cleaned = sanitize_html(f'<p>Text</p><img src="a.jpg" alt="A"{asked}>')
        assert cleaned == '<p>Text</p><img src="a.jpg" alt="A" loading="lazy">', asked


def test_presentational_and_unknown_attributes_are_removed() -> None:
    cleaned = sanitize_html('<p class="x" id="y" style="color:red" data-track="1">t</p>')
    assert cleaned == "<p>t</p>"


def test_image_sizes_must_be_numbers() -> None:
    cleaned = sanitize_html('<img src="a.jpg" width="100%" height=" 675 ">')
    assert cleaned == '<img src="a.jpg" height="675" loading="lazy">'


def test_external_links_get_rel_and_relative_links_do_not() -> None:
    cleaned = sanitize_html(
        '<p><a href="https://example.org/report" title="Report" rel="dofollow" target="_blank">ext</a>'
        ' <a href="//cdn.example.org/x">proto</a> <a href="/world/2024/03/20/x">int</a>'
        ' <a href="#notes">anchor</a> <a href="mailto:desk@example.org">mail</a></p>'
    )
    assert cleaned == (
        f'<p><a href="https://example.org/report" title="Report" rel="{EXTERNAL_LINK_REL}">ext</a>'
        f' <a href="//cdn.example.org/x" rel="{EXTERNAL_LINK_REL}">proto</a> <a href="/world/2024/03/20/x">int</a>'
        ' <a href="#notes">anchor</a> <a href="mailto:desk@example.org">mail</a></p>'
    )
    assert "target" not in cleaned


@pytest.mark.parametrize(
    "href",
    ["/\\evil.example/a", "\\\\evil.example/b", "/&#9;/evil.example/c", "/&#10;/evil.example/d", " //evil.example/e",
     "\\/evil.example/f", "HTTPS://evil.example/g", "https:evil.example/h"],
)
def test_links_a_browser_takes_off_site_get_rel(href: str) -> None:
    """Browsers read a backslash as a slash and drop tabs and newlines in URLs (WHATWG URL parsing)."""
    assert f'rel="{EXTERNAL_LINK_REL}"' in sanitize_html(f'<p><a href="{href}">x</a></p>')


def test_rel_is_not_fooled_by_markup_in_attribute_values() -> None:
    cleaned = sanitize_html('<p><a title="&lt;a href=&quot;https://x&quot;&gt;" href="/local">t</a></p>')
    assert "rel=" not in cleaned


def test_h1_is_demoted_to_h2() -> None:
    assert sanitize_html("<H1 class='x'>Title</h1><p>t</p>") == "<h2>Title</h2><p>t</p>"
    assert sanitize_html('<h1 lang="fr" title=t>Titre</h1>') == '<h2 lang="fr" title="t">Titre</h2>'


def test_disallowed_wrappers_are_unwrapped_keeping_their_text() -> None:
    assert sanitize_html("<div><span>kept</span> <font>text</font></div>") == "kept text"


def test_output_is_deterministic() -> None:
    markup = '<p><a href="https://e.org/a" title="t">x</a><img src="b.jpg" alt="a" width="2" height="1"></p>'
    assert len({sanitize_html(markup) for _ in range(20)}) == 1


def test_controls_and_lone_surrogates_are_removed() -> None:
    cleaned = sanitize_html("<p>a\x00b\x0bc\ud800d\u202ee</p>")
    assert cleaned == "<p>abcde</p>"
    assert sanitize_html("<p>a&#x0B;b&#x202E;c&#x7f;d</p>") == "<p>abcd</p>"
    cleaned.encode("utf-8")


markup_pieces = st.sampled_from(
    [
        "<p>", "</p>", "<h1>", "</h1>", "<a href='https://e.org'>", "<a href='/x'>", "</a>", "<img src=x>",
        "<script>", "</script>", "<svg>", "</svg>", "<math>", "<style>", "<br>", "<figure>", "<figcaption>",
        "</figcaption>", " onerror=alert(1) ", "javascript:", "&lt;", "&amp;", "text", " ", "\n", "<em>", "</em>",
        "<noscript>", "<table>", "<td>", "<li>", "\"", "'", ">", "<",
    ]
)  # fmt: skip


nesting_pieces = st.sampled_from(
    [
        "<p>", "</p>", "<h1>", "<h1 lang=en>", "</h1>", "<h2>", "</h2>", "<h3>", "</h3>", "<a href='/x'>", "<a>",
        "</a>", "<b>", "</b>", "<em>", "</em>", "<img src=x>", "<br>", "<hr>", "<pre>", "</pre>", "\n", "\n\n",
        "<ul>", "</ul>", "<ol>", "<li>", "</li>", "<table>", "</table>", "<caption>", "<thead>", "<tbody>",
        "<tr>", "</tr>", "<td>", "</td>", "<th>", "<figure>", "</figure>", "<figcaption>", "</figcaption>",
        "<blockquote>", "</blockquote>", "<div>", "<dd>", "<dl>", "<nobr>", "<button>", "<form>", "<select>",
        "<svg>", "<math>", "<br/>", "<p/>", "text", " ", "&nbsp;", "\xa0", "&#10;", "&lt;", "<", ">",
    ]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(nesting_pieces, max_size=30).map("".join))
def test_misnested_markup_comes_out_as_a_fixed_point(markup: str) -> None:
    """Nesting a parser rebuilds differently (headings in headings, anchors in anchors, demoted h1s, tables)."""
    cleaned = sanitize_html(markup)
    _assert_inert(cleaned)
    assert sanitize_html(cleaned) == cleaned


@settings(max_examples=150, deadline=None)
@given(st.lists(markup_pieces, max_size=25).map("".join))
def test_random_markup_is_inert_and_stable(markup: str) -> None:
    cleaned = sanitize_html(markup)
    _assert_inert(cleaned)
    assert sanitize_html(cleaned) == cleaned
    collapsed = collapse_duplicate_blocks(cleaned)
    assert sanitize_html(collapsed) == collapsed


# Plain text ---------------------------------------------------------------------------------------------


def test_sanitize_text_strips_tags_decodes_entities_and_collapses_whitespace() -> None:
    text = sanitize_text("  AT&amp;T <b>beats</b>\n\t forecasts &mdash; <script>alert(1)</script>again &lt;3 ")
    assert text == "AT&T beats forecasts — again <3"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Why x<y and y>z", "Why x<y and y>z"),
        ("C++ <vector> explained", "C++ <vector> explained"),
        ("Use <scripted> tests", "Use <scripted> tests"),
        ("Crowds <3 the <em>new</em> bridge", "Crowds <3 the new bridge"),
        ("Hi <script>alert(1)</script>there", "Hi there"),
        ("A <SCRIPT\n>alert(1)</SCRIPT>b", "A b"),
        ("<!-- note -->Text", "Text"),
    ],
)
def test_a_less_than_sign_that_opens_no_element_stays_text(given: str, expected: str) -> None:
    assert sanitize_text(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Why <video> still breaks on phones", "Why <video> still breaks on phones"),
        ("<title> tags: what search engines read", "<title> tags: what search engines read"),
        ("How to escape </script> in JSON", "How to escape </script> in JSON"),
        ("What the <SELECT> element hides", "What the <SELECT> element hides"),
        ("A <script>x</script> and a <video> mention", "A and a <video> mention"),
        ("Watch <video src=clip.mp4>no player</video> today", "Watch today"),
        ("Hi <SCRIPT>a<b</script >there", "Hi there"),
    ],
)
def test_a_content_hiding_tag_that_nothing_closes_is_a_mention(given: str, expected: str) -> None:
    """Parsed as markup, an unclosed `<video>` would hide the rest of the field: the headline became "Why"."""
    assert sanitize_text(given) == expected


def test_sanitize_text_removes_controls_and_bidi_overrides() -> None:
    assert sanitize_text("Head\x00line\x07 \u202eevil\u202c") == "Headline evil"


def test_sanitize_text_keeps_block_boundaries_as_spaces() -> None:
    assert sanitize_text("<p>One</p><p>Two</p>three<br>four") == "One Two three four"


def test_sanitize_text_of_plain_text_is_unchanged() -> None:
    assert sanitize_text("What Do Russia’s Losses in Ukraine Mean for Putin?") == (
        "What Do Russia’s Losses in Ukraine Mean for Putin?"
    )


@settings(max_examples=500, deadline=None)
@given(st.lists(nesting_pieces | markup_pieces, max_size=30).map("".join), st.booleans())
def test_the_tag_scan_finds_the_blocks_the_parser_finds(markup: str, skip_figures: bool) -> None:
    """The quick scan over sanitized markup must read it exactly as the HTML parser does."""
    cleaned = sanitize_html(markup)
    fast = _fast_text_blocks.__wrapped__(cleaned, skip_figures=skip_figures)
    if fast is not None:
        assert list(fast) == _TextExtractor(skip_figures=skip_figures).text_blocks(cleaned)


def test_plain_text_separates_paragraphs_with_blank_lines() -> None:
    markup = "<h2>Head</h2><p>First  para\ngraph.</p><p>Second<br>line</p><ul><li>item</li></ul>"
    assert plain_text(markup) == "Head\n\nFirst para graph.\n\nSecond\nline\n\nitem"


def test_plain_text_can_skip_captions() -> None:
    markup = "<figure><img src=a.jpg><figcaption>Photo: agency</figcaption></figure><p>Story.</p>"
    assert plain_text(markup) == "Photo: agency\n\nStory."
    assert plain_text(markup, skip_figures=True) == "Story."


def test_plain_text_ignores_script_content() -> None:
    assert plain_text("<p>a</p><script>var x = 1;</script><p>b</p>") == "a\n\nb"


# Duplicate blocks ---------------------------------------------------------------------------------------


def test_consecutive_duplicate_paragraphs_collapse() -> None:
    assert collapse_duplicate_blocks("<p>A</p>\n<p>A</p>\n<p>B</p>") == "<p>A</p>\n<p>B</p>"


def test_triplicates_collapse_to_one() -> None:
    assert collapse_duplicate_blocks("<p>A</p><p>A</p><p> A </p>") == "<p>A</p>"


def test_caption_repeated_as_paragraph_collapses() -> None:
    markup = '<figure><img src="x.jpg"><figcaption>NATO Assistance</figcaption></figure><p>NATO Assistance</p>'
    assert collapse_duplicate_blocks(markup) == (
        '<figure><img src="x.jpg"><figcaption>NATO Assistance</figcaption></figure>'
    )


def test_repeated_lines_inside_a_block_collapse() -> None:
    assert collapse_duplicate_blocks("<p>War<br>War<br>Peace</p>") == "<p>War<br>Peace</p>"
    assert collapse_duplicate_blocks("<p><em>x</em><br><em>x</em></p>") == "<p><em>x</em></p>"


def test_non_consecutive_repeats_stay() -> None:
    markup = "<p>A</p><p>B</p><p>A</p>"
    assert collapse_duplicate_blocks(markup) == markup


def test_content_between_blocks_keeps_them_apart() -> None:
    markup = "<p>A</p><hr><p>A</p>"
    assert collapse_duplicate_blocks(markup) == markup


def test_list_items_and_table_cells_may_repeat() -> None:
    markup = "<ul><li>Yes</li><li>Yes</li></ul><table><tbody><tr><td>0</td><td>0</td></tr></tbody></table>"
    assert collapse_duplicate_blocks(markup) == markup


def test_same_text_with_different_images_is_not_a_duplicate() -> None:
    markup = '<p><img src="a.jpg">Map</p><p><img src="b.jpg">Map</p>'
    assert collapse_duplicate_blocks(markup) == markup


def test_empty_blocks_are_not_treated_as_duplicates() -> None:
    markup = "<p></p><p></p>"
    assert collapse_duplicate_blocks(markup) == markup


def test_markup_that_is_not_sanitized_is_left_alone() -> None:
    markup = "<p>A<p>A"
    assert collapse_duplicate_blocks(markup) == markup


# Excerpts and counts ------------------------------------------------------------------------------------


def test_short_text_is_its_own_excerpt() -> None:
    assert make_excerpt("One two\n\nthree.") == "One two three."


def test_long_text_is_cut_on_a_word_boundary_with_ellipsis() -> None:
    words = [f"word{i}" for i in range(100)]
    excerpt = make_excerpt(" ".join(words), max_words=55)
    assert excerpt.endswith("…")
    assert excerpt[:-1].split() == words[:55]


def test_excerpt_drops_dangling_punctuation_before_ellipsis() -> None:
    assert make_excerpt("alpha, beta, gamma, delta", max_words=3) == "alpha, beta, gamma…"
    assert make_excerpt("It ended. Then — more", max_words=3) == "It ended. Then…"
    assert make_excerpt("One two. Three", max_words=2) == "One two…"


def test_excerpt_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="max_words"):
        make_excerpt("x", max_words=0)


def test_word_count_ignores_lone_punctuation() -> None:
    assert word_count("Putin — the Kremlin’s man, 24-hour news.\n\nEnd") == 7
    assert word_count("") == 0


def _word_count_by_token(text: str) -> int:
    """Tokens holding a letter or digit, once the characters of scripts written without spaces are taken out of
    them; those count two ideographs or kana, or four Thai, Lao, Myanmar or Khmer code points, a word."""
    quarters = 2 * len(_IDEOGRAPHIC.findall(text)) + len(_SOUTHEAST_ASIAN.findall(text))
    spaced = _SOUTHEAST_ASIAN.sub(" ", _IDEOGRAPHIC.sub(" ", text))
    return sum(1 for token in spaced.split() if re.search(r"\w", token)) + math.ceil(quarters / 4)


@settings(max_examples=400)
@given(st.text(alphabet=st.characters(max_codepoint=127)) | st.text())
def test_word_count_agrees_with_the_token_definition(text: str) -> None:
    """Counting in bytes must give the token-by-token count, for ASCII and for any other text."""
    assert word_count(text) == _word_count_by_token(text)


@settings(max_examples=400)
@given(st.text(alphabet=st.sampled_from(list(" \t\n\xa0\u2003\u3000\x1c\x85—–’“é日_a1.,-£\U0001f389"))))
def test_word_count_judges_non_ascii_runs_like_the_token_definition(text: str) -> None:
    """Dashes and quotes standing alone, words with accents or in other scripts, no-break spaces."""
    assert word_count(text) == _word_count_by_token(text)


def test_word_count_of_non_ascii_text() -> None:
    assert word_count("Russia’s war — a “long” one, £5bn… 日本 é") == 8
    assert word_count("a\xa0—\xa0b") == 2  # no-break spaces separate words as str.split does


# A Japanese news paragraph: 96 characters (88 of them kanji or kana), four sentences, no spaces.
_JAPANESE = (
    "東京都は二十日、首都直下地震に備えた新しい防災計画を発表した。"
    "避難所の数を増やし、食料や水の備蓄を強化する。"
    "都の担当者は「住民の安全を最優先に考えた」と話している。"
    "計画は来年度から実施される。"
)


def test_japanese_excerpt_is_cut_by_characters_at_a_sentence_end() -> None:
    """A Japanese paragraph has no spaces: the 55-word limit alone kept the whole body as the excerpt."""
    body = "\n\n".join([_JAPANESE] * 30)  # 2,938 characters
    excerpt = make_excerpt(body)
    # 180 characters: the first paragraph (96), then 84 of the second, cut back to its third sentence end.
    assert excerpt == _JAPANESE + " " + _JAPANESE[:81] + "…"
    assert _JAPANESE[81] == "。"


def test_text_without_spaces_or_sentence_ends_is_cut_between_characters() -> None:
    text = "中华人民共和国国务院新闻办公室" * 50
    assert make_excerpt(text) == text[:180] + "…"
    assert make_excerpt(text, max_words=10, max_characters=20) == text[:20] + "…"


def test_thai_excerpt_never_parts_a_vowel_sign_from_its_letter() -> None:
    text = "กี" * 200  # a consonant and its vowel sign, 400 code points without a space
    excerpt = make_excerpt(text, max_characters=181)
    assert excerpt == text[:180] + "…"


def test_short_japanese_text_is_its_own_excerpt() -> None:
    assert make_excerpt(_JAPANESE) == _JAPANESE
    assert make_excerpt("Apple の新型 iPhone が発売された。") == "Apple の新型 iPhone が発売された。"


def test_excerpt_needs_a_positive_character_limit() -> None:
    with pytest.raises(ValueError, match="max_characters"):
        make_excerpt("x", max_characters=0)


def test_japanese_words_and_reading_time_are_counted_by_characters() -> None:
    """A 5,000-character article counted as 55 "words" (its paragraphs) and read in one minute."""
    body = "\n\n".join([_JAPANESE] * 55)  # 5,388 characters, 4,840 of them kanji or kana
    words = word_count(body)
    assert words == 2420
    assert reading_minutes(words) == 11  # 490 characters a minute
    assert word_count("2024年に東京で") == 1 + 3  # the number, then five characters at two a word, rounded up
    assert word_count("กรุงเทพมหานคร") == 4  # 13 Thai code points at four a word, rounded up


def test_word_count_of_ascii_counts_separators_and_underscores_like_str_split() -> None:
    assert word_count("a\x1cb\x1fc") == 3
    assert word_count("_ - -- ... snake_case") == 2


@pytest.mark.parametrize(("words", "minutes"), [(0, 1), (1, 1), (230, 1), (231, 2), (833, 4), (2300, 10)])
def test_reading_minutes_round_up_and_never_below_one(words: int, minutes: int) -> None:
    assert reading_minutes(words) == minutes


def test_reading_minutes_needs_a_positive_speed() -> None:
    with pytest.raises(ValueError, match="wpm"):
        reading_minutes(100, wpm=0)


_PIECES = st.sampled_from([
    "<p>A</p>", "<p>A </p>", "<p> A</p>", "<p>B</p>", "<p></p>", "<h2>A</h2>", "<blockquote>A</blockquote>",
    "<p>A<br>A</p>", "<p><em>A</em></p>", '<p><img src="a.jpg"></p>', '<p><img src="a.jpg">A</p>',
    '<figure><img src="a.jpg"><figcaption>A</figcaption></figure>', "<hr>", "loose", " ", "\n",
    "<ul><li>A</li><li>A</li></ul>", "<div><p>A</p>A</div>", "<p>A &amp; B</p>", "<p>A &amp;amp; B</p>",
])  # fmt: skip


@given(st.lists(_PIECES, max_size=8))
@settings(max_examples=400, deadline=None)
def test_the_quick_check_never_skips_a_repeat(pieces: list[str]) -> None:
    """Most bodies skip the block scanner after a cheap look; the result must be the scanner's every time."""
    markup = sanitize_html("".join(pieces))
    assert collapse_duplicate_blocks(markup) == _collapse_scanned(markup)


def test_whitespace_is_collapsed_like_split_and_join_for_every_character() -> None:
    """The shortcut for lines already collapsed holds only if no whitespace but the space is printable."""
    for code_point in range(sys.maxunicode + 1):
        character = chr(code_point)
        for text in (character, f"a{character}b", f" {character}"):
            assert _collapse_whitespace(text) == " ".join(text.split()), hex(code_point)


@given(st.text(alphabet=st.sampled_from(list(" \t\n\xa0\u2003\u3000\x1cab."))))
def test_whitespace_collapsing_matches_split_and_join(text: str) -> None:
    assert _collapse_whitespace(text) == " ".join(text.split())


def test_printable_check_agrees_with_isprintable_for_every_character() -> None:
    for code_point in range(sys.maxunicode + 1):
        character = chr(code_point)
        for text in (character, f"plain {character} text", f"caf\u00e9 {character}"):
            assert _is_printable(text) == text.isprintable(), hex(code_point)


@given(st.text() | st.text(alphabet=st.characters(max_codepoint=255)))
def test_printable_check_agrees_with_isprintable(text: str) -> None:
    assert _is_printable(text) == text.isprintable()
    assert _is_printable(text + "\ud800") is False  # a lone surrogate is never printable


def test_every_stripped_control_is_unprintable() -> None:
    """`_strip_controls` returns printable text untouched: that is only sound if no control is printable."""
    printable_controls = [
        hex(code_point)
        for code_point in range(sys.maxunicode + 1)
        if _CONTROLS.match(chr(code_point)) and chr(code_point).isprintable()
    ]
    assert printable_controls == []
