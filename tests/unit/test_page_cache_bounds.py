"""The readers' in-process page cache stays within its count and its bytes (no Redis needed: pages are fetched
through the function the cache is given, and invalidation is called as the Redis channel would)."""

from __future__ import annotations

from typing import Any

from services.publisher.pagecache import PageCache
from services.publisher.web import PreparedPage

KIB = 1024


def page_of(fields: dict[bytes, bytes]) -> PreparedPage:
    return PreparedPage(200, fields[b"body"], gz=fields[b"body"][: len(fields[b"body"]) // 4], etag=b'"t"')


def cache(**bounds: Any) -> PageCache[PreparedPage]:
    sizes = {"/small": 2 * KIB, "/story": 60 * KIB, "/long-story": 120 * KIB}

    async def fetch(path: str) -> dict[bytes, bytes]:
        return {b"body": b"x" * sizes.get(path.split("?")[0].rstrip("0123456789"), 2 * KIB)}

    pages: PageCache[PreparedPage] = PageCache(
        None, "bs:pub:{", fetch, page_of, size_of=lambda page: page.size, **bounds  # type: ignore[arg-type]
    )
    pages.enabled = True  # as once the invalidation channel is up
    return pages


async def test_bytes_bound_what_stays_whatever_the_count_allows() -> None:
    pages = cache(max_entries=1000, max_bytes=300 * KIB)
    for n in range(10):
        await pages.get(f"/story{n}")
    kept = len(pages.entries)
    assert list(pages.entries) == [f"/story{n}" for n in range(10 - kept, 10)]  # the newest that fit
    assert pages.bytes == sum(page.size for page in pages.entries.values())
    one = pages.entries["/story9"].size
    assert pages.bytes <= 300 * KIB < pages.bytes + one  # and no fewer than fit


async def test_invalidating_and_replacing_keep_the_count_of_bytes_right() -> None:
    pages = cache(max_entries=1000, max_bytes=10_000 * KIB)
    await pages.get("/long-story")
    await pages.get("/small")
    pages.invalidate("/long-story")
    assert list(pages.entries) == ["/small"] and pages.bytes == pages.entries["/small"].size
    await pages.get("/small")  # a hit: nothing counted twice
    pages.invalidate("/small")
    await pages.get("/small")  # fetched again after a change
    assert pages.bytes == pages.entries["/small"].size
    pages.clear()
    assert pages.bytes == 0 and not pages.entries


async def test_the_count_still_bounds_small_pages() -> None:
    pages = cache(max_entries=3, max_bytes=10_000 * KIB)
    for n in range(5):
        await pages.get(f"/small{n}")
    assert list(pages.entries) == ["/small2", "/small3", "/small4"]
