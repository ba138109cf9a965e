"""Folding, tokenization and whole-word matching of moderation word lists."""

from __future__ import annotations

import itertools
import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.comments.textnorm import (
    _LEET_WORD_RE,
    STREAM_SAFE_RUN,
    WORD_RE,
    PhraseMatcher,
    _fold_table,
    _invisible_characters,
    _read_leet,
    _stream_safe,
    canonical_text,
    fold,
    plain_words,
    tokens,
    visible_text,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＡＳＳ", "ass"),  # fullwidth
        ("𝐚𝐬𝐬", "ass"),  # mathematical bold
        ("\u0430ss", "ass"),  # Cyrillic а
        ("\u0430\u0455\u0455", "ass"),  # Cyrillic а and dze
        ("ΑSS", "ass"),  # Greek capital alpha
        ("àśš", "ass"),  # accents
        ("a\u200bs\u00ads\ufeff", "ass"),  # zero-width space, soft hyphen, byte-order mark
        ("z̷̢a̸l̵g̶o", "zalgo"),  # stacked combining marks
        ("Straße", "strasse"),
    ],
)
def test_fold_reaches_the_latin_lowercase_form(text: str, expected: str) -> None:
    assert fold(text) == expected


def test_fold_keeps_other_scripts_readable() -> None:
    assert fold("강남스타일") == "강남스타일"


def test_tokens_split_on_punctuation_and_underscores() -> None:
    assert tokens("Hello, world!_ass_ it's") == ["hello", "world", "ass", "it", "s"]


def test_leetspeak_is_read_only_inside_words() -> None:
    assert tokens("a55 h3ll0 $hit a$$") == ["ass", "hello", "shit", "ass"]
    assert tokens("in 2024 call 555 1234") == ["in", "2024", "call", "555", "1234"]
    assert tokens("@john") == ["john"]


def _leet_tokens_by_definition(text: str) -> list[str]:
    """Every run of letters, digits, "@" and "$" read one at a time (what a text without any such run skips)."""
    words: list[str] = []
    for raw in _LEET_WORD_RE.findall(fold(text)):
        words.extend([raw] if raw.isalpha() else _read_leet(raw))
    return words


LEET_PIECES = st.sampled_from([*"aZ 0123456789@$_#.", "½", "²", "١٢", "é", "\u200b", "ǅ", "ﬁ"])


@given(st.lists(LEET_PIECES, max_size=30).map("".join))
@example("great song #3")
@example("in 2024 a55 h2o x_9 ½1")
def test_tokens_with_leetspeak_are_each_run_read_alone(text: str) -> None:
    assert tokens(text) == _leet_tokens_by_definition(text)


def test_leetspeak_can_be_switched_off() -> None:
    assert tokens("a55 h3ll0", leetspeak=False) == ["a55", "h3ll0"]


def test_canonical_text_collapses_spacing() -> None:
    assert canonical_text("  Great\t\tPOINT \n made ") == "great point made"


def test_empty_and_symbol_only_text_has_no_tokens() -> None:
    assert tokens("") == []
    assert tokens("!!! ... ???") == []
    assert tokens("\u200b\ufeff") == []


def test_whole_words_only_scunthorpe_and_assessment_pass() -> None:
    matcher = PhraseMatcher(["ass", "cunt"])
    assert matcher.find("Scunthorpe United's assessment of the class was fair") == []


def test_banned_word_in_disguise_is_found() -> None:
    matcher = PhraseMatcher(["ass"])
    for disguised in ["you \u0430ss", "you ASS!", "you a55", "you ａｓｓ", "you a\u200bss"]:
        assert matcher.matched_entries(disguised) == ("ass",), disguised


def test_entries_are_folded_like_the_text() -> None:
    matcher = PhraseMatcher(["ÀSS"])
    assert matcher.matched_entries("what an ass") == ("ÀSS",)


def test_phrases_match_as_token_sequences() -> None:
    matcher = PhraseMatcher(["check out my channel", "out my", "my channel rocks"])
    found = [(m.entry, m.end_token) for m in matcher.find("Please CHECK out, my channel rocks")]
    assert found == [("out my", 3), ("check out my channel", 4), ("my channel rocks", 5)]
    assert matcher.find("check out the channel") == []


def test_overlapping_phrases_use_failure_links() -> None:
    matcher = PhraseMatcher(["a b c", "b c d", "c"])
    entries = [m.entry for m in matcher.find("a b c d")]
    assert entries == ["c", "a b c", "b c d"]


def test_entries_without_words_are_ignored() -> None:
    matcher = PhraseMatcher(["", "  ", "!!!"])
    assert not matcher
    assert matcher.find("anything") == []


def test_matching_is_linear_in_text_length() -> None:
    """A long adversarial text (near-misses of every phrase) costs steps proportional to its length.

    Steps are counted, not timed: the number of failure-link transitions of the automaton, which is what a
    quadratic matcher would multiply."""
    entries = [" ".join(["spam"] * n + ["end"]) for n in range(1, 30)]
    matcher = PhraseMatcher(entries)

    class CountingLinks(list[int]):
        steps = 0

        def __getitem__(self, index):  # type: ignore[no-untyped-def,override]
            CountingLinks.steps += 1
            return super().__getitem__(index)

    matcher._fail = CountingLinks(matcher._fail)

    def steps(words: int) -> int:
        CountingLinks.steps = 0
        matcher.find("spam " * words)
        return CountingLinks.steps

    short, long = steps(2_000), steps(20_000)
    assert long <= 2 * 20_000  # amortized: at most about one failure transition per word
    assert long / max(short, 1) < 12  # 10x the text, about 10x the work (quadratic would be ~100x)


WORDS = st.sampled_from(["free", "money", "my", "channel", "check", "out", "now", "cash"])


@given(
    st.lists(st.lists(WORDS, min_size=1, max_size=3).map(" ".join), max_size=6),
    st.lists(WORDS | st.sampled_from(["news", "today", "nice"]), max_size=30),
)
def test_matches_are_every_occurrence_of_every_entry(entries: list[str], words: list[str]) -> None:
    """Against brute force: each entry at each position where its words end (none when no word is shared)."""
    matcher = PhraseMatcher(entries, leetspeak=False)
    expected = {
        (end, entry)
        for entry in dict.fromkeys(entries)
        for end in range(len(words))
        if words[max(0, end - len(entry.split()) + 1) : end + 1] == entry.split()
    }
    found = matcher.find_in_tokens(words)
    assert {(m.end_token, m.entry) for m in found} == expected
    assert [m.end_token for m in found] == sorted(m.end_token for m in found)


def _longest_mark_run(text: str) -> int:
    """The most characters in a row that normalization would have to sort (non-starters once decomposed)."""
    longest = current = 0
    for character in unicodedata.normalize("NFKD", text):
        current = current + 1 if unicodedata.combining(character) else 0
        longest = max(longest, current)
    return longest


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a" + "\u0301\u0316" * 2_500, "a"), ("\u0f73" * 5_000, ""), ("x" + "\u0344\u0316" * 2_000 + "y", "xy")],
    ids=["alternating accents", "two-mark vowel signs", "mixed"],
)
def test_long_runs_of_marks_reach_normalization_in_stream_safe_pieces(text: str, expected: str) -> None:
    """Normalization sorts a run of marks by insertion (0.2 s for one 5,000-character comment of them): runs are
    cut before it sees them. Counted, not timed."""
    assert _longest_mark_run(text) > 4_000
    assert _longest_mark_run(_stream_safe(text)) <= 2 * STREAM_SAFE_RUN  # a vowel sign decomposes into two marks
    assert fold(text) == expected


LETTERS = st.sampled_from("aeoAEOß ")
ACCENTS = st.sampled_from("\u0301\u0300\u0302\u0316\u0323\u0308\u0327\u0344")


@given(st.lists(st.tuples(LETTERS, st.lists(ACCENTS, max_size=80).map("".join)), max_size=6))
def test_cutting_runs_of_accents_changes_no_folded_text(pieces: list[tuple[str, str]]) -> None:
    """Folding drops accents, and the joiner that cuts a run is dropped with them: the folded text is what
    folding the uncut text gives."""
    text = "".join(letter + accents for letter, accents in pieces)
    uncut = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold()).translate(_fold_table())
    assert fold(text) == unicodedata.normalize("NFKC", uncut)


@pytest.mark.parametrize("text", ["a" + "\u0301\u0316" * 100, "\u0f73" * 100, "x" + "\u0344\u0316" * 100])
def test_text_with_marks_out_of_order_is_never_taken_for_normalized(text: str) -> None:
    """`fold` cuts runs only in text that is not NFKC already: marks out of order must never pass that check."""
    assert not unicodedata.is_normalized("NFKC", text)


@given(st.text(alphabet=st.sampled_from("aeoß İ\u0301\u0300\u0316\u0323\u0344\u0f73\u0f71\u0f72\u1e9e"), max_size=80))
def test_normalized_text_decomposes_to_marks_in_canonical_order(text: str) -> None:
    """Why the cut may skip normalized text: its marks, decomposed and case-folded, are already in the order
    normalization sorts them into, so each run costs one pass."""
    if not unicodedata.is_normalized("NFKC", text):
        return
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    classes = [unicodedata.combining(character) for character in decomposed]
    out_of_order = sum(1 for before, after in itertools.pairwise(classes) if after and before > after)
    assert out_of_order <= decomposed.count("i\u0307")  # casefold writes İ as i + dot above, ahead of later marks


def _fold_every_step(text: str) -> str:
    """`fold` as its docstring defines it, every step taken whatever the text."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKD", folded).translate(_fold_table()))


FORMAT_CHARACTERS = "".join(
    chr(code_point) for code_point in range(0x80, 0x110000) if unicodedata.category(chr(code_point)) == "Cf"
)


@example("Check out my channel\ufeff")  # the byte-order mark that ends most YouTube comments
@example("fr\u200bee m\u00adoney \u202eevil")
@given(st.text(alphabet=st.one_of(st.characters(max_codepoint=0x7F), st.sampled_from(FORMAT_CHARACTERS)), max_size=60))
def test_ascii_behind_invisible_characters_folds_as_every_step_would(text: str) -> None:
    """The shortcut for text that is ASCII but for format characters gives what the full folding gives."""
    assert fold(text) == _fold_every_step(text)
    if not text.isascii():
        assert _invisible_characters().sub("", text).isascii()


@example("K\u200d\u0301")  # a mark after an invisible character: not ASCII once it is gone
@example("\ufeffstra\u00dfe")
@given(st.text(alphabet=st.one_of(st.characters(), st.sampled_from(FORMAT_CHARACTERS)), max_size=40))
def test_any_text_folds_as_every_step_would(text: str) -> None:
    if unicodedata.is_normalized("NFKC", text):  # other text is first cut into stream-safe runs (tested above)
        assert fold(text) == _fold_every_step(text)


@example("Check out my channel\ufeff")
@example("caf\u00e9\ufeff\u200b")
@example("\ufeff\u200b")
@given(st.text(alphabet=st.one_of(st.characters(), st.sampled_from(FORMAT_CHARACTERS), st.just("\ufeff")), max_size=40))
def test_visible_text_drops_format_characters_only_when_that_leaves_ascii(text: str) -> None:
    """The byte-order marks go first in one pass; the result is what dropping every format character gives."""
    visible = _invisible_characters().sub("", text)
    assert visible_text(text) == (visible if visible.isascii() else text)


@example("h3ll0 wor_ld 2024 \u0661\u0662 \u00bd")
@given(st.text(alphabet=st.one_of(st.characters(max_codepoint=0x7F), st.characters()), max_size=40))
def test_plain_words_are_the_word_runs_of_the_folded_text(text: str) -> None:
    """ASCII text is split with the ASCII pattern; it must find the words the Unicode one finds."""
    assert list(plain_words(text)) == WORD_RE.findall(fold(text))

