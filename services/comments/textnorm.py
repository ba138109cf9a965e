"""Text normalization and word-list matching for comment moderation.

Readers who want a banned word past a filter write it in fullwidth letters, with a Cyrillic "а" in place of
the Latin "a", with a zero-width space in the middle or as "a55". Moderation therefore compares *folded*
text: NFKC, case folding, accents and invisible characters dropped, look-alike letters from other scripts
mapped to the Latin letter they imitate and (optionally) leetspeak digits read as letters. The word list
is folded the same way, so both sides meet in the same alphabet.

Matching is on whole tokens, never on substrings, so "Scunthorpe" and "assessment" do not trip a list that
holds "cunt" and "ass". Multi-word phrases are matched over the token sequence with an Aho-Corasick
automaton, so the cost is linear in the length of the comment whatever the list holds; no regular
expression is ever built from list entries.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

# Letters from Cyrillic, Greek and a few other blocks that render like a Latin letter. Only lower case is
# needed: folding runs after casefold(). Accented forms are not listed because accents are stripped first.
_HOMOGLYPHS: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "г": "r", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "п": "n", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ш": "w", "ь": "b", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "ӏ": "l", "ү": "y", "һ": "h", "ҽ": "e", "ɡ": "g", "ո": "n", "ս": "u", "օ": "o",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "ζ": "z", "η": "n", "ι": "i", "κ": "k", "μ": "u", "ν": "v",
    "ο": "o", "ρ": "p", "σ": "o", "ς": "c", "τ": "t", "υ": "u", "χ": "x", "ω": "w",
    # Latin look-alikes outside ASCII that NFKC leaves alone
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɩ": "i", "ʀ": "r", "ʏ": "y", "ʙ": "b", "ʜ": "h", "ɪ": "i", "ɴ": "n",
    "ᴀ": "a", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ᴋ": "k", "ᴍ": "m", "ᴏ": "o", "ᴘ": "p", "ᴛ": "t", "ᴜ": "u",
    "ᴠ": "v", "ᴡ": "w", "ᴢ": "z", "ø": "o", "đ": "d", "ħ": "h", "ł": "l", "ŀ": "l",
}  # fmt: skip

# Digits and symbols read as letters inside a word ("a55", "h3ll0", "$hit", "@ss"); never applied to a
# token without letters, so numbers such as "2024" or "555" stay numbers.
_LEET: dict[str, str] = {
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a", "$": "s",
}  # fmt: skip
_LEET_TABLE = str.maketrans(_LEET)

# A token is a run of letters and digits (the underscore separates: "_ass_" holds the word "ass"); with
# leetspeak on, "@" and "$" may also sit inside or around a word. Each repetition consumes exactly one
# character through disjoint alternatives, so matching cannot backtrack.
WORD_RE = re.compile(r"[^\W_]+")
"""A word without leetspeak: a run of letters and digits (what `tokens(..., leetspeak=False)` finds)."""
_ASCII_WORD_RE = re.compile(r"[^\W_]+", re.ASCII)
"""`WORD_RE` for ASCII text, where both find the same words: the ASCII class is a table lookup per character, the
Unicode one a category lookup (3.1 µs against 6.6 for a YouTube comment)."""
_LEET_WORD_RE = re.compile(r"(?:[^\W_]|[@$])+")
_LEET_CHARS = frozenset(_LEET)

# Unicode categories dropped before matching: combining marks (accents, "zalgo" stacks) and format
# characters (zero-width space and joiner, soft hyphen, bidi controls, byte-order mark).
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf"})
_BYTE_ORDER_MARK = "\ufeff"
R = TypeVar("R")
TEXT_CACHE_SIZE = 2048
MAX_CACHED_CHARS = 1000
"""`fold`, `tokens`, `canonical_text` and `visible_text` (of non-ASCII text) each remember their last
`TEXT_CACHE_SIZE` texts of up to `MAX_CACHED_CHARS` characters. The comments consumer reads a whole batch (up to
500 comments) before deciding any of it, and each comment leaves two or three forms in each cache (body, name, body
without markup or links): the caches must hold a batch's worth, or the first reading of a text is evicted before
its checks ask again. Longer texts, rare in comments, are worked out each time: tokens of long texts are what made a
cache heavy (2,048 texts of 5,000 characters in two-letter words took 268 MB); bounded this way, 55 MB at worst,
and about 10 MB more for the visible forms (an ASCII value of at most 1,000 bytes beside its key)."""


def _remembered(function: Callable[[str], R]) -> Callable[[str], R]:
    """The text alone is the cache's key (a comment asks a dozen times, so the wrapper stays this small)."""
    cached = functools.lru_cache(maxsize=TEXT_CACHE_SIZE)(function)

    def call(text: str, /) -> R:
        return cached(text) if len(text) <= MAX_CACHED_CHARS else function(text)

    call.__doc__ = function.__doc__
    return call


@functools.cache
def _fold_table() -> dict[int, str | None]:
    """One translation table that drops marks and invisible characters and maps look-alike letters.

    Built on first use (a scan of all code points, about a tenth of a second) so that importing the
    module stays cheap for code that never meets non-ASCII text.
    """
    table: dict[int, str | None] = {
        code_point: None
        for code_point in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code_point)) in _DROPPED_CATEGORIES
    }
    table.update({ord(letter): latin for letter, latin in _HOMOGLYPHS.items()})
    return table


STREAM_SAFE_RUN = 30
"""Combining marks in a row that normalization is given at most (Unicode's stream-safe text format, UAX #15).

Normalizing sorts each run of marks by insertion: a comment of 5,000 alternating marks took 0.2 s to fold, and a
wave of them would stall moderation. Past 30, a combining grapheme joiner ends the run; it is a mark itself, so
folding drops it, and real text never comes near the limit."""
_GRAPHEME_JOINER = "\u034f"


@functools.cache
def _long_mark_runs() -> re.Pattern[str]:
    """Runs of more than `STREAM_SAFE_RUN` characters that decompose to a leading combining mark (a non-starter,
    such as an accent, or U+0F73, which decomposes into two). Built on first use, like `_fold_table`."""
    starts: list[int] = []
    for code_point in range(sys.maxunicode + 1):
        character = chr(code_point)
        if unicodedata.combining(character) or (
            unicodedata.decomposition(character)
            and unicodedata.combining(unicodedata.normalize("NFKD", character)[0])
        ):
            starts.append(code_point)
    ranges: list[str] = []
    for _, group in itertools.groupby(enumerate(starts), key=lambda pair: pair[1] - pair[0]):
        members = [code_point for _, code_point in group]
        ranges.append(f"\\U{members[0]:08x}-\\U{members[-1]:08x}")
    return re.compile(f"[{''.join(ranges)}]{{{STREAM_SAFE_RUN + 1},}}")


@functools.cache
def _invisible_characters() -> re.Pattern[str]:
    """Format characters (category Cf: zero-width space and joiner, soft hyphen, bidi controls, byte-order mark).

    Folding drops them, and none of them decomposes, changes case or combines with its neighbours, so text that
    is ASCII once they are gone folds to that ASCII in lower case. Most comments are such text: pasted ones
    often carry a byte-order mark or a zero-width space, which would otherwise send them through three
    normalizations and a translation of every character (5 µs for a YouTube comment instead of 1.5 µs).
    Built on first use, like `_fold_table`.
    """
    ranges: list[str] = []
    format_characters = (cp for cp in range(0x80, sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Cf")
    for _, group in itertools.groupby(enumerate(format_characters), key=lambda pair: pair[1] - pair[0]):
        members = [code_point for _, code_point in group]
        ranges.append(f"\\U{members[0]:08x}-\\U{members[-1]:08x}")
    return re.compile(f"[{''.join(ranges)}]+")


def visible_text(text: str) -> str:
    """`text` without its format characters when what remains is ASCII (the cheap cases' form), else `text`."""
    return text if text.isascii() else _visible_non_ascii(text)


@_remembered
def _visible_non_ascii(text: str) -> str:
    # Cached: folding and the spam model's shouting check both ask for the same body. Pasted comments are most
    # often ASCII but for byte-order marks (nine in ten YouTube comments): dropping those is one C pass (0.6 µs
    # for a YouTube comment), where the regex over every format character takes 5 µs.
    without_marks = text.replace(_BYTE_ORDER_MARK, "")
    if without_marks.isascii():
        return without_marks
    visible = _invisible_characters().sub("", without_marks)
    return visible if visible.isascii() else text


def _stream_safe(text: str) -> str:
    def split(run: re.Match[str]) -> str:
        marks = run.group()
        return _GRAPHEME_JOINER.join(marks[i : i + STREAM_SAFE_RUN] for i in range(0, len(marks), STREAM_SAFE_RUN))

    return _long_mark_runs().sub(split, text)


@_remembered
def fold(text: str) -> str:
    """Return the matching form of `text`: compatibility-normalized, case-folded, accents and invisible
    characters dropped, look-alike letters mapped to Latin.

    Spacing and punctuation are kept (tokenization decides what a word is), so the result is still
    readable; it is never shown to readers, only compared. Cached: one comment goes through several checks
    (form, duplicate, word lists, spam model), and each would fold the same text again.
    """
    text = visible_text(text)
    if text.isascii():
        # ASCII is its own NFKC form and casefolds to lower case: the steps below would return exactly this.
        return text.lower()
    if not unicodedata.is_normalized("NFKC", text):
        # Normalized text keeps its marks in canonical order, which the insertion sort passes over in one step
        # each; only text that is not (a C-speed check, 0.2 µs for a comment) can hold a run it must sort.
        text = _stream_safe(text)
    folded = unicodedata.normalize("NFKC", text).casefold()
    if folded.isascii():
        return folded
    # Decompose so accents become separate marks, drop them with the invisibles, map look-alikes, then
    # recompose what must stay composed (Hangul, for one).
    folded = unicodedata.normalize("NFKD", folded).translate(_fold_table())
    return unicodedata.normalize("NFKC", folded)


def _read_leet(raw: str) -> list[str]:
    """The word tokens of one leet-capable run: "a$$" -> ["ass"], "@john" -> ["john"], "2024" -> ["2024"].

    A leading "@" is a mention, not a letter. Digits and symbols become letters only when the run also
    holds a letter; otherwise the run is split like ordinary text.
    """
    run = raw.lstrip("@")
    if not run:
        return []
    has_letter = False
    has_leet = False
    for ch in run:
        if ch in _LEET_CHARS:
            has_leet = True
        elif ch.isalpha():
            has_letter = True
    if has_letter and has_leet:
        return WORD_RE.findall(run.translate(_LEET_TABLE))
    return WORD_RE.findall(run)


def tokens(text: str, *, leetspeak: bool = True) -> list[str]:
    """Split folded `text` into word tokens (runs of letters and digits); linear in the text length."""
    return list(_token_tuple(text, leetspeak))


def _token_tuple(text: str, leetspeak: bool) -> tuple[str, ...]:
    """`tokens` as the cached tuple of the reading asked for: the banned and the suspect list read the same comment,
    body and name."""
    return _leet_tokens(text) if leetspeak else plain_words(text)


@_remembered
def plain_words(text: str) -> tuple[str, ...]:
    """The words of folded `text`, no leetspeak read: `tokens(text, leetspeak=False)`, cached. The spam model, the
    near-identical key and (for most texts) the word lists all split the body into these same words."""
    folded = fold(text)
    return tuple((_ASCII_WORD_RE if folded.isascii() else WORD_RE).findall(folded))


@_remembered
def _leet_tokens(text: str) -> tuple[str, ...]:
    folded = fold(text)
    if "@" not in folded and "$" not in folded:
        plain = plain_words(text)
        for first_mixed, word in enumerate(plain):  # noqa: B007 (read after the loop, where it stopped)
            if not (word.isalpha() or word.isdigit()):
                break
        else:
            # No "@" or "$", and no word that mixes digits with letters ("2024" and "#3" stay numbers): nothing is
            # read as a letter, and the words are the plain ones.
            return plain
        # Without "@" or "$" the leet-capable runs are the plain words: only those that mix digits with letters
        # read differently, and the text need not be split again, nor its words before the first of them read twice.
        # (A loop, not `all()` over a generator: 1.1 µs against 1.9 for a YouTube comment's words.)
        words = list(plain[:first_mixed])
        for word in plain[first_mixed:]:
            if word.isalpha() or word.isdigit():
                words.append(word)
            else:
                words.extend(_read_leet(word))
        return tuple(words)
    words = []
    for raw in _LEET_WORD_RE.findall(folded):
        if raw.isalpha():
            words.append(raw)
        else:
            words.extend(_read_leet(raw))
    return tuple(words)


@_remembered
def canonical_text(text: str) -> str:
    """Folded text with runs of whitespace collapsed to one space and the ends trimmed.

    This is the form duplicate detection hashes: a resubmission that only differs in case, spacing,
    fullwidth or look-alike letters is the same comment. Cached like `fold`: the form check, the duplicate
    key and the spam model each ask for it.
    """
    return " ".join(fold(text).split())  # str.split and `\s` agree on what whitespace is


@dataclass(frozen=True, slots=True)
class Match:
    """One list entry found in a text: the entry as it was listed and where it ends (token index)."""

    entry: str
    end_token: int


class PhraseMatcher:
    """Finds whole words and multi-word phrases of a list in a text, in time linear in the text length.

    Entries are folded and tokenized exactly like the text, so an entry "ass" matches "ASS", "аss"
    (Cyrillic а) and "a55", but not "assessment" or "class". Single-word entries are a set lookup per
    token; phrases ("check out my channel") run through an Aho-Corasick automaton over tokens, whose
    failure links keep the scan linear even with overlapping phrases.
    """

    __slots__ = ("_entries", "_fail", "_goto", "_leetspeak", "_outputs", "_single", "_vocabulary")

    def __init__(self, entries: Iterable[str], *, leetspeak: bool = True) -> None:
        self._leetspeak = leetspeak
        self._single: dict[str, str] = {}
        # Trie over tokens: node 0 is the root; _goto[node][token] -> child node.
        self._goto: list[dict[str, int]] = [{}]
        self._outputs: list[tuple[str, ...]] = [()]
        entry_list: list[str] = []
        for entry in entries:
            words = tokens(entry, leetspeak=leetspeak)
            if not words:
                continue
            entry_list.append(entry)
            if len(words) == 1:
                self._single.setdefault(words[0], entry)
            else:
                self._add_phrase(words, entry)
        self._entries = tuple(entry_list)
        self._fail = self._build_failure_links()
        self._vocabulary = frozenset(self._single) | frozenset(word for edges in self._goto for word in edges)
        """Every word of every entry: a text that has none of them matches nothing (most texts, for most lists)."""

    def _add_phrase(self, words: Sequence[str], entry: str) -> None:
        node = 0
        for word in words:
            child = self._goto[node].get(word)
            if child is None:
                child = len(self._goto)
                self._goto[node][word] = child
                self._goto.append({})
                self._outputs.append(())
            node = child
        self._outputs[node] = (*self._outputs[node], entry)

    def _build_failure_links(self) -> list[int]:
        fail = [0] * len(self._goto)
        queue: deque[int] = deque(self._goto[0].values())
        while queue:
            node = queue.popleft()
            for word, child in self._goto[node].items():
                queue.append(child)
                fallback = fail[node]
                while fallback and word not in self._goto[fallback]:
                    fallback = fail[fallback]
                target = self._goto[fallback].get(word, 0)
                fail[child] = target if target != child else 0
                self._outputs[child] = self._outputs[child] + self._outputs[fail[child]]
        return fail

    @property
    def entries(self) -> tuple[str, ...]:
        """The usable entries, as listed (entries that fold to no word at all are dropped)."""
        return self._entries

    def __bool__(self) -> bool:
        return bool(self._entries)

    def find_in_tokens(self, words: Sequence[str]) -> list[Match]:
        """All entries found in an already tokenized text, in order of where they end."""
        found: list[Match] = []
        if self._vocabulary.isdisjoint(words):
            return found
        single = self._single
        goto = self._goto
        has_phrases = len(goto[0]) > 0
        node = 0
        for index, word in enumerate(words):
            entry = single.get(word)
            if entry is not None:
                found.append(Match(entry, index))
            if not has_phrases:
                continue
            while node and word not in goto[node]:
                node = self._fail[node]
            node = goto[node].get(word, 0)
            for phrase in self._outputs[node]:
                found.append(Match(phrase, index))
        return found

    def find(self, text: str) -> list[Match]:
        """All entries found in `text`, in order of where they end."""
        if not self._entries:
            return []
        return self.find_in_tokens(_token_tuple(text, self._leetspeak))

    def matched_entries(self, text: str) -> tuple[str, ...]:
        """The distinct entries found in `text`, in order of first appearance."""
        found = self.find(text)
        return tuple(dict.fromkeys(match.entry for match in found)) if found else ()
