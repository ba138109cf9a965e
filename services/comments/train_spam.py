"""Train, cross-validate and write the comment spam model.

    python -m services.comments.train_spam [--data DIR] [--out PATH] [--no-write]

The training data is the YouTube Spam Collection (three CSV files of labelled comments under
`<repo>/../shared/data/youtube-spam`); it is read where it lies and never copied into the repository.
Before writing the model, the script cross-validates across the files (train on two, test on the third,
all three ways) and prints precision, recall and false-positive rate per fold and overall, so every
regenerated model comes with its own quality report. The shipped model is trained on all the files.

Training uses scikit-learn; scoring (`services.comments.spam`) does not.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from services.comments.spam import SHIPPED_MODEL_PATH, SpamModel, feature_idf, model_document, spam_features

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "youtube-spam"

# The hyperparameters below were chosen by the leave-one-file-out cross-validation this module runs.
# Inverse regularization strength of the logistic regression; larger trusts the training data more.
REGULARIZATION_C = 30.0
# A feature must occur in at least this many training comments to enter the model.
MIN_DOCUMENT_FREQUENCY = 1
# Weight of the hand-made features (phrase cues, links, shouting...) relative to plain words in the TF-IDF
# vector. They generalize across comment sections where individual words do not, so they count more.
SIGNAL_BOOST = 3.0
# Scores at or above this are spam. Above 0.5 on purpose: a legitimate comment wrongly held costs a
# reader's trust, a spam comment missed costs a moderator's click.
SPAM_THRESHOLD = 0.55


@dataclass(frozen=True, slots=True)
class LabelledComments:
    """The comments of one data file with their labels (True = spam)."""

    name: str
    texts: tuple[str, ...]
    labels: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class Quality:
    """Confusion counts of spam predictions and the rates derived from them."""

    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 1.0

    @property
    def recall(self) -> float:
        spam = self.true_positives + self.false_negatives
        return self.true_positives / spam if spam else 1.0

    @property
    def false_positive_rate(self) -> float:
        legitimate = self.false_positives + self.true_negatives
        return self.false_positives / legitimate if legitimate else 0.0

    def __add__(self, other: Quality) -> Quality:
        return Quality(
            self.true_positives + other.true_positives,
            self.false_positives + other.false_positives,
            self.true_negatives + other.true_negatives,
            self.false_negatives + other.false_negatives,
        )

    def describe(self) -> str:
        return (
            f"precision {self.precision:.3f}  recall {self.recall:.3f}  FPR {self.false_positive_rate:.3f}"
            f"  (tp {self.true_positives}, fp {self.false_positives},"
            f" tn {self.true_negatives}, fn {self.false_negatives})"
        )


@dataclass(frozen=True, slots=True)
class FoldResult:
    test_file: str
    threshold: float
    quality: Quality


def read_labelled_comments(path: Path) -> LabelledComments:
    """One CSV file of the collection (columns COMMENT_ID, AUTHOR, DATE, CONTENT, CLASS; 1 = spam)."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return LabelledComments(
        name=path.name,
        texts=tuple(row["CONTENT"] for row in rows),
        labels=tuple(row["CLASS"].strip() == "1" for row in rows),
    )


def read_collection(data_dir: Path = DEFAULT_DATA_DIR) -> list[LabelledComments]:
    files = sorted(data_dir.glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no labelled comment files (*.csv) in {data_dir}")
    return [read_labelled_comments(path) for path in files]


@dataclass(frozen=True, slots=True)
class TrainedWeights:
    """What the logistic regression learned, in the form the model file stores."""

    coefficients: dict[str, float]
    document_frequency: dict[str, int]
    documents: int
    bias: float


def fit_weights(
    texts: Sequence[str],
    labels: Sequence[bool],
    *,
    regularization: float = REGULARIZATION_C,
    min_document_frequency: int = MIN_DOCUMENT_FREQUENCY,
    signal_boost: float = SIGNAL_BOOST,
) -> TrainedWeights:
    """Fit the logistic regression on L2-normalized binary TF-IDF features (IDF as `feature_idf`)."""
    documents = [spam_features(text) for text in texts]
    document_frequency: dict[str, int] = {}
    for features in documents:
        for name in features:
            document_frequency[name] = document_frequency.get(name, 0) + 1
    vocabulary = sorted(name for name, count in document_frequency.items() if count >= min_document_frequency)
    column = {name: index for index, name in enumerate(vocabulary)}
    n_documents = len(documents)
    idf = np.array([feature_idf(name, document_frequency[name], n_documents, signal_boost) for name in vocabulary])

    rows: list[int] = []
    cols: list[int] = []
    for row, features in enumerate(documents):
        for name in features:
            index = column.get(name)
            if index is not None:
                rows.append(row)
                cols.append(index)
    values = idf[np.array(cols, dtype=np.int64)] if cols else np.zeros(0)
    matrix = sparse.csr_matrix((values, (rows, cols)), shape=(n_documents, len(vocabulary)))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0.0] = 1.0
    matrix = sparse.diags(1.0 / norms) @ matrix

    classifier = LogisticRegression(C=regularization, max_iter=5000)
    classifier.fit(matrix, np.array(labels, dtype=np.int64))
    coefficients = classifier.coef_.ravel()
    return TrainedWeights(
        coefficients={name: float(coefficients[i]) for i, name in enumerate(vocabulary)},
        document_frequency={name: document_frequency[name] for name in vocabulary},
        documents=n_documents,
        bias=float(classifier.intercept_[0]),
    )


def model_document_for(
    files: Sequence[LabelledComments],
    *,
    regularization: float = REGULARIZATION_C,
    min_document_frequency: int = MIN_DOCUMENT_FREQUENCY,
    signal_boost: float = SIGNAL_BOOST,
    threshold: float = SPAM_THRESHOLD,
) -> dict[str, Any]:
    """Train on these files and return the model file's content."""
    texts = [text for f in files for text in f.texts]
    labels = [label for f in files for label in f.labels]
    trained = fit_weights(
        texts,
        labels,
        regularization=regularization,
        min_document_frequency=min_document_frequency,
        signal_boost=signal_boost,
    )
    return model_document(
        trained.coefficients,
        trained.document_frequency,
        documents=trained.documents,
        signal_boost=signal_boost,
        bias=trained.bias,
        threshold=threshold,
        metadata={
            "trained_on": [f.name for f in files],
            "regularization_c": regularization,
            "min_document_frequency": min_document_frequency,
        },
    )


def fit_model(files: Sequence[LabelledComments], **options: float) -> SpamModel:
    """Train on these files; the model scores exactly as the shipped file would (rounding included)."""
    return SpamModel.from_dict(model_document_for(files, **options))  # type: ignore[arg-type]


def measure(model: SpamModel, comments: LabelledComments) -> Quality:
    tp = fp = tn = fn = 0
    for text, spam in zip(comments.texts, comments.labels, strict=True):
        flagged = model.is_spam(text)
        if spam and flagged:
            tp += 1
        elif spam:
            fn += 1
        elif flagged:
            fp += 1
        else:
            tn += 1
    return Quality(tp, fp, tn, fn)


def cross_validate(files: Sequence[LabelledComments]) -> list[FoldResult]:
    """Leave-one-file-out: train on all files but one, measure on the one left out."""
    results: list[FoldResult] = []
    for held_out in range(len(files)):
        training = [f for i, f in enumerate(files) if i != held_out]
        model = fit_model(training)
        results.append(FoldResult(files[held_out].name, model.threshold, measure(model, files[held_out])))
    return results


def overall(results: Sequence[FoldResult]) -> Quality:
    total = Quality(0, 0, 0, 0)
    for result in results:
        total = total + result.quality
    return total


def report(results: Sequence[FoldResult]) -> str:
    lines = [f"test {r.test_file:<22} threshold {r.threshold:.3f}  {r.quality.describe()}" for r in results]
    lines.append(f"{'overall':<36}        {overall(results).describe()}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="directory of labelled CSV files")
    parser.add_argument("--out", type=Path, default=SHIPPED_MODEL_PATH, help="where to write the model")
    parser.add_argument("--no-write", action="store_true", help="only cross-validate")
    args = parser.parse_args(argv)

    files = read_collection(args.data)
    print("Cross-validation, train on two files, test on the third:")
    print(report(cross_validate(files)))
    if args.no_write:
        return 0
    document = model_document_for(files)
    args.out.write_text(json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(f"wrote {args.out} ({len(document['features'])} features, threshold {document['threshold']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
