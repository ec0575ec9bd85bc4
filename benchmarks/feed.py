"""Lab 03 figures: fan-out strategies at scale (simulated, calibrated), HTTP read cost, ranker quality.

``syslab bench feed [--quick]`` runs ``run(quick)``. Four parts, each against a baseline measured
in the same run:

4. **Calibration** (run first; part 1 uses it). On a throwaway real ``redis-server``,
   ``lab_core.feed.calibrate.measure`` builds the real feed (SQLite store, Redis timelines, the real
   ``FanoutWorker`` and ``FeedService``) on a 300-user celebrity-heavy graph, replays 150 posts and
   300 reads drawn by the simulator's workload model, each timed three times (median), and fits
   the simulator's ``CostModel``: ``publish`` time; per pushed post, a line ``overhead + zadd * n``
   through the worker's time for one post with ``n`` followers (one ``run_once``: claim, read,
   follower query, activity check, one pipeline of ZADD+trim, ack); per read, a line
   ``timeline_read + celebrity_pull * pulled`` through ``FeedService.read``. Each fitted cost is a
   figure whose baseline is the ``CostModel`` default it replaces (an assumption: the ratio says
   how far off the assumption was). The worker's time for a *celebrity* post (it checks every
   follower's activity before noticing the author is pulled) is reported too: the simulator does
   not model it. Then ``validate`` replays a workload on a *different* 300-user graph through both
   the real system and the simulator with the calibrated model: fan-out writes per post (a count,
   must match exactly: simulator value vs real baseline, ratio 1), and the simulator's error on the
   mean fan-out time per pushed post and on the mean read time (target <= 50 %, the tolerance
   ``tests/feed/test_feed_calibration.py`` also uses). The full run does this three times, each
   validation on its own held-out graph right after its own calibration (so a change in the
   shared machine's load hits both), and reports medians: of each fitted cost, of the errors.
   The read's per-celebrity cost comes from probe users following 0 .. all celebrities.
1. **Push vs pull vs hybrid at scale, from the simulator** (``lab_core.feed.simulate.compare``) on a
   celebrity-heavy power-law graph (10,000 users quick, 20,000 full; ``celebrity_boost=5``) at the
   Twitter read:write ratio of 50:1, with the *calibrated* service times and fleet pool sizes
   (8 fan-out workers, 32 read workers, pipelines of 100 ZADDs each paying the measured per-post
   overhead, which overstates push's cost a little). Every strategy replays the same posts and
   reads. Fan-out writes per post and read p99 of hybrid (authors with >= 100 followers pulled) and
   pull, against push. Targets from issue 7: hybrid writes / push <= 0.10, hybrid read p99 / push
   read p99 <= 2.0. These are simulator figures, named so.
2. **Feed reads per second through the HTTP API**: ``create_app`` with a 300-user graph and two
   posts per user fanned out, ``GET /feed/{user}`` called in-process through a direct ASGI harness
   (one event-loop turn per request), against ``FeedService.read`` for the same users called
   directly, in alternating rounds (medians). The ratio is the share of read throughput left after
   the HTTP layer (routing, query parsing, post text and author-name lookups, JSON). On a real
   ``redis-server`` and on fakeredis.
3. **Ranker quality** on held-out simulated engagement (``simulate_engagement``, 30 % of viewers
   held out): AUC and NDCG@10 of the learned logistic ranker against newest-first order on the
   same rows. Target ratio >= 1.0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lab_core.bench import (
    Figure,
    asgi_call,
    asgi_get,
    interleaved,
    machine_note,
    median,
    redis_server,
    without_redis_url,
)
from lab_core.feed.calibrate import FANOUT_TIME, READ_TIME, Calibration, calibration_graph, measure, validate
from lab_core.feed.config import FeedConfig
from lab_core.feed.demo import create_app
from lab_core.feed.graph import power_law_graph
from lab_core.feed.ranker import evaluate, simulate_engagement, split, train
from lab_core.feed.simulate import CostModel, compare

US = 1e6


# ----------------------------------------------------------------------------- 4. calibration


def calibrated_cost_model(url: str) -> CostModel:
    """The simulator's ``CostModel`` fitted on the real feed at ``url`` (``lab_core.feed.calibrate``)."""
    from lab_core.feed.calibrate import calibrated_cost_model as fitted

    return fitted(url)


def _calibration(url: str, quick: bool) -> tuple[Calibration, list[Figure]]:
    repeats = 3
    posts, reads = (100, 200) if quick else (150, 300)
    seeds = (12,) if quick else (12, 13, 14)
    cals, checks = [], []
    for seed in seeds:  # each validation right after its own calibration: load changes hit both
        cals.append(measure(url, posts=posts, reads=reads, repeats=repeats))
        checks.append(validate(cals[-1].cost_model(), url, posts=posts, reads=reads, repeats=repeats, seed=seed))
    cal = Calibration(
        **{
            f.name: (median([getattr(c, f.name) for c in cals]) if f.type == "float" else getattr(cals[0], f.name))
            for f in dataclasses.fields(Calibration)
        }
    )
    default = CostModel()
    where = (
        f"real redis-server, 300 users, {posts} posts, {reads} reads, median of {repeats} passes"
        f"{f' x {len(seeds)} calibrations' if len(seeds) > 1 else ''}"
    )
    base = "CostModel default (assumption)"
    figures = [
        Figure(
            f"calibrated: post write (publish: SQLite + XADD), {where}",
            cal.post_write * US,
            "us",
            base,
            default.post_write * US,
        ),
        Figure(
            "calibrated: fan-out overhead per pushed post (one FanoutWorker.run_once, one pipeline)",
            cal.fanout_overhead * US,
            "us",
            base + " per pipeline",
            default.fanout_batch_overhead * US,
        ),
        Figure(
            "calibrated: seconds per ZADD fan-out write (activity check + ZADD + trim, in the pipeline)",
            cal.zadd * US,
            "us",
            base,
            default.zadd * US,
        ),
        Figure(
            "calibrated: timeline read (FeedService.read, intercept)",
            cal.timeline_read * US,
            "us",
            base,
            default.timeline_read * US,
        ),
        Figure(
            "calibrated: per-celebrity pull cost in a read (slope)",
            cal.celebrity_pull * US,
            "us",
            base,
            default.celebrity_pull * US,
        ),
        Figure(
            "measured: worker time per celebrity (pulled) post, median (the simulator counts 0)",
            cal.celebrity_post * US,
            "us",
        ),
    ]
    held = (
        f"held-out 300-user graph{'s' if len(seeds) > 1 else ''} (seed {', '.join(map(str, seeds))}), "
        f"real Redis{', median of ' + str(len(seeds)) + ' calibrate+validate pairs' if len(seeds) > 1 else ''}"
    )
    tables = [v.table() for v in checks]  # the course's validation table: rel_error = simulated / real - 1
    fan_error = median([t.set_index("metric").loc[FANOUT_TIME, "rel_error"] for t in tables])
    read_error = median([t.set_index("metric").loc[READ_TIME, "rel_error"] for t in tables])
    sim_writes = float(np.concatenate([t.attrs["sim_writes"] for t in tables]).mean())
    real_writes = float(np.concatenate([t.attrs["real_writes"] for t in tables]).mean())
    if not all((t.attrs["sim_writes"] == t.attrs["real_writes"]).all() for t in tables):
        raise AssertionError("the simulator's fan-out writes per post differ from the real worker's")
    figures += [
        Figure(
            f"simulator fan-out writes per post vs real system ({held}; must match)",
            sim_writes,
            "writes/post",
            "real FanoutWorker writes per post",
            real_writes,
        ),
        Figure(
            f"simulator error, mean fan-out time per pushed post ({held})",
            abs(fan_error) * 100,
            "%",
            target="value <= 50",
        ),
        Figure(f"simulator error, mean read time ({held})", abs(read_error) * 100, "%", target="value <= 50"),
        Figure(
            f"simulated mean fan-out time per pushed post ({held})",
            median([v.sim_fanout_mean for v in checks]) * US,
            "us",
            "real mean fan-out time",
            median([v.real_fanout_mean for v in checks]) * US,
        ),
        Figure(
            f"simulated mean read time ({held})",
            median([v.sim_read_mean for v in checks]) * US,
            "us",
            "real mean read time",
            median([v.real_read_mean for v in checks]) * US,
        ),
    ]
    return cal, figures


# ----------------------------------------------------------------------------- 1. strategies at scale


def _strategies(cal: Calibration, quick: bool) -> list[Figure]:
    n_users, duration, threshold = (10_000, 2.0, 100) if quick else (20_000, 4.0, 100)
    graph = power_law_graph(n_users, 20, 2.1, seed=2, celebrity_boost=5)
    fleet = cal.cost_model(fanout_workers=8, read_workers=32, fanout_batch=100)
    table = compare(
        graph, [threshold], strategies=("push", "pull"), seed=1, duration=duration, read_ratio=50.0, cost=fleet
    ).set_index("strategy")
    push, pull, hybrid = table.loc["push"], table.loc["pull"], table.loc["hybrid"]
    machine_note(
        "feed_sim_graph",
        {
            "users": n_users,
            "edges": graph.n_edges,
            "posts": int(push["posts"]),
            "reads": int(push["reads"]),
            "celebrities": int(len(graph.celebrities(threshold))),
        },
    )
    g = f"simulated, {n_users:,}-user celebrity-heavy graph, 50:1 reads:writes, calibrated costs"
    return [
        Figure(
            f"hybrid (>= {threshold} followers pulled) fan-out writes per post ({g})",
            float(hybrid["writes_per_post"]),
            "writes/post",
            "push writes per post",
            float(push["writes_per_post"]),
            target="<= 0.10",
        ),
        Figure(
            f"hybrid read p99 ({g})",
            float(hybrid["read_p99"]) * 1e3,
            "ms",
            "push read p99",
            float(push["read_p99"]) * 1e3,
            target="<= 2.0",
        ),
        Figure(
            f"pull fan-out writes per post ({g})",
            float(pull["writes_per_post"]),
            "writes/post",
            "push writes per post",
            float(push["writes_per_post"]),
        ),
        Figure(
            f"pull read p99 ({g})", float(pull["read_p99"]) * 1e3, "ms", "push read p99", float(push["read_p99"]) * 1e3
        ),
    ]


# ----------------------------------------------------------------------------- 2. HTTP read throughput


def _seeded_app(url: str | None):
    """The demo API on a fresh 300-user graph (threshold 40), every user active, two posts each fanned out."""
    config = FeedConfig(celebrity_threshold=40)
    with without_redis_url():
        app = create_app(url, seed_graph=False, config=config)
    system = app.state.feed
    graph = calibration_graph(300, seed=21)
    for u in range(graph.n_users):
        system.store.add_user(f"u{u}")
    with system.store.lock:
        system.store.conn.executemany(
            "INSERT INTO follows (follower, followee, created_at) VALUES (?, ?, 0.0)",
            [(int(f) + 1, u + 1) for u in range(graph.n_users) for f in graph.followers(u)],
        )
    now = system.clock.now()
    for u in range(1, graph.n_users + 1):
        system.timelines.touch(u, now)
    for round_ in range(2):
        for u in range(1, graph.n_users + 1):
            system.post(u, f"post {round_} by u{u}")
    system.worker.drain()
    return app, graph.n_users


def _readers(app: Any, service: Any, n: int, loop: asyncio.AbstractEventLoop) -> dict[str, Callable[[], None]]:
    """One feed read each call, through HTTP (the ASGI app) or straight to the service, users in turn."""
    http_users, direct_users = itertools.cycle(range(1, n + 1)), itertools.cycle(range(1, n + 1))

    def via_http() -> None:
        if loop.run_until_complete(asgi_call(app, asgi_get(f"/feed/{next(http_users)}"))) != 200:
            raise RuntimeError("GET /feed/{user} did not answer 200")

    def direct() -> None:
        service.read(next(direct_users))

    return {"http": via_http, "direct": direct}


def _http(url: str, quick: bool) -> list[Figure]:
    rounds, duration = (3, 0.15) if quick else (7, 0.4)
    figures = []
    for label, target_url in (("real Redis", url), ("fakeredis", None)):
        app, n = _seeded_app(target_url)
        service = app.state.feed.service
        loop = asyncio.new_event_loop()
        try:
            rates = interleaved(_readers(app, service, n, loop), rounds=rounds, duration=duration)
        finally:
            loop.close()
            app.state.feed.store.conn.close()
        figures.append(
            Figure(
                f"feed reads/s via HTTP API (create_app, in-process ASGI, GET /feed/{{user}}), {label}",
                median(rates["http"]),
                "reads/s",
                f"FeedService.read directly, {label}",
                median(rates["direct"]),
            )
        )
    return figures


# ----------------------------------------------------------------------------- 3. ranker quality


def _ranker(quick: bool) -> list[Figure]:
    viewers = 200 if quick else 400
    data = simulate_engagement(n_viewers=viewers, seed=3)
    train_set, held_out = split(data, 0.3, seed=4)
    ranker = train(train_set, seed=0)
    table = evaluate(ranker, held_out, k=10).set_index("model")
    rows = f"{len(held_out):,} held-out rows, {table.loc['learned', 'viewers']} viewers"
    return [
        Figure(
            f"ranker AUC, learned, simulated engagement ({rows})",
            float(table.loc["learned", "auc"]),
            "AUC",
            "recency order AUC",
            float(table.loc["recency", "auc"]),
            target=">= 1.0",
        ),
        Figure(
            f"ranker NDCG@10, learned ({rows})",
            float(table.loc["learned", "ndcg"]),
            "NDCG@10",
            "recency order NDCG@10",
            float(table.loc["recency", "ndcg"]),
            target=">= 1.0",
        ),
    ]


# ----------------------------------------------------------------------------- entry point


def run(quick: bool) -> list[Figure]:
    """Every figure of the lab (quick: small sizes, well under 30 s)."""
    started = time.perf_counter()
    figures = _ranker(quick)  # pure Python first: no server needed
    with redis_server() as url:
        cal, calibration = _calibration(url, quick)
        http = _http(url, quick)
    machine_note("feed_bench_seconds", round(time.perf_counter() - started, 1))
    return _strategies(cal, quick) + http + figures + calibration
