"""Turning newsroom HTML and text into markup and prose that is safe to show readers.

Every string a newsroom system sends is untrusted: copy is pasted from other sites, and a compromised or careless
upstream could inject script. The body goes through an nh3 (ammonia) allowlist; headlines, captions and bios are
reduced to plain text, which templates then escape. All functions are pure and deterministic, so the same draft
always yields byte-identical output and a flushed Redis can be rebuilt exactly.
"""

from __future__ import annotations

import functools
import html
import itertools
import math
import re
import unicodedata
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Final
from urllib.parse import urlsplit

import nh3

__all__ = [
    "ALLOWED_TAGS",
    "EXTERNAL_LINK_REL",
    "collapse_duplicate_blocks",
    "make_excerpt",
    "plain_text",
    "reading_minutes",
    "sanitize_html",
    "sanitize_text",
    "word_count",
]

# `span` and `div` are left out on purpose: without classes or styles they carry no meaning, so they are
# unwrapped and their text kept. `h1` is accepted only to be demoted: the page's one h1 is the headline.
ALLOWED_TAGS: Final[frozenset[str]] = frozenset(
    {
        "p", "h1", "h2", "h3", "h4", "h5", "h6", "figure", "figcaption", "img", "a", "blockquote",
        "ul", "ol", "li", "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption",
        "em", "strong", "b", "i", "u", "s", "br", "hr", "sup", "sub", "code", "pre", "cite", "q",
        "abbr", "small", "mark", "time",
    }
)  # fmt: skip

# No `cite` on quotes: browsers never show it and ammonia does not check its URL scheme.
# `lang`, `dir` and `title` on any element let a quote in another language or script render and read correctly.
_ALLOWED_ATTRIBUTES: Final[dict[str, set[str]]] = {
    "*": {"lang", "dir", "title"},
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "abbr": {"title"},
    "ol": {"start", "reversed"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "time": {"datetime"},
}

# Elements removed together with everything inside them: their content is code, not copy, and the foreign-content
# parsing rules of svg and math are where mutation XSS lives.
_DROPPED_WITH_CONTENT: Final[set[str]] = {
    "script", "style", "svg", "math", "iframe", "noscript", "object", "embed", "template", "frame",
    "frameset", "noembed", "noframes", "xmp", "plaintext", "textarea", "select", "form", "title", "head",
    "applet", "canvas", "audio", "video", "portal",
}  # fmt: skip

_URL_SCHEMES: Final[set[str]] = {"http", "https", "mailto"}

EXTERNAL_LINK_REL: Final = "noopener noreferrer nofollow"

_NUMERIC_ATTRIBUTES: Final[frozenset[str]] = frozenset({"width", "height", "colspan", "rowspan", "start"})

# Bidirectional overrides and the byte-order mark can make a headline read differently from what it says.
_INVISIBLE_CONTROLS: Final[frozenset[str]] = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")

# nh3 output escapes "<" and ">" inside attribute values and always double-quotes them, so every "<" in it opens
# a real tag and these patterns cannot match inside text or attribute values.
_ANCHOR_TAG: Final = re.compile(r'<a((?:\s+[^\s"=>/]+(?:="[^"]*")?)*)\s*>')
_HREF_ATTRIBUTE: Final = re.compile(r'\shref="([^"]*)"')
_H1_TAG: Final = re.compile(r"<(/?)h1(?=[\s>])")
_MAX_CLEANS: Final = 3  # after the first: one more has always reached the fixed point (fuzzed); bounded all the same
# A parser drops one newline right after <pre>, so leading newlines there would shrink on every round trip.
_PRE_LEADING_NEWLINES: Final = re.compile(r"(<pre(?:\s[^>]*)?>)\n+")

_BLOCK_TAGS: Final[frozenset[str]] = frozenset(
    {
        "p", "h1", "h2", "h3", "h4", "h5", "h6", "figure", "figcaption", "blockquote", "ul", "ol", "li",
        "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "pre", "div", "section",
        "article", "aside", "header", "footer", "hr", "dl", "dt", "dd", "address",
    }
)  # fmt: skip

# Only these blocks are ever dropped as duplicates; list items and table cells legitimately repeat.
_COLLAPSIBLE_BLOCKS: Final[frozenset[str]] = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "figcaption", "blockquote", "pre"}
)
_VOID_TAGS: Final[frozenset[str]] = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
_HIDDEN_CONTENT_TAGS: Final[frozenset[str]] = frozenset(_DROPPED_WITH_CONTENT - _VOID_TAGS)
_FIGURE_TAGS: Final[frozenset[str]] = frozenset({"figure", "figcaption", "table", "caption"})
_FIGURE_OPENERS: Final = tuple(f"<{tag}" for tag in sorted(_FIGURE_TAGS))
_TRAILING_PUNCTUATION: Final = ".,;:-–—([{\"'“‘/"
_WORD_CHARACTER: Final = re.compile(r"\w")
# Scripts written without spaces between words, so that a whitespace token is a phrase or a paragraph: Han
# (with 々〆〇), hiragana, katakana (not its middle dot, which is punctuation) and halfwidth katakana; and the
# Southeast Asian scripts Thai, Lao, Myanmar and Khmer. Korean is not among them: Hangul is written with spaces.
_IDEOGRAPHIC: Final = re.compile(
    "[\u3005-\u3007\u3041-\u309f\u30a0-\u30fa\u30fc-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003ffff]"
)
_SOUTHEAST_ASIAN: Final = re.compile("[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]")
_WITHOUT_SPACES: Final = re.compile(f"{_IDEOGRAPHIC.pattern}|{_SOUTHEAST_ASIAN.pattern}")
# Every byte but the UTF-8 lead bytes of U+0800-U+1FFF, U+3000-U+9FFF, U+F000-U+FFFF and U+10000-U+3FFFF: those
# start every character above, and some others (Devanagari, Vietnamese, emoji) that the search then rules out.
_NOT_LEAD_BYTES_WITHOUT_SPACES: Final = bytes(
    c for c in range(256) if c not in b"\xe0\xe1\xe3\xe4\xe5\xe6\xe7\xe8\xe9\xef\xf0"
)
_SENTENCE_ENDS: Final = "。！？!?"
_TRAILING_PUNCTUATION_WITHOUT_SPACES: Final = "。、，．；：・「『（【〈《〔"
# For counting words in ASCII text as bytes: str.split also splits on the separators \x1c-\x1f, bytes.split not.
_ASCII_SEPARATORS: Final = bytes.maketrans(bytes(range(0x1C, 0x20)), b" " * 4)
_ASCII_NOT_WORD: Final = bytes(
    c for c in range(128) if not (chr(c).isalnum() or chr(c) == "_" or chr(c).isspace())
)
# A byte's shape for counting words: what bytes.split splits on, a byte of a non-ASCII character, anything else.
_SHAPE: Final = bytes.maketrans(
    bytes(range(256)),
    bytes(b" "[0] if c in b" \t\n\r\x0b\x0c" else b"u"[0] if c >= 0x80 else b"x"[0] for c in range(256)),
)
_SEPARATOR_BYTE: Final = b" "[0]
_NON_ASCII_BYTE: Final = b"u"[0]
# Unicode categories Cc (C0, DEL, C1) and Cs (surrogates) except tab/newline/return, plus the invisible controls.
_CONTROLS: Final = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff" + "".join(sorted(_INVISIBLE_CONTROLS)) + "]"
)


_PRINTABLE_ASCII: Final = bytes(range(0x20, 0x7F))


def _is_printable(text: str) -> bool:
    """`str.isprintable`, in about half the time on article-length text.

    `isprintable` looks every character up in the Unicode tables. Printable ASCII (space to tilde) needs no
    lookup: deleting those bytes from the UTF-8 form is one C pass, and what is left, usually nothing or a few
    curly quotes and dashes, is all that gets looked up. (Equal to `isprintable` for every string, lone
    surrogates included: tests/unit/test_sanitize.py.)
    """
    rest = text.encode("utf-8", "surrogatepass").translate(None, _PRINTABLE_ASCII)
    return not rest or rest.decode("utf-8", "surrogatepass").isprintable()


def _strip_controls(text: str) -> str:
    """Drop C0/C1 controls, lone surrogates and bidi overrides; keep tab, newline and carriage return.

    Lone surrogates would make the event impossible to encode as UTF-8; other controls are invisible in pages
    but break feeds (XML 1.0 forbids them). One compiled character class: this runs on every body. Every
    character it removes is unprintable (checked over all of Unicode in tests/unit/test_sanitize.py), so
    printable text, which one C scan tells, is returned as it is.
    """
    return text if _is_printable(text) else _CONTROLS.sub("", text)


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Sizes and spans must be plain numbers: anything else is at best noise and at worst a layout attack."""
    if attribute in _NUMERIC_ATTRIBUTES:
        digits = value.strip()
        return digits if digits.isdigit() and len(digits) <= 5 else None
    return value


_URL_EDGES: Final = "".join(map(chr, range(0x21)))
_URL_TABS_AND_NEWLINES: Final = {ord("\t"): None, ord("\n"): None, ord("\r"): None}


def _is_external_url(url: str) -> bool:
    """Absolute http(s) and protocol-relative URLs leave the site; relative ones and mailto do not.

    Read as a browser reads it (the WHATWG URL parser): controls and spaces at the ends and tabs and newlines
    anywhere are dropped, and on an http(s) page a backslash is a slash, so `/\\evil.example` and `/&#9;/evil.example`
    are protocol-relative too.
    """
    candidate = html.unescape(url).strip(_URL_EDGES).translate(_URL_TABS_AND_NEWLINES).replace("\\", "/")
    if candidate.startswith("//"):
        return True
    return urlsplit(candidate).scheme.lower() in ("http", "https")


def _mark_external_link(match: re.Match[str]) -> str:
    attributes = match.group(1)
    href = _HREF_ATTRIBUTE.search(attributes)
    if href is None or not _is_external_url(href.group(1)):
        return f"<a{attributes}>"
    return f'<a{attributes} rel="{EXTERNAL_LINK_REL}">'


_CLEANER: Final = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=_DROPPED_WITH_CONTENT,
    attributes=_ALLOWED_ATTRIBUTES,
    attribute_filter=_keep_attribute,
    strip_comments=True,
    link_rel=None,
    url_schemes=_URL_SCHEMES,
    set_tag_attribute_values={"img": {"loading": "lazy"}},
)
"""Built once: `nh3.clean` would convert the allowlists into a new sanitizer on every call. Pictures in a body load
as the reader scrolls to them (the lead picture, above the body, is the page's and loads at once); the sanitizer
sets this itself, so an author's own `loading` never survives. One attribute only: ammonia keeps the ones it sets
in a hash map, whose order changes from process to process, and the same draft must give the same bytes in every
replica."""


def _clean(markup: str) -> str:
    return _CLEANER.clean(markup)


def sanitize_html(markup: str) -> str:
    """Reduce author-supplied HTML to the article allowlist.

    Links leaving the site get `rel="noopener noreferrer nofollow"` (no opener access, no referrer leak, no
    endorsement of pasted links); internal links stay plain so they pass ranking. An h1 becomes an h2 because
    the page's only h1 is the headline.
    """
    # The result must be a fixed point, so that a browser builds exactly the tree that was checked. Demoting
    # rewrites tags, which can change how nested headings parse, and nh3's own output is not always one either
    # (a heading inside a heading, an anchor inside an anchor): it is cleaned again until it no longer changes.
    # Controls are stripped again at the end when the input holds character references (`&#x202E;`): they are
    # the only way a control can come back once the input's own are gone.
    recleaned = _clean(_strip_controls(markup))
    if "<h1" in recleaned:
        recleaned = _H1_TAG.sub(r"<\1h2", recleaned)
    for _ in range(_MAX_CLEANS):
        again = _clean(recleaned)
        if again == recleaned:
            break
        recleaned = again
    cleaned = _PRE_LEADING_NEWLINES.sub(r"\1", _strip_controls(recleaned) if "&" in markup else recleaned)
    return _ANCHOR_TAG.sub(_mark_external_link, cleaned).strip()


def _collapse_whitespace(text: str) -> str:
    """Runs of whitespace become one space, none at the ends.

    Most lines are already so, and two C scans tell: every whitespace character but the space is
    unprintable (checked over all of Unicode in tests/unit/test_sanitize.py), so a printable line without
    double, leading or trailing spaces comes back as it is, without splitting and joining it.
    """
    if "  " not in text and not text.startswith(" ") and not text.endswith(" ") and _is_printable(text):
        return text
    return " ".join(text.split())


class _TextExtractor(HTMLParser):
    """Collects the text of HTML, one string per block, skipping anything that is not prose."""

    def __init__(self, *, skip_figures: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.skip_figures = skip_figures
        self.blocks: list[str] = []
        self._current: list[str] = []
        self._hidden_depth = 0
        self._figure_depth = 0

    def _end_block(self) -> None:
        lines = [_collapse_whitespace(line) for line in "".join(self._current).split("\n")]
        text = "\n".join(line for line in lines if line)
        if text:
            self.blocks.append(text)
        self._current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_CONTENT_TAGS:
            self._hidden_depth += 1
        elif tag in _FIGURE_TAGS:
            self._figure_depth += 1
        if tag in _BLOCK_TAGS:
            self._end_block()
        elif tag == "br":
            self._current.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_CONTENT_TAGS and self._hidden_depth:
            self._hidden_depth -= 1
        elif tag in _FIGURE_TAGS and self._figure_depth:
            self._figure_depth -= 1
        if tag in _BLOCK_TAGS:
            self._end_block()

    def handle_data(self, data: str) -> None:
        if self._hidden_depth or (self.skip_figures and self._figure_depth):
            return
        # A newline in the source is plain whitespace; only <br> starts a new line.
        self._current.append(data.replace("\n", " ").replace("\r", " "))

    def text_blocks(self, markup: str) -> list[str]:
        self.feed(markup)
        self.close()
        self._end_block()
        return self.blocks


_NEWLINE: Final = re.compile("\n")
_ANY_TAG: Final = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)(?:\s[^<>]*)?/?>")


@functools.lru_cache(maxsize=16)
def _fast_text_blocks(markup: str, *, skip_figures: bool) -> tuple[str, ...] | None:
    """The same blocks as `_TextExtractor`, for markup whose every "<" opens a plain tag (what nh3 emits).

    A regular expression over the tags instead of a full parser: bodies go through this several times per
    draft (duplicate check, word count, excerpt), hence also the small cache. Returns None when the markup holds
    anything else (comments, raw-text elements, a stray "<"), and the parser takes over.
    """
    # A newline in the source is plain whitespace; only <br> starts a new line.
    flat = markup.replace("\n", " ").replace("\r", " ")
    parts = _ANY_TAG.split(flat)  # text, "/" or "", tag name, text, "/" or "", tag name, ..., text
    if len(parts) // 3 != flat.count("<"):
        return None
    blocks: list[str] = []
    current: list[str] = []
    figure_depth = 0

    def end_block() -> None:
        text = html.unescape("".join(current))
        if "\n" in text:  # a <br> (or &#10;): one line each
            text = "\n".join(line for line in map(_collapse_whitespace, text.split("\n")) if line)
        else:
            text = _collapse_whitespace(text)
        if text:
            blocks.append(text)
        current.clear()

    for index in range(0, len(parts) - 1, 3):
        data, closing, tag = parts[index], parts[index + 1], parts[index + 2].lower()
        if data and not (skip_figures and figure_depth):
            current.append(data)
        if tag in _HIDDEN_CONTENT_TAGS:
            return None
        if tag in _FIGURE_TAGS:
            figure_depth = max(0, figure_depth - 1) if closing else figure_depth + 1
        if tag in _BLOCK_TAGS:
            end_block()
        elif tag == "br":
            current.append("\n")
    tail = parts[-1]
    if tail and not (skip_figures and figure_depth):
        current.append(tail)
    end_block()
    return tuple(blocks)


def _text_blocks(markup: str, *, skip_figures: bool = False) -> list[str]:
    if skip_figures and not any(opener in markup for opener in _FIGURE_OPENERS):
        skip_figures = False  # nothing to skip: share the cached scan
    fast = _fast_text_blocks(markup, skip_figures=skip_figures)
    if fast is not None:
        return list(fast)
    return _TextExtractor(skip_figures=skip_figures).text_blocks(markup)


_OTHER_ELEMENTS: Final = frozenset(
    {
        "span", "div", "html", "body", "meta", "link", "base", "input", "button", "label", "font", "center", "nav",
        "section", "article", "aside", "header", "footer", "main", "details", "summary", "dialog", "picture",
        "source", "track", "map", "area", "param", "marquee", "blink", "image", "wbr", "dl", "dt", "dd", "ins",
        "del", "kbd", "samp", "var", "dfn", "bdi", "bdo", "ruby", "rt", "rp", "data", "meter", "progress",
        "output", "fieldset", "legend", "optgroup", "option", "datalist", "col", "colgroup", "address", "hgroup",
        "menu", "slot", "search", "big", "tt", "strike", "acronym", "basefont", "bgsound", "keygen", "listing",
    }
)  # fmt: skip
_NOT_A_TAG: Final = re.compile(
    "<(?!!|/?(?:"
    + "|".join(sorted(ALLOWED_TAGS | _DROPPED_WITH_CONTENT | _OTHER_ELEMENTS, key=len, reverse=True))
    + r")(?=[\s/>]))",
    re.IGNORECASE,
)
"""A "<" that opens no HTML element ("x<y and y>z", "C++ <vector>"): text, which a parser would take for a tag."""
_HIDDEN_CONTENT_TAG: Final = re.compile(
    "<(/?)(" + "|".join(sorted(_HIDDEN_CONTENT_TAGS, key=len, reverse=True)) + r")(?=[\s/>])", re.IGNORECASE
)


def _unclosed_hidden_elements_as_text(text: str) -> str:
    """Escape the tags of content-hiding elements (`<video>`, `<script>`, `<title>`, …) that nothing closes.

    In a plain-text field such a tag is a mention ("Why <video> still breaks on phones"), and parsed as markup it
    would hide everything after it: the headline became "Why". A pair (`<script>…</script>`) is markup and still
    vanishes with its content; an opening tag with no closing tag after it, and a closing tag that closes nothing,
    are text. One pass over the tags, so linear in the text.
    """
    tags = list(_HIDDEN_CONTENT_TAG.finditer(text))
    if not tags:
        return text
    last_closing = {tag.group(2).lower(): tag.start() for tag in tags if tag.group(1)}
    as_text: list[int] = []
    inside: str | None = None
    for tag in tags:
        closing, name = bool(tag.group(1)), tag.group(2).lower()
        if inside is not None:
            if closing and name == inside:
                inside = None
        elif not closing and last_closing.get(name, -1) > tag.start():
            inside = name
        else:
            as_text.append(tag.start())
    if not as_text:
        return text
    pieces: list[str] = []
    cursor = 0
    for start in as_text:
        pieces.append(text[cursor:start])
        pieces.append("&lt;")
        cursor = start + 1
    pieces.append(text[cursor:])
    return "".join(pieces)


def sanitize_text(text: str) -> str:
    """Plain text for headlines, captions, bios and notes: no tags, entities decoded, one line.

    The result is text, not HTML: templates escape it. Markup inside is parsed (not just deleted by pattern) so
    `<script>` content vanishes while `AT&amp;T` and `a < b` read as written. A "<" that opens no HTML element is
    kept as text first: parsed, "Why x<y and y>z" lost "y and y" as a tag. So is a content-hiding tag that nothing
    closes ("Why <video> still breaks on phones").
    """
    if "<" not in text and "&" not in text:
        # Nothing to parse: the common case for headlines, names and tags, kept cheap.
        return _strip_controls(_collapse_whitespace(text))
    if "<" in text:
        text = _unclosed_hidden_elements_as_text(_NOT_A_TAG.sub("&lt;", text))
    cleaned = sanitize_html(text)
    blocks = _text_blocks(cleaned)
    return _strip_controls(_collapse_whitespace(" ".join(blocks)))


def plain_text(markup: str, *, skip_figures: bool = False) -> str:
    """The readable text of a body: paragraphs separated by blank lines, whitespace collapsed inside them.

    Used for word counts, excerpts and the related-articles engine, none of which want markup. With
    `skip_figures`, captions and tables are left out so an excerpt starts with prose, not a photo credit.
    """
    return "\n\n".join(_text_blocks(markup, skip_figures=skip_figures))


def make_excerpt(text: str, max_words: int = 55, max_characters: int = 180) -> str:
    """The first `max_words` words, cut between words and ending with "…" when anything was left out.

    Chinese, Japanese or Thai is written without spaces, so a "word" found by splitting is a whole phrase or
    paragraph and the word limit alone would keep almost all of the body. In a token holding such characters,
    `max_characters` characters stand for the `max_words` words (about as long on a listing, in a feed or a
    meta description as an English excerpt), and the token is cut at its last sentence end if that keeps at
    least half of what fits, else between two characters (never before a vowel sign or tone mark).
    """
    if max_words < 1:
        raise ValueError("max_words must be at least 1")
    if max_characters < 1:
        raise ValueError("max_characters must be at least 1")
    words = text.split(maxsplit=max_words)  # the rest of the text stays one piece: only its presence matters
    head = " ".join(words[:max_words])
    if not head.isascii() and _WITHOUT_SPACES.search(head):
        return _excerpt_without_spaces(words[:max_words], len(words) > max_words, max_words, max_characters)
    if len(words) <= max_words:
        return head
    kept = head.rstrip(_TRAILING_PUNCTUATION + " ")
    return f"{kept}…" if kept else "…"


def _excerpt_without_spaces(tokens: list[str], cut: bool, max_words: int, max_characters: int) -> str:
    """Budget counted in integers, so the same text always gives the same excerpt: a word costs
    `max_characters`, a character of a token written without spaces costs `max_words`, a token at least a word."""
    budget = max_words * max_characters
    kept: list[str] = []
    for token in tokens:
        without_spaces = _WITHOUT_SPACES.search(token) is not None
        cost = max(max_characters, len(token) * max_words) if without_spaces else max_characters
        if cost <= budget:
            kept.append(token)
            budget -= cost
            continue
        cut = True
        room = budget // max_words
        if without_spaces and room < len(token):
            kept.append(_cut_between_characters(token, room))
        break
    excerpt = " ".join(kept)
    if not cut:
        return excerpt
    kept_text = excerpt.rstrip(_TRAILING_PUNCTUATION + _TRAILING_PUNCTUATION_WITHOUT_SPACES + " ")
    return f"{kept_text}…" if kept_text else "…"


def _cut_between_characters(token: str, room: int) -> str:
    while room > 0 and unicodedata.category(token[room]).startswith("M"):
        room -= 1  # a mark left at the cut would lose its letter
    head = token[:room]
    sentence_end = max(head.rfind(mark) for mark in _SENTENCE_ENDS) + 1
    return head[:sentence_end] if sentence_end and 2 * sentence_end >= len(head) else head


def word_count(text: str) -> int:
    """Words are whitespace-separated tokens holding at least one letter or digit (a lone dash is not a word).

    Counted in UTF-8 bytes, because this runs on every body: deleting every ASCII character that is neither a
    word character nor a separator empties the ASCII tokens that are not words. What remains is mapped to its
    shape, a byte per byte: " " for a separator, "u" for a byte of a non-ASCII character, "x" for the rest; the
    tokens are then counted as the places where a separator is followed by anything else, in C, without making
    a string per token. What is left to judge is the few runs of non-ASCII characters: a run that is a whole
    token and holds no word character ("—") is not a word. A run holding a separator that bytes do not split on
    (a no-break space) sends the text to the plain token-by-token count.

    Text in scripts written without spaces is counted apart (`_word_count_without_spaces`). Only non-ASCII text
    looks for them, and first in the bytes already at hand: a text none of whose UTF-8 lead bytes can start such
    a character (English with curly quotes and dashes) skips the slower search of the string.
    """
    kept = text.encode("utf-8", "surrogatepass").translate(_ASCII_SEPARATORS, _ASCII_NOT_WORD)
    shape = b" " + kept.translate(_SHAPE) + b" "
    count = shape.count(b" x") + shape.count(b" u")
    if text.isascii():
        return count
    if kept.translate(None, _NOT_LEAD_BYTES_WITHOUT_SPACES) and _WITHOUT_SPACES.search(text):
        return _word_count_without_spaces(text)
    run = shape.find(b"u")
    while run != -1:
        stop = run + 1
        while shape[stop] == _NON_ASCII_BYTE:
            stop += 1
        characters = kept[run - 1 : stop - 1].decode("utf-8", "surrogatepass")
        if not characters.isprintable() and any(c.isspace() for c in characters):
            search = _WORD_CHARACTER.search
            return sum(1 for token in text.split() if token.isalnum() or search(token))
        whole_token = shape[run - 1] == _SEPARATOR_BYTE and shape[stop] == _SEPARATOR_BYTE
        if whole_token and not _WORD_CHARACTER.search(characters):
            count -= 1
        run = shape.find(b"u", stop)
    return count


def _word_count_without_spaces(text: str) -> int:
    """Words of the spaced parts as usual, plus the characters of scripts written without spaces at a rate.

    A Chinese or Japanese word is about two characters, so two ideographs or kana count as one word: at the
    230 words a minute of `reading_minutes` that is about 460 characters a minute, within the 400 to 600 that
    native readers manage. A Thai, Lao, Myanmar or Khmer word is a few syllables, each a consonant with its
    vowel signs and tone marks as code points of their own: about four code points count as one word. Counted
    in quarter words and rounded up once, so a lone ideograph is still a word.
    """
    ideographic = len(_IDEOGRAPHIC.findall(text))
    southeast_asian = len(_SOUTHEAST_ASIAN.findall(text))
    spaced = word_count(_WITHOUT_SPACES.sub(" ", text))
    return spaced + -(-(2 * ideographic + southeast_asian) // 4)


def reading_minutes(words: int, wpm: int = 230) -> int:
    """Whole minutes at an adult's average silent reading speed, rounded up and never less than one."""
    if wpm < 1:
        raise ValueError("wpm must be positive")
    return max(1, math.ceil(max(words, 0) / wpm))


# Duplicate blocks ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    start: int
    end: int


@dataclass
class _Line:
    """A stretch of a block between two <br>: removable only if cutting it leaves every element balanced."""

    start: int
    end: int = 0
    text: str = ""
    start_depth: int = 0
    lowest_depth: int = 0
    end_depth: int = 0

    @property
    def balanced(self) -> bool:
        return self.start_depth == self.end_depth == self.lowest_depth


@dataclass
class _Leaf:
    """A block holding no other block: the unit a reader sees repeated in scraped copy."""

    tag: str
    stack_index: int
    start: int
    end: int = 0
    lines: list[_Line] = field(default_factory=list)
    media: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return (_collapse_whitespace(" ".join(line.text for line in self.lines)), tuple(self.media))


class _Separator:
    """Content between blocks (loose text, a rule, an image) that makes two equal blocks not consecutive."""


class _NotSanitized(ValueError):
    """The markup is not the well-formed output of `sanitize_html`."""


class _BlockScanner(HTMLParser):
    """Finds leaf blocks and their lines in sanitized HTML, with exact offsets into the source."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.sequence: list[_Leaf | _Separator] = []
        self._line_starts = [0, *(match.end() for match in _NEWLINE.finditer(source))]
        self._open: list[str] = []
        self._leaf: _Leaf | None = None
        self._line_text: list[str] = []

    def scan(self) -> list[_Leaf | _Separator]:
        self.feed(self.source)
        self.close()
        if self._open:
            raise _NotSanitized("unclosed element")
        return self.sequence

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def _open_line(self, leaf: _Leaf, start: int) -> None:
        depth = len(self._open)
        leaf.lines.append(_Line(start=start, start_depth=depth, lowest_depth=depth))
        self._line_text = []

    def _close_line(self, leaf: _Leaf, end: int) -> None:
        line = leaf.lines[-1]
        line.end = end
        line.end_depth = len(self._open)
        line.text = _collapse_whitespace("".join(self._line_text))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        start = self._offset()
        leaf = self._leaf
        if tag in _BLOCK_TAGS and tag not in _VOID_TAGS:
            if leaf is not None:
                # The candidate holds a block, so it is a container: whatever text it had so far separates.
                self._close_line(leaf, start)
                if leaf.key[0] or leaf.media:
                    self.sequence.append(_Separator())
            self._open.append(tag)
            self._leaf = _Leaf(tag=tag, stack_index=len(self._open) - 1, start=start)
            self._open_line(self._leaf, start + len(self.get_starttag_text() or ""))
            return
        if leaf is None:
            if tag in ("img", "hr"):
                self.sequence.append(_Separator())
        elif tag == "br":
            self._close_line(leaf, start)
            self._open_line(leaf, start)
        elif tag == "img":
            leaf.media.append(dict(attrs).get("src") or "")
        elif tag == "hr":
            self.sequence.append(_Separator())
        if tag not in _VOID_TAGS:
            self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise _NotSanitized("self-closing syntax")

    def handle_endtag(self, tag: str) -> None:
        start = self._offset()
        end = start + len(tag) + 3
        if not self._open or self._open[-1] != tag or self.source[start:end] != f"</{tag}>":
            raise _NotSanitized(f"unexpected </{tag}>")
        leaf = self._leaf
        if leaf is not None and leaf.stack_index == len(self._open) - 1:
            self._close_line(leaf, start)
            leaf.end = end
            self.sequence.append(leaf)
            self._leaf = None
        self._open.pop()
        if self._leaf is not None:
            current = self._leaf.lines[-1]
            current.lowest_depth = min(current.lowest_depth, len(self._open))

    def handle_data(self, data: str) -> None:
        if self._leaf is not None:
            self._line_text.append(data)
        elif data.strip():
            self.sequence.append(_Separator())

    def handle_comment(self, data: str) -> None:
        raise _NotSanitized("comment")


def _repeated_lines(leaf: _Leaf) -> list[_Span]:
    """Lines of one block that repeat the line right before them ("Russia-Ukraine war<br>Russia-Ukraine war")."""
    spans: list[_Span] = []
    previous_text: str | None = None
    for index, line in enumerate(leaf.lines):
        if index > 0 and line.text and line.text == previous_text and line.balanced:
            spans.append(_Span(line.start, line.end))
            continue
        previous_text = line.text
    return spans


def _cut(markup: str, removals: list[_Span]) -> str:
    """Delete the spans, and the whitespace right before each, keeping every other byte as it was."""
    pieces: list[str] = []
    cursor = 0
    for span in sorted(removals, key=lambda s: s.start):
        start = span.start
        while start > cursor and markup[start - 1].isspace():
            start -= 1
        pieces.append(markup[cursor:start])
        cursor = max(cursor, span.end)
    pieces.append(markup[cursor:])
    return "".join(pieces)


def _may_repeat(markup: str) -> bool:
    """False when no block can repeat the one before it, found with the cheap tag scan: most bodies.

    A removal needs two consecutive blocks with the same text (which the scan also sees as consecutive:
    anything the block scanner counts as a separator is text the scan keeps), a repeated line (which needs
    a `<br>`) or two image-only blocks (which need an `<img>`).
    """
    if "<br" in markup or "<img" in markup:
        return True
    blocks = _fast_text_blocks(markup, skip_figures=False)
    if blocks is None:
        return True
    texts = [block.replace("\n", " ") for block in blocks]  # lines are collapsed already
    return any(first == second for first, second in itertools.pairwise(texts))


def collapse_duplicate_blocks(markup: str) -> str:
    """Remove a block (paragraph, heading, caption, quote) that repeats the block right before it, and a line
    that repeats the line before it inside one block.

    Copy scraped or pasted from web pages often doubles captions and section labels ("NATO Assistance" under the
    photo and again below it). Only exact repeats of the visible text (with the same images) that follow each
    other are removed; list items and table cells, which legitimately repeat, are never removed. The markup is
    cut, never rebuilt, so what stays is byte-for-byte the input. Expects the output of `sanitize_html`; markup
    it cannot follow exactly is returned unchanged.
    """
    return _collapse_scanned(markup) if _may_repeat(markup) else markup


def _collapse_scanned(markup: str) -> str:
    try:
        sequence = _BlockScanner(markup).scan()
    except _NotSanitized:
        return markup
    removals: list[_Span] = []
    previous_key: tuple[str, tuple[str, ...]] | None = None
    for item in sequence:
        if isinstance(item, _Separator):
            previous_key = None
            continue
        key = item.key
        if item.tag in _COLLAPSIBLE_BLOCKS and key == previous_key and (key[0] or key[1]):
            removals.append(_Span(item.start, item.end))
            continue
        removals.extend(_repeated_lines(item))
        previous_key = key
    return _cut(markup, removals) if removals else markup
