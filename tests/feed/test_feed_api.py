"""The feed HTTP API in process: happy path, paging, ranking hook, and a JSON 4xx for every bad input."""

from __future__ import annotations

import httpx
import pytest

from conftest import assert_json_error, run_asgi
from lab_core.feed.config import FeedConfig
from lab_core.feed.demo import CELEBRITY, SEED_USERS, create_app
from lab_core.sim.clock import ManualClock

CFG = FeedConfig(celebrity_threshold=3, max_post_chars=20, default_page_size=5, max_page_size=10)


@pytest.fixture(autouse=True)
def no_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)


def fresh_app(**kw):
    kw.setdefault("config", CFG)
    kw.setdefault("clock", ManualClock(1000.0))
    return create_app(seed_graph=False, **kw)


def drain(app) -> int:
    return app.state.feed.worker.drain()


def snapshot(app) -> tuple:
    s = app.state.feed
    users = s.store.users()
    return (
        users,
        {u["id"]: s.store.followees(u["id"]) for u in users},
        s.store.post_count(),
        {u["id"]: s.timelines.post_ids(u["id"]) for u in users},
        s.redis.xlen("feed:fanout"),
    )


async def make_users(c: httpx.AsyncClient, *names: str) -> list[int]:
    ids = []
    for name in names:
        r = await c.post("/users", json={"name": name})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def test_post_follow_read_unfollow():
    app = fresh_app()
    clock = app.state.feed.clock

    async def scenario(c):
        a, b, star, f1, f2 = await make_users(c, "ann", "bob", "star", "f1", "f2")
        for follower, followee in [(a, b), (a, star), (f1, star), (f2, star)]:
            r = await c.post("/follow", json={"follower": follower, "followee": followee})
            assert r.status_code == 201 and r.json() == {"follower": follower, "followee": followee}
        r = await c.post("/posts", json={"author": b, "text": "bob here"})
        assert r.status_code == 201 and r.json()["text"] == "bob here"
        clock.advance(1)
        await c.post("/posts", json={"author": star, "text": "star here"})
        assert drain(app) == 2
        feed = (await c.get(f"/feed/{a}")).json()
        assert [(i["author"], i["text"], i["source"]) for i in feed["items"]] == [
            ("star", "star here", "pull"),
            ("bob", "bob here", "push"),
        ]
        assert feed["next_cursor"] is None and feed["user"] == a
        assert app.state.feed.timelines.post_ids(f1) == []  # the celebrity's post was not pushed
        r = await c.request("DELETE", "/follow", json={"follower": a, "followee": b})
        assert r.status_code == 200 and r.json()["following"] is False
        feed = (await c.get(f"/feed/{a}")).json()
        assert [i["author"] for i in feed["items"]] == ["star"]
        assert (await c.get("/healthz")).json() == {"ok": True, "pending_fanout": 0}

    run_asgi(app, scenario)


def test_paging_is_stable_while_posts_arrive():
    app = fresh_app()
    clock = app.state.feed.clock

    async def scenario(c):
        reader, writer = await make_users(c, "reader", "writer")
        await c.post("/follow", json={"follower": reader, "followee": writer})
        for i in range(7):
            if i % 2:
                clock.advance(1)  # some posts share an instant: ids break the tie
            await c.post("/posts", json={"author": writer, "text": f"old {i}"})
        drain(app)
        first = (await c.get(f"/feed/{reader}", params={"limit": 3})).json()
        for i in range(4):
            clock.advance(1)
            await c.post("/posts", json={"author": writer, "text": f"new {i}"})
        drain(app)
        texts = [i["text"] for i in first["items"]]
        cursor = first["next_cursor"]
        while cursor:
            page = (await c.get(f"/feed/{reader}", params={"limit": 3, "cursor": cursor})).json()
            texts += [i["text"] for i in page["items"]]
            cursor = page["next_cursor"]
        assert texts == [f"old {i}" for i in reversed(range(7))]

    run_asgi(app, scenario)


def test_ranker_hook_reorders_a_page_only():
    app = fresh_app(ranker=lambda user, items: list(reversed(items)))

    async def scenario(c):
        reader, writer = await make_users(c, "reader", "writer")
        await c.post("/follow", json={"follower": reader, "followee": writer})
        for i in range(4):
            app.state.feed.clock.advance(1)
            await c.post("/posts", json={"author": writer, "text": f"p{i}"})
        drain(app)
        page1 = (await c.get(f"/feed/{reader}", params={"limit": 2})).json()
        page2 = (await c.get(f"/feed/{reader}", params={"limit": 2, "cursor": page1["next_cursor"]})).json()
        return [i["text"] for i in page1["items"]], [i["text"] for i in page2["items"]]

    assert run_asgi(app, scenario) == (["p2", "p3"], ["p0", "p1"])


def test_seeded_demo_graph_has_push_and_pull():
    app = create_app(clock=ManualClock(0.0))

    async def scenario(c):
        users = (await c.get("/users")).json()["users"]
        assert [u["name"] for u in users] == SEED_USERS
        star = next(u for u in users if u["name"] == CELEBRITY)
        assert star["followers"] == len(SEED_USERS) - 1
        feed = (await c.get("/feed/1", params={"limit": 50})).json()
        sources = {(i["author"], i["source"]) for i in feed["items"]}
        assert (CELEBRITY, "pull") in sources and ("grace", "push") in sources
        assert len(feed["items"]) == 6  # two posts each by grace, alan and stella
        assert (await c.get("/")).json()["config"]["celebrity_threshold"] == 5

    run_asgi(app, scenario)


BAD_REQUESTS = [
    # (method, path, json or raw content, status, error, detail mentions)
    ("POST", "/users", {"name": "ann"}, 409, "duplicate_user", "ann"),
    ("POST", "/users", {"name": ""}, 422, "invalid_name", "name"),
    ("POST", "/users", {"nom": "x"}, 422, "invalid_field", "nom"),
    ("POST", "/users", b"{not json", 400, "bad_request", "JSON"),
    ("POST", "/users", [1, 2], 422, "invalid_field", "JSON object"),
    ("POST", "/follow", {"follower": 1, "followee": 99}, 404, "unknown_user", "99"),
    ("POST", "/follow", {"follower": 99, "followee": 1}, 404, "unknown_user", "99"),
    ("POST", "/follow", {"follower": 1, "followee": 1}, 422, "self_follow", "themselves"),
    ("POST", "/follow", {"follower": 1, "followee": 2}, 409, "duplicate_follow", "already follows"),
    ("POST", "/follow", {"follower": "1", "followee": 2}, 422, "invalid_field", "follower"),
    ("POST", "/follow", {"follower": True, "followee": 2}, 422, "invalid_field", "follower"),
    ("POST", "/follow", {"follower": 1}, 422, "invalid_field", "followee"),
    ("DELETE", "/follow", {"follower": 2, "followee": 1}, 404, "not_following", "does not follow"),
    ("DELETE", "/follow", {"follower": 1, "followee": 77}, 404, "unknown_user", "77"),
    ("POST", "/posts", {"author": 1, "text": "x" * 21}, 422, "post_too_long", "limit is 20"),
    ("POST", "/posts", {"author": 1, "text": "   "}, 422, "empty_post", "non-empty"),
    ("POST", "/posts", {"author": 99, "text": "hi"}, 404, "unknown_user", "99"),
    ("POST", "/posts", {"author": 1, "text": "hi", "extra": 1}, 422, "invalid_field", "extra"),
    ("POST", "/posts", b'{"author": 1, "text": "' + b"x" * 70_000 + b'"}', 413, "body_too_large", "limit"),
    ("GET", "/feed/99", None, 404, "unknown_user", "99"),
    ("GET", "/feed/abc", None, 400, "bad_request", "abc"),
    ("GET", "/feed/1?cursor=%21%21%21", None, 400, "bad_cursor", "malformed cursor"),
    ("GET", "/feed/1?cursor=YTpi", None, 400, "bad_cursor", "malformed cursor"),
    ("GET", "/feed/1?limit=0", None, 400, "bad_limit", "1..10"),
    ("GET", "/feed/1?limit=11", None, 400, "bad_limit", "1..10"),
    ("GET", "/feed/1?limit=ten", None, 400, "bad_limit", "ten"),
    ("PUT", "/posts", {}, 405, "http_error", ""),
    ("GET", "/nowhere", None, 404, "http_error", ""),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error", "mentions"),
    BAD_REQUESTS,
    ids=[f"{m} {p[:30]} {e}" for m, p, _, _, e, _ in BAD_REQUESTS],
)
def test_bad_input_gets_json_4xx_and_changes_nothing(method, path, body, status, error, mentions):
    app = fresh_app()

    async def scenario(c):
        ann, bob = await make_users(c, "ann", "bob")
        await c.post("/follow", json={"follower": ann, "followee": bob})
        await c.post("/posts", json={"author": bob, "text": "kept"})
        drain(app)
        before = snapshot(app)
        kw = {"content": body} if isinstance(body, bytes) else ({"json": body} if body is not None else {})
        r = await c.request(method, path, **kw)
        assert_json_error(r, status, error, mentions)
        assert snapshot(app) == before
        feed = (await c.get(f"/feed/{ann}")).json()
        assert [i["text"] for i in feed["items"]] == ["kept"]

    run_asgi(app, scenario)


@pytest.mark.redis_server
def test_api_on_real_redis(redis_real, redis_server):
    app = create_app(redis_server, seed_graph=False, config=CFG, clock=ManualClock(5.0))

    async def scenario(c):
        a, b = await make_users(c, "a", "b")
        await c.post("/follow", json={"follower": a, "followee": b})
        await c.post("/posts", json={"author": b, "text": "real"})
        assert redis_real.xlen("feed:fanout") == 1
        drain(app)
        assert redis_real.zcard(f"feed:tl:{a}") == 1
        return (await c.get(f"/feed/{a}")).json()["items"]

    assert [i["text"] for i in run_asgi(app, scenario)] == ["real"]
