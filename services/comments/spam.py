"""The comment spam model: feature extraction and scoring, with no training library at run time.

The model is a logistic regression over TF-IDF-weighted binary features (words, word pairs and a few
hand-made signals: links, bare domains, shouting, self-promotion and like-bait phrases, money talk). It is
trained by `services.comments.train_spam` and shipped as `spam_model.json` next to this module; scoring
is a dictionary lookup per feature, so loading is instant and one core scores tens of thousands of
comments a second.

A comment the model calls spam is *held* for a moderator, never deleted: the model is an assistant, and
its threshold is chosen to keep wrongly held legitimate comments rare.
"""

from __future__ import annotations

import functools
import html
import itertools
import json
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

from services.comments.textnorm import PhraseMatcher, canonical_text, plain_words, visible_text

SHIPPED_MODEL_PATH = Path(__file__).with_name("spam_model.json")
MODEL_FORMAT = 1

# Phrases that, in comment sections everywhere, mean someone is advertising themselves, fishing for likes
# or selling something. Each is a feature of its own; the model learns how much each one weighs.
SELF_PROMOTION_PHRASES: tuple[str, ...] = (
    "my channel", "my video", "my videos", "my new", "check out", "check my", "subscribe", "sub to",
    "sub me", "subscribers", "follow me", "watch my", "visit my", "my blog", "my page", "my website",
    "my site", "look up", "search for", "please watch", "take a look", "give it a", "my music", "my song",
    "my playlist", "my account", "i made", "we made", "support me", "help me", "plz", "please",
)  # fmt: skip
LIKE_BAIT_PHRASES: tuple[str, ...] = (
    "like this comment", "thumbs up if", "like if", "give it a like", "share", "likes", "this comment",
    "vote",
)  # fmt: skip
MONEY_PHRASES: tuple[str, ...] = (
    "free", "gift card", "gift cards", "earn", "money", "cash", "win", "paypal", "pay pal", "dollars",
    "promo", "click", "join", "offer", "work from home", "per hour", "per day", "click here",
)  # fmt: skip

_CUE_MATCHER = PhraseMatcher([*SELF_PROMOTION_PHRASES, *LIKE_BAIT_PHRASES, *MONEY_PHRASES], leetspeak=False)
_CUE_FEATURE: dict[str, str] = {
    **{phrase: "cue:promo:" + phrase for phrase in SELF_PROMOTION_PHRASES},
    **{phrase: "cue:bait:" + phrase for phrase in LIKE_BAIT_PHRASES},
    **{phrase: "cue:money:" + phrase for phrase in MONEY_PHRASES},
}

_TAG_RE = re.compile(r"<[^<>]*>")
_LINK_RE = re.compile(r"https?://|www\.")
# "example.com", "kidsmediausa . com", "bit.ly/x": domains written without a scheme to dodge link filters. A label
# is at most 63 characters (RFC 1035); unbounded, the pattern backtracked over the whole run from every word
# boundary in it, and "a-a-a-…" made it quadratic (0.13 s for one 5,000-character comment).
_BARE_DOMAIN_RE = re.compile(
    r"\b[a-z0-9-]{1,63} ?\. ?(?:com|net|org|info|biz|ly|co|me|tv|io|us|uk|de|pl|ru|xyz|online|site)\b"
)
# The dot and the top-level domain that any bare domain ends with, as a pattern that starts with a literal: the regex
# engine jumps from dot to dot, where the full pattern tries at every word boundary (0.6 µs a comment against 2.7).
_DOMAIN_END_RE = re.compile(r"\. ?(?:com|net|org|info|biz|ly|co|me|tv|io|us|uk|de|pl|ru|xyz|online|site)\b")
_CURRENCY = frozenset("$€£")
_ASCII_LETTERS = string.ascii_letters.encode()
_ASCII_UPPERCASE = string.ascii_uppercase.encode()


def plain_text(text: str) -> str:
    """Comment text as a reader sees it: HTML entities decoded and tags removed.

    Spammers paste markup (`<a href=...>`, `&#39;`); the model should see the words, not the escaping.
    """
    if "&" in text:
        text = html.unescape(text)
    if "<" in text:
        text = _TAG_RE.sub(" ", text)
    return text


def _shouting(text: str) -> bool:
    """Mostly capital letters over a comment long enough for that to mean something.

    Most comments are ASCII, once the invisible characters that are neither letters nor capitals are gone (a
    byte-order mark ends most YouTube comments), and there the letters and capitals are counted by deleting them
    from the bytes (two C passes) instead of asking each character (equal: tests/unit/test_moderation.py).
    """
    text = visible_text(text)
    if text.isascii():
        raw = text.encode("ascii")
        letters = len(raw) - len(raw.translate(None, _ASCII_LETTERS))
        upper = len(raw) - len(raw.translate(None, _ASCII_UPPERCASE))
    else:
        letters = sum(map(str.isalpha, text))
        upper = sum(map(str.isupper, text))
    return letters >= 8 and upper > 0.6 * letters


def spam_features(text: str) -> list[str]:
    """The distinct binary features of one comment, by name.

    Words and adjacent word pairs of the folded text carry most of the signal; the `cue:` features name
    known spam phrases; `link:`, `domain`, `shout`, `bang`, `currency` and `len:` describe the form.
    """
    words, signals = _words_and_signals(text)
    features = ["w:" + word for word in words]
    features.extend([f"b:{first} {second}" for first, second in itertools.pairwise(words)])
    features.extend(signals)
    return list(dict.fromkeys(features))


def _words_and_signals(text: str) -> tuple[tuple[str, ...], list[str]]:
    """What `spam_features` names, before the words and word pairs are written as names: the words, in order, and
    the other features (cues in the order they are found, then the form)."""
    plain = plain_text(text)
    canonical = canonical_text(plain)
    words = plain_words(plain)  # the words of `canonical` (spacing is all that sets it apart from the folded text)
    # Cues in the order they are found, not a set's: the score is then the same sum, to the last bit, in every process.
    signals = [_CUE_FEATURE[match.entry] for match in _CUE_MATCHER.find_in_tokens(words)]
    links = len(_LINK_RE.findall(canonical)) if "://" in canonical or "www." in canonical else 0  # folded: lower case
    signals.append(f"link:{min(links, 2)}")
    if _DOMAIN_END_RE.search(canonical) and _BARE_DOMAIN_RE.search(canonical):
        signals.append("domain")
    if _shouting(plain):
        signals.append("shout")
    if plain.count("!") >= 3:
        signals.append("bang")
    if not _CURRENCY.isdisjoint(plain):
        signals.append("currency")
    signals.append(f"len:{min(len(words) // 5, 6)}")
    return words, signals


def is_word_feature(name: str) -> bool:
    return name.startswith(("w:", "b:"))


def feature_idf(name: str, document_frequency: int, documents: int, signal_boost: float) -> float:
    """Smoothed inverse document frequency, ln((1 + n) / (1 + df)) + 1, boosted for hand-made features.

    The boost gives phrase cues and form signals more say than any single word: they generalize across
    comment sections where words do not.
    """
    idf = math.log((1 + documents) / (1 + document_frequency)) + 1.0
    return idf if is_word_feature(name) else idf * signal_boost


@dataclass(frozen=True, slots=True)
class SpamModel:
    """A trained linear model over TF-IDF-weighted binary features.

    `scaled_weights[f]` is the coefficient of feature f times its IDF and `squared_idf[f]` its IDF squared:
    with them the L2-normalized TF-IDF vector never has to be built. Features the model never saw are
    ignored, exactly as at training time.
    """

    scaled_weights: Mapping[str, float]
    squared_idf: Mapping[str, float]
    bias: float
    threshold: float
    metadata: Mapping[str, Any] = field(default_factory=dict)
    _words: dict[str, complex] = field(init=False, repr=False, compare=False)
    _pairs: dict[tuple[str, str], complex] = field(init=False, repr=False, compare=False)
    _signals: dict[str, complex] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Each feature's weight and squared IDF travel as one complex number, so one C-level pass
        # (map + dict.get + sum) yields both the dot product (real part) and the squared norm (imaginary). Words
        # and word pairs are looked up as the words themselves, not as the names `spam_features` writes: a comment
        # has dozens of them, and writing and hashing their names was a fifth of its scoring.
        words: dict[str, complex] = {}
        pairs: dict[tuple[str, str], complex] = {}
        signals: dict[str, complex] = {}
        for name, weight in self.scaled_weights.items():
            packed = complex(weight, self.squared_idf[name])
            if name.startswith("w:"):
                words[name[2:]] = packed
            elif name.startswith("b:"):
                first, _, second = name[2:].partition(" ")  # words hold no space
                pairs[first, second] = packed
            else:
                signals[name] = packed
        object.__setattr__(self, "_words", words)
        object.__setattr__(self, "_pairs", pairs)
        object.__setattr__(self, "_signals", signals)

    def decision_value(self, text: str) -> float:
        """The log-odds that `text` is spam."""
        words, signals = _words_and_signals(text)
        # The features of `spam_features`, in its order (its names differ in their prefixes, so each kind is made
        # distinct on its own), summed in one pass: the same sum to the last bit.
        total = sum(
            itertools.chain(
                map(self._words.get, dict.fromkeys(words), repeat(0j)),
                map(self._pairs.get, dict.fromkeys(itertools.pairwise(words)), repeat(0j)),
                map(self._signals.get, dict.fromkeys(signals), repeat(0j)),
            ),
            0j,
        )
        if total.imag == 0.0:
            return self.bias
        return self.bias + total.real / math.sqrt(total.imag)

    def score(self, text: str) -> float:
        """The probability-like spam score in [0, 1]."""
        value = self.decision_value(text)
        if value >= 0:
            return 1.0 / (1.0 + math.exp(-value))
        odds = math.exp(value)
        return odds / (1.0 + odds)

    def scores(self, texts: Iterable[str]) -> list[float]:
        return [self.score(text) for text in texts]

    def is_spam(self, text: str) -> bool:
        return self.score(text) >= self.threshold

    @classmethod
    def from_coefficients(
        cls,
        coefficients: Mapping[str, float],
        document_frequency: Mapping[str, int],
        *,
        documents: int,
        signal_boost: float,
        bias: float,
        threshold: float,
        metadata: Mapping[str, Any] | None = None,
    ) -> SpamModel:
        """Build the scorer from what training produced: one coefficient and document frequency per feature."""
        scaled_weights: dict[str, float] = {}
        squared_idf: dict[str, float] = {}
        for name, coefficient in coefficients.items():
            idf = feature_idf(name, document_frequency[name], documents, signal_boost)
            scaled_weights[name] = coefficient * idf
            squared_idf[name] = idf * idf
        return cls(scaled_weights, squared_idf, bias, threshold, dict(metadata or {}))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpamModel:
        """Read the JSON form written by the trainer: `[coefficient, document frequency]` per feature."""
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(f"unsupported spam model format {data.get('format')!r}, expected {MODEL_FORMAT}")
        features: Mapping[str, Sequence[float]] = data["features"]
        return cls.from_coefficients(
            {name: float(pair[0]) for name, pair in features.items()},
            {name: int(pair[1]) for name, pair in features.items()},
            documents=int(data["documents"]),
            signal_boost=float(data["signal_boost"]),
            bias=float(data["bias"]),
            threshold=float(data["threshold"]),
            metadata=data.get("metadata", {}),
        )


def model_document(
    coefficients: Mapping[str, float],
    document_frequency: Mapping[str, int],
    *,
    documents: int,
    signal_boost: float,
    bias: float,
    threshold: float,
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON form of a model; coefficients are rounded to keep the shipped file small."""
    return {
        "format": MODEL_FORMAT,
        "documents": documents,
        "signal_boost": signal_boost,
        "bias": round(bias, 6),
        "threshold": threshold,
        "metadata": dict(metadata),
        "features": {name: [round(coefficients[name], 4), document_frequency[name]] for name in sorted(coefficients)},
    }


def load_model(path: Path = SHIPPED_MODEL_PATH) -> SpamModel:
    """Read a model file written by the trainer."""
    with path.open(encoding="utf-8") as handle:
        return SpamModel.from_dict(json.load(handle))


@functools.cache
def shipped_model() -> SpamModel:
    """The model that ships with the package, read once per process."""
    return load_model(SHIPPED_MODEL_PATH)
