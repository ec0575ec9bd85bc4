"""Graders for Lab 03's notebook, so that its test cells stay one line long.

* :func:`compare_fanout` -- the student's ``fanout_targets`` against :func:`lab_core.feed.policy.fanout_targets`
  on generated authors, follower lists and active sets.
* :func:`compare_merge` -- the student's ``merge`` against :func:`lab_core.feed.policy.merge` on generated
  sources (duplicates across sources, posts made in the same instant), page by page through the
  student's *own* cursors, including walks during which newer posts arrive between two page reads.
  Pages are compared item by item, whole: which copy of a duplicate is kept shows in its ``source``.
* :func:`compare_timeline_write` / :func:`check_timeline_transaction` -- the student's
  ``add_to_timeline`` on fakeredis against :meth:`lab_core.feed.timeline.Timelines.add`, and that
  each call's writes reach the server in exactly one MULTI/EXEC (or one script), read off the
  commands the client sends, not off how the pipeline was opened.
* :func:`compare_features` -- the student's ``features`` against :func:`lab_core.feed.ranker.features`.

Every check raises ``AssertionError`` with a readable counterexample; a ``NotImplementedError``
from a blank exercise is let through unchanged. Hypothesis runs derandomized, so a grade never
depends on luck.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lab_core.grading_kit import hypothesis_settings, run_property  # before hypothesis: sets its cache folder

# isort: split

import fakeredis
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lab_core.feed import policy, ranker
from lab_core.feed.config import FeedConfig
from lab_core.feed.policy import FeedItem
from lab_core.feed.timeline import Timelines

__all__ = [
    "check_timeline_transaction",
    "command_names",
    "compare_features",
    "compare_fanout",
    "compare_merge",
    "compare_timeline_write",
    "exchanges",
    "recording_redis",
    "walk",
    "walk_items",
]


# --- exercise 1: fan-out targets ------------------------------------------------------------


@st.composite
def _fanout_cases(draw: st.DrawFn) -> tuple[int, list[int], set[int] | None, int]:
    followers = draw(st.lists(st.integers(0, 60), max_size=25, unique=True))
    threshold = draw(st.integers(1, 30))
    # The count the author is judged by: usually the list's length, around the threshold on purpose.
    count = draw(
        st.one_of(
            st.just(len(followers)), st.sampled_from([threshold - 1, threshold, threshold + 1]), st.integers(0, 10_000)
        )
    )
    count = max(0, count)
    active = draw(st.one_of(st.none(), st.sets(st.integers(0, 60), max_size=40)))
    return count, followers, active, threshold


def compare_fanout(fn: Callable[..., Any], max_examples: int = 300) -> None:
    """``fn(count, followers, active, threshold)`` returns the reference's list, same order."""

    @hypothesis_settings(max_examples)
    @given(_fanout_cases())
    def test(case: tuple[int, list[int], set[int] | None, int]) -> None:
        count, followers, active, threshold = case
        want = policy.fanout_targets(count, list(followers), None if active is None else set(active), threshold)
        got = fn(count, list(followers), None if active is None else set(active), threshold)
        assert got is not None and list(got) == want, (
            f"fanout_targets({count}, followers={followers}, active={sorted(active) if active is not None else None}, "
            f"threshold={threshold})\n  reference: {want}\n  yours:     {None if got is None else list(got)}"
        )

    run_property(test)


# --- exercise 2: merge and pagination -------------------------------------------------------


def _describe(items: Any) -> str:
    try:
        return "[" + ", ".join(f"#{i.post_id}@{i.created_at:g} {i.source}" for i in items) + "]"
    except Exception:  # noqa: BLE001 - describing whatever the student returned
        return repr(items)


def _describe_pages(pages: list[list[FeedItem]]) -> str:
    return "[" + ", ".join(_describe(page) for page in pages) + "]"


def _ids(items: Any) -> Any:
    """Post ids of a page (or of a list of pages); None if they are not items."""
    try:
        return [_ids(i) if isinstance(i, list) else i.post_id for i in items]
    except (AttributeError, TypeError):
        return None


# Ids in the right order but not the same items: the copy of a duplicated post kept is not the first met.
_COPY_HINT = (
    "\n  the same posts, but not the same items: of a post held by several sources, keep the first copy "
    "met, reading the sources in order (its source says which one the reader got)"
)


@st.composite
def _merge_cases(draw: st.DrawFn) -> tuple[list[list[FeedItem]], list[list[FeedItem]], int]:
    """(sources, arrivals, limit): sources sorted newest first with duplicates across them and time ties;
    arrivals[k] are posts that appear (newer than everything) before page k + 2 is read."""
    n = draw(st.integers(0, 16))
    times = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))  # few distinct times: many ties
    ids = draw(st.permutations(list(range(1, n + 1))))
    pool = [FeedItem(pid, pid % 5, float(t)) for pid, t in zip(ids, times)]
    n_sources = draw(st.integers(1, 3))
    sources = []
    for s in range(n_sources):
        picked = [p for p in pool if draw(st.booleans())]
        kind = "push" if s == 0 else "pull"
        sources.append(
            sorted(
                (FeedItem(p.post_id, p.author_id, p.created_at, kind) for p in picked),
                key=lambda i: i.order,
                reverse=True,
            )
        )
    arrivals = []
    next_id, next_t = n + 1, 10.0
    for _ in range(draw(st.integers(0, 3))):
        k = draw(st.integers(0, 3))
        batch = []
        for _ in range(k):
            next_t += draw(st.sampled_from([0.0, 1.0]))
            batch.append(FeedItem(next_id, next_id % 5, next_t))
            next_id += 1
        arrivals.append(batch)
    limit = draw(st.integers(1, 5))
    return sources, arrivals, limit


def walk_items(
    merge_fn: Callable[..., Any],
    sources: list[list[FeedItem]],
    limit: int,
    arrivals: list[list[FeedItem]] = (),
    max_pages: int = 60,
) -> list[list[FeedItem]]:
    """Whole items page by page, following ``merge_fn``'s own cursors; ``arrivals[k]`` joins source 0
    (newest first) before page ``k + 2`` is read."""
    sources = [list(s) for s in sources]
    pages, cursor = [], None
    for k in range(max_pages):
        if k >= 1 and k - 1 < len(arrivals):
            sources[0] = sorted(sources[0] + list(arrivals[k - 1]), key=lambda i: i.order, reverse=True)
        page = merge_fn([list(s) for s in sources], limit=limit, cursor=cursor)
        pages.append(list(page.items))
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
    raise AssertionError(f"still not at the end after {max_pages} pages of {limit}: the cursor does not advance")


def walk(
    merge_fn: Callable[..., Any],
    sources: list[list[FeedItem]],
    limit: int,
    arrivals: list[list[FeedItem]] = (),
    max_pages: int = 60,
) -> list[list[int]]:
    """Post ids page by page, as :func:`walk_items` reads them."""
    return [[i.post_id for i in page] for page in walk_items(merge_fn, sources, limit, arrivals, max_pages)]


def compare_merge(merge_fn: Callable[..., Any], max_examples: int = 200) -> None:
    """First pages and whole walks (with and without arrivals) equal the reference's, item for item."""

    @hypothesis_settings(max_examples)
    @given(_merge_cases())
    def test(case: tuple[list[list[FeedItem]], list[list[FeedItem]], int]) -> None:
        sources, arrivals, limit = case
        shown = "\n".join(f"  source {k}: {_describe(s)}" for k, s in enumerate(sources))
        want = policy.merge(sources, limit=limit)
        got = merge_fn([list(s) for s in sources], limit=limit)
        assert list(got.items) == want.items, (
            f"first page with limit={limit} differs\n{shown}\n  reference: {_describe(want.items)}\n"
            f"  yours:     {_describe(got.items)}" + (_COPY_HINT if _ids(got.items) == _ids(want.items) else "")
        )
        assert (got.next_cursor is None) == (want.next_cursor is None), (
            f"next_cursor must be None exactly when nothing is left (limit={limit})\n{shown}\n"
            f"  reference next_cursor: {want.next_cursor!r}, yours: {got.next_cursor!r}"
        )
        for label, arr in (("", []), (" while new posts arrive", arrivals)):
            want_pages = walk_items(policy.merge, sources, limit, arr)
            got_pages = walk_items(merge_fn, sources, limit, arr)
            news = "".join(f"\n  before page {k + 2}: {_describe(a)} arrive" for k, a in enumerate(arr) if a)
            assert got_pages == want_pages, (
                f"reading page after page (limit={limit}, following your cursors){label} differs\n{shown}{news}\n"
                f"  reference pages: {_describe_pages(want_pages)}\n  yours:           {_describe_pages(got_pages)}"
                + (_COPY_HINT if _ids(got_pages) == _ids(want_pages) else "")
            )

    run_property(test)


# --- exercise 3: the timeline write ---------------------------------------------------------


def _contents(client: Any, user: int) -> list[tuple[str, float]]:
    key = f"feed:tl:{user}"
    return [
        (m.decode() if isinstance(m, bytes) else m, float(s)) for m, s in client.zrange(key, 0, -1, withscores=True)
    ]


def compare_timeline_write(fn: Callable[..., Any], max_examples: int = 120) -> None:
    """Sequences of writes for a few users leave the same sorted sets as ``Timelines.add``."""
    writes = st.lists(
        st.tuples(st.integers(1, 3), st.integers(1, 10**6), st.integers(0, 40).map(float)), min_size=1, max_size=30
    )

    @hypothesis_settings(max_examples)
    @given(writes, st.integers(1, 8))
    def test(ops: list[tuple[int, int, float]], length: int) -> None:
        mine = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
        ref = Timelines(
            fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True),
            FeedConfig(timeline_length=length),
        )
        for step, (user, post_id, created) in enumerate(ops):
            fn(mine, user, post_id, created, length)
            ref.add([user], [(post_id, created)])
            for u in (1, 2, 3):
                want, got = _contents(ref.r, u), _contents(mine, u)
                assert got == want, (
                    f"after write {step} of add_to_timeline(redis, user, post_id, created_at, length={length}), "
                    f"writes so far {ops[: step + 1]}:\n  feed:tl:{u} reference (low to high): {want}\n"
                    f"  yours:                                {got}"
                )

    run_property(test)


# Commands that change a timeline; a script is one atomic write whatever it runs.
_WRITES = {
    "ZADD",
    "ZINCRBY",
    "ZREM",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYLEX",
    "ZPOPMIN",
    "ZPOPMAX",
    "ZMPOP",
    "ZUNIONSTORE",
    "ZINTERSTORE",
    "ZDIFFSTORE",
    "ZRANGESTORE",
    "DEL",
    "UNLINK",
    "RENAME",
    "COPY",
    "RESTORE",
}
_SCRIPTS = {"EVAL", "EVALSHA", "FCALL"}
# What redis-py sends when it opens a connection: not the student's, so not shown to them.
_HANDSHAKE = {"HELLO", "CLIENT", "AUTH", "SELECT"}


def command_names(packed: bytes) -> list[str]:
    """The command names in RESP bytes as a client sends them (arrays of bulk strings), in order."""
    names, pos = [], 0
    while pos < len(packed):
        end = packed.index(b"\r\n", pos)
        count, pos = int(packed[pos + 1 : end]), end + 2
        fields = []
        for _ in range(count):
            end = packed.index(b"\r\n", pos)
            size, pos = int(packed[pos + 1 : end]), end + 2
            fields.append(packed[pos : pos + size])
            pos += size + 2
        names.append(fields[0].decode().upper())
    return names


def exchanges(names: list[str]) -> list[list[str]]:
    """Commands grouped as the server runs them: a MULTI ... EXEC block is one group, any other command its own."""
    groups: list[list[str]] = []
    block: list[str] | None = None
    for name in names:
        if name == "MULTI":
            block = [name]
        elif block is not None and name in ("EXEC", "DISCARD"):
            if name == "EXEC":  # a discarded block never ran
                groups.append([*block, name])
            block = None
        elif block is not None:
            block.append(name)
        else:
            groups.append([name])
    return groups


def recording_redis() -> tuple[fakeredis.FakeRedis, list[str]]:
    """A fresh fakeredis client and the list of command names it sends, appended as they go out.

    Recorded where redis-py writes to the socket, so pipelines, transactions and scripts all show
    as the server receives them, whichever client API the student used.
    """
    sent: list[str] = []

    class Recording(fakeredis.FakeRedisConnection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            chunks = [command] if isinstance(command, (bytes, str)) else command
            sent.extend(command_names(b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)))
            super().send_packed_command(command, check_health)

    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True, connection_class=Recording)
    return client, sent


def _transaction_problem(groups: list[list[str]]) -> str | None:
    """What is wrong with one call's exchanges for an atomic timeline write, or None."""
    writing = [g for g in groups if (_WRITES | _SCRIPTS) & set(g)]
    if not writing:
        return "nothing was written"
    loose = any(g[0] != "MULTI" and g[0] not in _SCRIPTS for g in writing)
    if len(writing) == 1 and not loose:
        return None
    why = (
        "writes outside MULTI/EXEC run one by one (a pipeline without transaction=True only saves round trips)"
        if loose
        else f"its writes are split over {len(writing)} transactions"
    )
    return f"{why}; in between, a reader or another worker sees a timeline over its cap or missing the post"


def check_timeline_transaction(fn: Callable[..., Any]) -> None:
    """Each call's writes reach the server in exactly one MULTI/EXEC (or one script): ZADD and the trim together."""
    client, sent = recording_redis()
    for post_id in range(1, 6):
        before = len(sent)
        fn(client, 7, post_id, float(post_id), 3)
        groups = exchanges([name for name in sent[before:] if name not in _HANDSHAKE])
        problem = _transaction_problem(groups)
        assert problem is None, (
            f"add_to_timeline(redis, user=7, post_id={post_id}, created_at={float(post_id)}, length=3) reached "
            f"the server as {' | '.join(' '.join(g) for g in groups) or 'nothing'}: {problem}; queue ZADD and the "
            "trim in one redis.pipeline(transaction=True) and call execute() once"
        )
    assert _contents(client, 7) == [
        ("0000000000000000003", 3.0),
        ("0000000000000000004", 4.0),
        ("0000000000000000005", 5.0),
    ]


# --- exercise 4: ranking features -------------------------------------------------------------


@st.composite
def _feature_cases(draw: st.DrawFn) -> tuple[FeedItem, int, ranker.EngagementStats]:
    now = float(draw(st.integers(0, 20_000)))
    created = float(draw(st.integers(0, 25_000)))  # sometimes after now: "from the future"
    item = FeedItem(draw(st.integers(1, 5)), draw(st.integers(1, 4)), created)
    viewer = draw(st.integers(1, 4))
    counts = st.dictionaries(st.integers(1, 5), st.integers(0, 5000), max_size=5)
    interactions = st.dictionaries(st.tuples(st.integers(1, 4), st.integers(1, 4)), st.integers(0, 300), max_size=8)
    half_life = float(draw(st.sampled_from([60.0, 900.0, 3600.0, 7200.0])))
    stats = ranker.EngagementStats(now, draw(counts), draw(counts), draw(interactions), half_life)
    return item, viewer, stats


def compare_features(fn: Callable[..., Any], max_examples: int = 300) -> None:
    """``fn(item, viewer, stats)`` equals the reference's four features (within 1e-9), in FEATURE_NAMES order."""

    @hypothesis_settings(max_examples)
    @given(_feature_cases())
    def test(case: tuple[FeedItem, int, ranker.EngagementStats]) -> None:
        item, viewer, stats = case
        want = ranker.features(item, viewer, stats)
        got = np.asarray(fn(item, viewer, stats), dtype=np.float64)
        ok = got.shape == want.shape and np.allclose(got, want, rtol=1e-9, atol=1e-12)
        assert ok, (
            f"features({item}, viewer={viewer}, now={stats.now:g}, half_life={stats.half_life:g}, "
            f"likes={dict(stats.likes)}, replies={dict(stats.replies)}, interactions={dict(stats.interactions)})\n"
            f"  {'':10} {'  '.join(f'{n:>10}' for n in ranker.FEATURE_NAMES)}\n"
            f"  reference  {'  '.join(f'{v:10.6g}' for v in want)}\n"
            f"  yours      {'  '.join(f'{v:10.6g}' for v in got.ravel())}  (shape {got.shape})"
        )
        assert all(math.isfinite(v) for v in got), "features must be finite numbers"

    run_property(test)
