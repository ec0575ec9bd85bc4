"""Lab 03's graders: they pass the reference and fail the wrong answers in ``tests/feed/mutants``.

`syslab check feed` proves this through nbgrader; these tests prove it in seconds, directly on the
helpers in `lab_core.feed.grading`, by running a mutant's function (exactly the source that
`syslab check` splices into the notebook) against the graders it must fail, and against those it
must pass, so that each mutant loses the one test cell meant to catch it.
"""

from __future__ import annotations

import pytest

from lab_core.course import load_mutants, parse_mutant
from lab_core.feed import grading, policy
from lab_core.feed.policy import FeedItem, Page, decode_cursor, encode_cursor
from lab_core.feed.timeline import add_to_timeline, member, timeline_key
from lab_core.labs import ROOT, get_lab

MUTANTS = ROOT / "tests" / "feed" / "mutants"
SETUP_NAMES = {
    "FeedItem": FeedItem,
    "Page": Page,
    "decode_cursor": decode_cursor,
    "encode_cursor": encode_cursor,
    "member": member,
    "timeline_key": timeline_key,
}
PUSHED = [FeedItem(5, 1, 50.0), FeedItem(3, 2, 30.0), FeedItem(2, 1, 30.0)]
PULLED = [FeedItem(4, 9, 40.0, "pull"), FeedItem(3, 2, 30.0, "pull")]


def _function(mutant_name: str, grade_id: str):
    """The mutant's replacement cell, executed with the names the notebook's setup cell defines."""
    source = parse_mutant(MUTANTS / f"{mutant_name}.py").cells[grade_id]
    namespace = dict(SETUP_NAMES)
    exec(compile(source, f"{mutant_name}.py", "exec"), namespace)  # noqa: S102 - our own test fixture
    return namespace[grade_id]


def test_every_mutant_file_parses_and_names_a_cell():
    cells = {"fanout_targets", "merge", "add_to_timeline", "features", "answer_push_writes", "answer_simulation"}
    mutants = load_mutants(get_lab("feed"))
    assert {"merge_keeps_last_copy", "timeline_two_execs"} <= {m.name for m in mutants}
    for m in mutants:
        assert m.description, f"mutant {m.name} needs a one-line docstring"
        assert set(m.cells) <= cells, m.cells.keys()


def test_the_references_pass_the_strengthened_graders():
    grading.compare_merge(policy.merge, max_examples=60)
    grading.check_timeline_transaction(add_to_timeline)


# --- merge: whole items, not ids ----------------------------------------------------------------


def test_walk_items_keeps_the_copy_merge_chose():
    pages = grading.walk_items(policy.merge, [PUSHED, PULLED], 2)
    assert pages == [[PUSHED[0], PULLED[0]], [PUSHED[1], PUSHED[2]]]
    assert pages[1][0].source == "push", "post 3 is in both sources: the first copy met is the pushed one"
    assert grading.walk(policy.merge, [PUSHED, PULLED], 2) == [[5, 4], [3, 2]]


def test_merge_keeping_the_last_copy_has_the_right_ids_but_loses():
    mutant = _function("merge_keeps_last_copy", "merge")
    # What the old id-only grader saw: identical pages.
    assert grading.walk(mutant, [PUSHED, PULLED], 2) == grading.walk(policy.merge, [PUSHED, PULLED], 2)
    assert mutant([PUSHED, PULLED], limit=5).items[2] == FeedItem(3, 2, 30.0, "pull")
    with pytest.raises(AssertionError, match="keep the first copy met"):
        grading.compare_merge(mutant)


def test_merge_that_drops_the_source_loses():
    def rebuilt(sources, *, limit, cursor=None):
        page = policy.merge(sources, limit=limit, cursor=cursor)
        return Page([FeedItem(i.post_id, i.author_id, i.created_at) for i in page.items], page.next_cursor)

    with pytest.raises(AssertionError, match=r"pull\]"):
        grading.compare_merge(rebuilt)


# --- timeline write: what reaches the server in each MULTI/EXEC ---------------------------------


def test_command_names_and_exchanges_read_the_wire():
    packed = b"*1\r\n$5\r\nMULTI\r\n*4\r\n$4\r\nzadd\r\n$1\r\nk\r\n$1\r\n1\r\n$4\r\na\r\nb\r\n*1\r\n$4\r\nEXEC\r\n"
    names = grading.command_names(packed)
    assert names == ["MULTI", "ZADD", "EXEC"], "a member holding CRLF is read by its length, not split"
    assert grading.exchanges(["WATCH", "ZCARD", *names, "MULTI", "ZREM", "DISCARD", "ZREM"]) == [
        ["WATCH"],
        ["ZCARD"],
        ["MULTI", "ZADD", "EXEC"],
        ["ZREM"],
    ]


def test_the_recording_client_sees_pipelines_as_sent():
    client, sent = grading.recording_redis()
    with client.pipeline(transaction=False) as pipe:
        pipe.zadd("k", {"a": 1.0})
        pipe.zcard("k")
        pipe.execute()
    with client.pipeline(transaction=True) as pipe:
        pipe.zadd("k", {"b": 2.0})
        pipe.execute()
    assert [n for n in sent if n not in {"HELLO", "CLIENT"}] == ["ZADD", "ZCARD", "MULTI", "ZADD", "EXEC"]
    assert client.zcard("k") == 2


def test_two_execs_in_one_transaction_pipeline_lose_only_the_transaction_check():
    mutant = _function("timeline_two_execs", "add_to_timeline")
    grading.compare_timeline_write(mutant, max_examples=20)  # contents are right: the other cell passes
    with pytest.raises(AssertionError, match=r"MULTI ZADD EXEC \| MULTI ZREMRANGEBYRANK EXEC: .*split over 2"):
        grading.check_timeline_transaction(mutant)


def test_a_pipeline_without_a_transaction_loses():
    def pipelined(redis, user, post_id, created_at, length):
        with redis.pipeline(transaction=False) as pipe:
            pipe.zadd(timeline_key(user), {member(post_id): created_at})
            pipe.zremrangebyrank(timeline_key(user), 0, -length - 1)
            pipe.execute()

    with pytest.raises(AssertionError, match=r"ZADD \| ZREMRANGEBYRANK: writes outside MULTI/EXEC"):
        grading.check_timeline_transaction(pipelined)


def test_separate_commands_lose():
    with pytest.raises(AssertionError, match="outside MULTI/EXEC"):
        grading.check_timeline_transaction(_function("timeline_separate_commands", "add_to_timeline"))


def test_other_atomic_writes_pass():
    """Whatever the client API, one MULTI/EXEC (or one script) per call is what counts."""

    def explicit_multi(redis, user, post_id, created_at, length):
        with redis.pipeline(transaction=False) as pipe:
            pipe.multi()
            pipe.zadd(timeline_key(user), {member(post_id): created_at})
            pipe.zremrangebyrank(timeline_key(user), 0, -length - 1)
            pipe.execute()

    def watched(redis, user, post_id, created_at, length):
        key = timeline_key(user)

        def write(pipe):
            pipe.zcard(key)  # a read while watching runs at once, outside the transaction
            pipe.multi()
            pipe.zadd(key, {member(post_id): created_at})
            pipe.zremrangebyrank(key, 0, -length - 1)

        redis.transaction(write, key)

    script = (
        "redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]); "
        "return redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[3]) - 1)"
    )

    def scripted(redis, user, post_id, created_at, length):
        redis.eval(script, 1, timeline_key(user), created_at, member(post_id), length)

    for fn in (explicit_multi, watched, scripted):
        grading.check_timeline_transaction(fn)
