"""How the "Check Also" engine scales: upsert latency, memory and start-up rebuild by archive size.

The archive is grown from the BBC corpus: article i takes the paragraphs of BBC article i mod 2225
that survive a seeded coin toss (60 %) plus one paragraph of another random article, gets its own
guid, a publication time one minute after the previous one, and the BBC category as its section.
So copies of one BBC story are related but rarely near-duplicates, like follow-ups of a story.

Each size runs in a fresh process so that resident memory is that of the engine at that size:

    .venv/bin/python -m bench.related_scale --sizes 1000,10000,100000
    .venv/bin/python -m bench.related_scale --sizes 1000000        # about 10 minutes

Child processes run with OPENBLAS_NUM_THREADS=1 unless it is set: the engine's matrix products are
small, and on a shared two-core machine a second BLAS thread only adds contention.

Columns: rebuild = ``RelatedEngine.build`` from all articles (encoding included), wall clock and
CPU time of the process (the difference is time spent waiting for a core); upsert p50/p99 =
one new article, encoding and back-fill included, over ``--new`` articles; lists = mean number of
lists changed per upsert; remove p50/p99 over 50 removals; rss = resident memory after the run;
stale = lists differing from ``recompute_all`` afterwards (checked up to ``--check-up-to``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.corpus_bbc import BbcArticle, bbc_available, load_bbc
from services.related.engine import RelatedDoc, RelatedEngine

START = 1_104_537_600.0  # 2005-01-01T00:00:00Z


def synthetic_docs(articles: Sequence[BbcArticle], start: int, count: int) -> Iterator[RelatedDoc]:
    """Articles start..start+count-1 of the grown archive (each one depends only on its index)."""
    for i in range(start, start + count):
        rng = random.Random(i)
        base = articles[i % len(articles)]
        kept = [p for p in base.paragraphs if rng.random() < 0.6] or list(base.paragraphs[:1])
        donor = articles[rng.randrange(len(articles))]
        if donor.paragraphs:
            kept.insert(rng.randrange(len(kept) + 1), rng.choice(donor.paragraphs))
        guid = f"a{i:08d}"
        yield RelatedDoc(
            guid=guid,
            story_root=guid,
            headline=base.title,
            excerpt=kept[0][:160] if kept else "",
            url_path=f"/news/{guid}",
            text="\n\n".join(kept),
            tags=(),
            section=base.category,
            published_at=START + 60.0 * i,
        )


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB."""
    values: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(size: int, new: int, check_up_to: int) -> dict[str, float]:
    articles = load_bbc()
    started = time.perf_counter()
    cpu_started = time.process_time()
    engine = RelatedEngine.build(synthetic_docs(articles, 0, size))
    rebuild = time.perf_counter() - started
    rebuild_cpu = time.process_time() - cpu_started
    gc.collect()
    gc.freeze()  # what a long-running service does after start-up: keep the archive out of GC scans
    upserts: list[float] = []
    changed: list[int] = []
    for doc in synthetic_docs(articles, size, new):
        t = time.perf_counter()
        changes = engine.upsert(doc)
        upserts.append(time.perf_counter() - t)
        changed.append(len(changes))
    rng = random.Random(size)
    removes: list[float] = []
    for index in rng.sample(range(size), min(50, size)):
        t = time.perf_counter()
        engine.remove(f"a{index:08d}")
        removes.append(time.perf_counter() - t)
    stale = -1.0
    if size <= check_up_to:
        reference = engine.recompute_all()
        stale = float(sum(engine.links(g) != links for g, links in reference.items()))
    current, peak = rss_mib()
    return {
        "size": size,
        "partitions": engine.partitions,
        "rebuild_s": rebuild,
        "rebuild_cpu_s": rebuild_cpu,
        "upsert_p50_ms": 1000 * statistics.median(upserts),
        "upsert_p99_ms": 1000 * percentile(upserts, 0.99),
        "lists_per_upsert": statistics.mean(changed),
        "remove_p50_ms": 1000 * statistics.median(removes),
        "remove_p99_ms": 1000 * percentile(removes, 0.99),
        "rss_mib": current,
        "peak_rss_mib": peak,
        "stale": stale,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated archive sizes")
    parser.add_argument("--new", type=int, default=200, help="new articles timed per size")
    parser.add_argument("--check-up-to", type=int, default=100_000, help="largest size checked for staleness")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not bbc_available():
        print("../shared/data not present: the BBC corpus is needed to grow the archive", file=sys.stderr)
        return 2
    if args.one is not None:
        print(json.dumps(measure(args.one, args.new, args.check_up_to)))
        return 0
    header = (
        f"{'articles':>9} {'cells':>6} {'rebuild s':>10} {'(cpu s)':>8} {'upsert p50 ms':>14} {'upsert p99 ms':>14} "
        f"{'lists/upsert':>13} {'remove p50 ms':>14} {'remove p99 ms':>14} {'rss MiB':>8} {'peak MiB':>9} "
        f"{'stale':>6}"
    )
    print(header, flush=True)
    # The engine's matrix products are small; one BLAS thread per process avoids oversubscribing
    # the cores (the service runs the same way), unless the caller chose otherwise.
    child_env = {**os.environ}
    child_env.setdefault("OPENBLAS_NUM_THREADS", "1")
    for size in (int(s) for s in args.sizes.split(",") if s):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.related_scale",
                "--one",
                str(size),
                "--new",
                str(args.new),
                "--check-up-to",
                str(args.check_up_to),
            ],
            check=True,
            capture_output=True,
            text=True,
            env=child_env,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        stale = "-" if r["stale"] < 0 else str(int(r["stale"]))
        print(
            f"{int(r['size']):>9} {int(r['partitions']):>6} {r['rebuild_s']:>10.1f} {r['rebuild_cpu_s']:>8.1f} "
            f"{r['upsert_p50_ms']:>14.2f} "
            f"{r['upsert_p99_ms']:>14.2f} {r['lists_per_upsert']:>13.1f} {r['remove_p50_ms']:>14.2f} "
            f"{r['remove_p99_ms']:>14.2f} {r['rss_mib']:>8.0f} {r['peak_rss_mib']:>9.0f} {stale:>6}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
