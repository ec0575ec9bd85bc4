"""The cluster job-submission API in process (time moved by hand), its wall-clock thread, and a real server."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from conftest import assert_json_error, run_asgi
from lab_core.cluster.demo import DEFAULTS, create_app
from lab_core.cluster.health import HealthConfig
from lab_core.cluster.live import LiveCluster
from lab_core.procs import free_port, stop_process, wait_until
from lab_core.sim.clock import ManualClock

ROOT = Path(__file__).resolve().parents[2]


def fresh_app(**kw):
    kw.setdefault("background_jobs", 0)
    return create_app(autostart=False, **kw)


async def submit(c: httpx.AsyncClient, **spec) -> dict:
    r = await c.post("/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def test_submitted_job_queues_runs_and_finishes():
    app = fresh_app()
    live = app.state.cluster

    async def scenario(c):
        live.advance(100)
        r = await c.post("/jobs", json={"num_gpus": 4, "duration": 600, "tenant": "ml", "name": "resnet"})
        assert r.status_code == 201 and r.headers["location"] == f"/jobs/{r.json()['id']}"
        job = r.json()
        assert job["state"] == "queued" and job["submit"] == 100 and job["placement"] == []
        assert job["queue_position"] == 0 and job["tenant"] == "ml" and job["name"] == "resnet"
        queued = (await c.get("/jobs", params={"state": "queued"})).json()
        assert [j["id"] for j in queued["jobs"]] == [job["id"]] and queued["total"] == 1

        live.advance(1)  # the scheduling pass runs at the instant of submission
        job = (await c.get(r.headers["location"])).json()
        assert job["state"] == "running" and job["start"] == 100 and job["queue_position"] is None
        assert len(job["placement"]) == 4 and len({p["node"] for p in job["placement"]}) == 1
        assert [j["id"] for j in (await c.get("/jobs?state=running")).json()["jobs"]] == [job["id"]]
        metrics = (await c.get("/metrics")).json()
        assert metrics["t"] == 101 and metrics["sample"]["running"] == 1 and metrics["queue_length"] == 0
        assert metrics["sample"]["utilisation"] == pytest.approx(4 / 64)

        live.advance(599)
        job = (await c.get(f"/jobs/{job['id']}")).json()
        assert job["state"] == "done" and job["end"] == 700 and job["placement"] == []
        assert [e["event"] for e in job["events"]][-1] == "done"
        summary = (await c.get("/metrics")).json()["summary"]
        assert summary["by_state"]["done"] == 1 and summary["mean_jct"] == 600 and summary["mean_wait"] == 0

    run_asgi(app, scenario)


def test_jobs_list_is_newest_first_and_limited():
    app = fresh_app()

    async def scenario(c):
        ids = [(await submit(c, num_gpus=1, duration=60))["id"] for _ in range(5)]
        page = (await c.get("/jobs", params={"limit": 2})).json()
        assert [j["id"] for j in page["jobs"]] == ids[::-1][:2] and page["total"] == 5
        assert "events" not in page["jobs"][0]  # the list stays small; GET /jobs/{id} has the history

    run_asgi(app, scenario)


def test_cancel_queued_and_running_jobs():
    app = fresh_app()
    live = app.state.cluster

    async def scenario(c):
        big = await submit(c, num_gpus=64, duration=1000)
        small = await submit(c, num_gpus=1, duration=10)
        live.advance(5)
        assert (await c.get(f"/jobs/{big['id']}")).json()["state"] == "running"
        assert (await c.get(f"/jobs/{small['id']}")).json()["queue_position"] == 0

        r = await c.delete(f"/jobs/{small['id']}")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert_json_error(await c.delete(f"/jobs/{small['id']}"), 409, "not_cancellable", "already cancelled")

        r = await c.delete(f"/jobs/{big['id']}")
        assert r.json()["state"] == "cancelled" and r.json()["progress"] == 5
        grid = (await c.get("/cluster")).json()
        assert all(g["owner"] is None and g["free_milli"] == 1000 for n in grid["nodes"] for g in n["gpus"])
        live.advance(2000)  # a cancelled job never completes later
        assert (await c.get(f"/jobs/{big['id']}")).json()["state"] == "cancelled"
        done = await submit(c, num_gpus=1, duration=1)
        live.advance(5)
        assert_json_error(await c.delete(f"/jobs/{done['id']}"), 409, "not_cancellable", "already done")

    run_asgi(app, scenario)


BAD_REQUESTS = [
    # (method, path, json or raw content, status, error, detail mentions)
    ("POST", "/jobs", b"{nope", 400, "bad_request", "JSON"),
    ("POST", "/jobs", [1, 2], 422, "invalid_field", "object"),
    ("POST", "/jobs", {"duration": 60}, 422, "invalid_field", "num_gpus"),
    ("POST", "/jobs", {"num_gpus": 1}, 422, "invalid_field", "duration"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 60, "colour": "red"}, 422, "invalid_field", "colour"),
    ("POST", "/jobs", {"num_gpus": "2", "duration": 60}, 422, "invalid_field", "num_gpus"),
    ("POST", "/jobs", {"num_gpus": True, "duration": 60}, 422, "invalid_field", "num_gpus"),
    ("POST", "/jobs", {"num_gpus": 1.5, "duration": 60}, 422, "invalid_field", "num_gpus"),
    ("POST", "/jobs", {"num_gpus": -1, "duration": 60}, 422, "invalid_field", "num_gpus"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": -5}, 422, "invalid_field", "duration"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 0}, 422, "invalid_field", "duration"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": "1h"}, 422, "invalid_field", "duration"),
    # Not a finite number: refused by the shared JSON reader (lab_core.jsonapi), which names the field.
    ("POST", "/jobs", b'{"num_gpus": 1, "duration": NaN}', 400, "bad_number", "duration"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 1e308}, 422, "invalid_field", "duration must be at most"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 10**400}, 400, "bad_number", "duration"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 60, "priority": 10**100}, 400, "bad_number", "priority"),
    (
        "POST",
        "/jobs",
        {"num_gpus": 1, "duration": 60, "priority": 10**6},
        422,
        "invalid_field",
        "priority must be at most",
    ),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 60, "estimate": 1e308}, 422, "invalid_field", "estimate"),
    ("POST", "/jobs", b'{"num_gpus": 1, "duration": 60, "name": "gpu\\ud800"}', 400, "bad_text", "name"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 60, "gpu_milli": 1500}, 422, "invalid_field", "gpu_milli"),
    ("POST", "/jobs", {"num_gpus": 2, "duration": 60, "gpu_milli": 500}, 422, "invalid_field", "gpu_milli"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 60, "priority": "high"}, 422, "invalid_field", "priority"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 60, "cpu_milli": -1}, 422, "invalid_field", "cpu_milli"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 60, "tenant": ""}, 422, "invalid_field", "tenant"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 60, "gpu_type": ["H100"]}, 422, "invalid_field", "gpu_type"),
    (
        "POST",
        "/jobs",
        {"num_gpus": 1, "duration": 60, "checkpoint_interval": 0},
        422,
        "invalid_field",
        "checkpoint_interval",
    ),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 60, "estimate": -1}, 422, "invalid_field", "estimate"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 60, "name": "x" * 300}, 422, "invalid_field", "name"),
    (
        "POST",
        "/jobs",
        {"num_gpus": 65, "duration": 60},
        422,
        "unschedulable",
        "the job asks for 65 GPUs; the cluster has 64",
    ),
    ("POST", "/jobs", {"num_gpus": 12, "duration": 60}, 422, "unschedulable", "multiple of 8"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 60, "gpu_type": "A100"}, 422, "unschedulable", "A100"),
    ("POST", "/jobs", {"num_gpus": 1, "duration": 60, "memory_mib": 10**9}, 422, "unschedulable", "MiB"),
    (
        "POST",
        "/jobs",
        b'{"num_gpus": 1, "duration": 60, "name": "' + b"x" * 70_000 + b'"}',
        413,
        "body_too_large",
        "limit",
    ),
    ("GET", "/jobs?state=paused", None, 400, "bad_state", "paused"),
    ("GET", "/jobs?limit=0", None, 400, "bad_limit", "1..1000"),
    ("GET", "/jobs?limit=ten", None, 400, "bad_limit", "ten"),
    ("GET", "/jobs/abc", None, 400, "bad_request", "abc"),
    ("GET", "/jobs/-1", None, 400, "bad_request", "-1"),
    ("GET", "/jobs/999", None, 404, "unknown_job", "999"),
    ("DELETE", "/jobs/999", None, 404, "unknown_job", "999"),
    ("DELETE", "/jobs/x1", None, 400, "bad_request", "x1"),
    ("GET", "/events?since=-1", None, 400, "bad_since", "-1"),
    ("GET", "/events?since=soon", None, 400, "bad_since", "soon"),
    ("POST", "/failures", {"node": 99}, 404, "unknown_node", "no node 99"),
    ("POST", "/failures", {"rack": 5}, 404, "unknown_rack", "no rack 5"),
    ("POST", "/failures", {"node": "0"}, 422, "invalid_field", "node"),
    ("POST", "/failures", {"node": 0, "repair_after": 1e308}, 422, "invalid_field", "repair_after must be at most"),
    ("POST", "/failures", {"rack": 0.5}, 422, "invalid_field", "rack"),
    ("POST", "/failures", {}, 422, "invalid_field", "exactly one of node or rack"),
    ("POST", "/failures", {"node": 0, "rack": 0}, 422, "invalid_field", "exactly one of node or rack"),
    ("POST", "/failures", {"node": 0, "repair_after": -1}, 422, "invalid_field", "repair_after"),
    ("POST", "/failures", {"node": 0, "when": 3}, 422, "invalid_field", "when"),
    ("POST", "/failures", "node 0", 422, "invalid_field", "JSON object"),
    ("POST", "/failures", b"node=0", 400, "bad_request", "JSON"),
    ("PUT", "/jobs", {}, 405, "http_error", ""),
    ("GET", "/nowhere", None, 404, "http_error", ""),
]


def snapshot(app) -> tuple:
    live = app.state.cluster
    jobs = live.jobs(limit=1000)
    return (
        jobs,
        [(j["id"], j["state"], j["placement"]) for j in jobs["jobs"]],
        [j.id for j in live.sim.queue],
        live.sim.cluster.alive.tolist(),
        len(live.sim.events),
        live.sim.next_id(),
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error", "mentions"),
    BAD_REQUESTS,
    ids=[f"{m} {str(b)[:40]} {p[:30]} {e}" for m, p, b, _, e, _ in BAD_REQUESTS],
)
def test_bad_input_gets_json_4xx_and_loses_nothing(method, path, body, status, error, mentions):
    app = fresh_app()
    live = app.state.cluster

    async def scenario(c):
        running = await submit(c, num_gpus=64, duration=1000)
        waiting = await submit(c, num_gpus=8, duration=100, tenant="kept")
        live.advance(1)
        before = snapshot(app)
        kw = {"content": body} if isinstance(body, bytes) else ({"json": body} if body is not None else {})
        assert_json_error(await c.request(method, path, **kw), status, error, mentions)
        assert snapshot(app) == before
        live.advance(1000)  # the stored jobs go on as if nothing had happened
        assert (await c.get(f"/jobs/{running['id']}")).json()["state"] == "done"
        kept = (await c.get(f"/jobs/{waiting['id']}")).json()
        assert kept["state"] == "running" and kept["tenant"] == "kept"

    run_asgi(app, scenario)


def test_node_failure_kills_and_requeues_the_job_which_restarts_from_its_checkpoint():
    app = fresh_app()
    live = app.state.cluster

    async def scenario(c):
        job = await submit(c, num_gpus=8, duration=1000, checkpoint_interval=100)
        live.advance(250)
        node = (await c.get(f"/jobs/{job['id']}")).json()["placement"][0]["node"]

        r = await c.post("/failures", json={"node": node})
        assert r.status_code == 202
        assert r.json()["nodes"] == [node] and r.json()["jobs_hit"] == [job["id"]] and r.json()["t"] == 250
        hit = (await c.get(f"/jobs/{job['id']}")).json()
        assert hit["state"] == "queued" and hit["restarts"] == 1 and hit["progress"] == 200
        assert hit["lost_gpu_hours"] == pytest.approx(50 * 8 / 3600)

        live.advance(1)
        again = (await c.get(f"/jobs/{job['id']}")).json()
        assert again["state"] == "running" and {p["node"] for p in again["placement"]} != {node}
        assert again["events"][-1]["t"] == 250 and again["events"][-1]["event"].startswith("started")
        grid = (await c.get("/cluster")).json()
        assert grid["nodes"][node]["alive"] is False
        assert all(g["owner"] is None for g in grid["nodes"][node]["gpus"])
        events = (await c.get("/events", params={"since": 250})).json()
        assert [(e["event"], e.get("node"), e.get("job")) for e in events["events"]] == [
            ("node failed", node, None),
            ("node lost", None, job["id"]),
            ("node declared dead", node, None),
        ]
        assert events["detections"] is None  # no heartbeat monitor: failures are seen at once
        assert (await c.get("/events", params={"since": 251})).json()["events"] == []
        assert_json_error(await c.post("/failures", json={"node": node}), 409, "already_down", f"node {node}")

        live.advance(799)  # restarted at t=250 with 800 s of work left after the checkpoint at 200 s
        done = (await c.get(f"/jobs/{job['id']}")).json()
        assert done["state"] == "done" and done["end"] == 1050

    run_asgi(app, scenario)


def test_rack_failure_with_repair_brings_the_nodes_back():
    app = fresh_app()
    live = app.state.cluster

    async def scenario(c):
        r = await c.post("/failures", json={"rack": 1, "repair_after": 300})
        assert r.status_code == 202 and r.json()["nodes"] == [4, 5, 6, 7]
        live.advance(1)
        grid = (await c.get("/cluster")).json()
        assert [n["alive"] for n in grid["nodes"]] == [True] * 4 + [False] * 4
        assert (await c.get("/metrics")).json()["sample"]["nodes_down"] == 4
        # a job as wide as the whole cluster waits for the repair
        wide = await submit(c, num_gpus=64, duration=100)
        live.advance(100)
        assert (await c.get(f"/jobs/{wide['id']}")).json()["state"] == "queued"
        live.advance(200)
        assert all(n["alive"] for n in (await c.get("/cluster")).json()["nodes"])
        assert (await c.get(f"/jobs/{wide['id']}")).json()["state"] == "running"

    run_asgi(app, scenario)


def test_heartbeat_monitor_notices_the_failure_after_its_timeout():
    app = fresh_app(health=HealthConfig(interval=10, timeout=30))
    live = app.state.cluster

    async def scenario(c):
        job = await submit(c, num_gpus=8, duration=1000)
        live.advance(5)
        node = (await c.get(f"/jobs/{job['id']}")).json()["placement"][0]["node"]
        r = await c.post("/failures", json={"node": node})
        assert r.status_code == 202 and "30 s" in r.json()["detection"]
        live.advance(15)
        assert (await c.get(f"/jobs/{job['id']}")).json()["state"] == "running"  # nobody has noticed yet
        live.advance(30)
        job = (await c.get(f"/jobs/{job['id']}")).json()
        assert job["restarts"] == 1 and job["state"] == "running"
        assert node not in {p["node"] for p in job["placement"]}
        detections = (await c.get("/events")).json()["detections"]
        assert len(detections) == 1 and detections[0]["node"] == node and detections[0]["real"] is True
        # silence counts from the last heartbeat (t=0), so detection comes 20..30 s after the failure
        assert detections[0]["delay"] == 25

    run_asgi(app, scenario)


def test_false_positive_detections_are_served_with_a_null_delay():
    # Half the heartbeats lost and a timeout of one interval: healthy nodes get declared dead.
    app = fresh_app(health=HealthConfig(interval=10, timeout=10, loss=0.5, seed=1))
    live = app.state.cluster

    async def scenario(c):
        live.advance(200)
        r = await c.get("/events")
        assert r.status_code == 200
        detections = r.json()["detections"]
        assert detections and all(d["real"] is False and d["delay"] is None for d in detections)
        assert {"false positive", "node declared dead", "node back"} <= {e["event"] for e in r.json()["events"]}

    run_asgi(app, scenario)


def test_cluster_owner_grid_matches_each_jobs_placement():
    app = fresh_app()
    live = app.state.cluster

    async def scenario(c):
        shapes = [
            dict(num_gpus=4, duration=500),
            dict(num_gpus=1, gpu_milli=500, duration=500),
            dict(num_gpus=1, gpu_milli=250, duration=500),
            dict(num_gpus=16, duration=500),
            dict(num_gpus=2, duration=500),
        ]
        ids = [(await submit(c, **s))["id"] for s in shapes]
        live.advance(1)
        grid = (await c.get("/cluster")).json()
        assert len(grid["nodes"]) == 8 and grid["total_gpus"] == 64
        assert [n["rack"] for n in grid["nodes"]] == [0] * 4 + [1] * 4
        assert all(n["gpu_type"] == "H100" and len(n["gpus"]) == 8 for n in grid["nodes"])
        used = {}
        for jid in ids:
            job = (await c.get(f"/jobs/{jid}")).json()
            assert job["state"] == "running"
            for p in job["placement"]:
                used[(p["node"], p["gpu"])] = used.get((p["node"], p["gpu"]), 0) + p["milli"]
                if p["milli"] == 1000:
                    assert grid["nodes"][p["node"]]["gpus"][p["gpu"]]["owner"] == jid
        for n in grid["nodes"]:
            for g in n["gpus"]:
                taken = used.get((n["node"], g["gpu"]), 0)
                assert g["free_milli"] == 1000 - taken
                assert (g["owner"] is None) == (taken == 0)
        assert grid["utilisation"] == pytest.approx((4 + 0.5 + 0.25 + 16 + 2) / 64)
        assert 0 <= grid["fragmentation"] <= 1 and 0 <= grid["stranded"] <= 1

    run_asgi(app, scenario)


def test_index_names_the_endpoints_and_the_documented_default_cluster():
    app = create_app(autostart=False)

    async def scenario(c):
        index = (await c.get("/")).json()
        assert "POST /jobs" in index["endpoints"] and "POST /failures" in index["endpoints"]
        assert index["config"] == {
            "racks": 2,
            "nodes": 8,
            "gpus": 64,
            "gpu_types": ["H100"],
            "scheduler": DEFAULTS["scheduler"],
            "placer": DEFAULTS["placer"],
            "speed": 60.0,
        }

    run_asgi(app, scenario)


def test_background_load_is_seeded_and_arrives_over_time():
    def after(seconds: float, seed: int) -> list:
        app = create_app(autostart=False, background_jobs=40, seed=seed)
        app.state.cluster.advance(seconds)
        return [(j["id"], j["submit"], j["num_gpus"], j["state"]) for j in app.state.cluster.jobs(limit=1000)["jobs"]]

    early, late = after(600, seed=3), after(20_000, seed=3)
    assert len(early) < len(late) <= 40
    assert after(20_000, seed=3) == late and after(20_000, seed=4) != late
    app = create_app(autostart=False, background_jobs=40, seed=3)
    assert app.state.cluster.metrics()["summary"]["still_to_arrive"] == 40
    app.state.cluster.advance(50_000)  # the last of this seed's jobs ends near t=12,000 at ~70% load
    summary = app.state.cluster.metrics()["summary"]
    assert summary["by_state"]["done"] == 40 and summary["still_to_arrive"] == 0


def test_clock_thread_follows_the_wall_clock_at_speed_and_caps_catch_up():
    wall = ManualClock(0.0)
    live = LiveCluster(speed=60, tick=0.01, max_catch_up=1.0, wall=wall.now)
    live.start()
    try:
        wall.advance(0.5)
        deadline = time.monotonic() + 5
        while live.now < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert live.now == 30
        wall.advance(100)  # a stall: catch up by at most one second of real time
        deadline = time.monotonic() + 5
        while live.now < 90 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert live.now == 90
        assert live.metrics()["clock_running"] is True
    finally:
        live.stop()
    assert not live.running


def test_app_lifespan_starts_and_stops_the_clock():
    app = create_app(background_jobs=0, speed=1000)
    live = app.state.cluster

    async def scenario(c):
        async with app.router.lifespan_context(app):  # what uvicorn runs around serving
            job = (await c.post("/jobs", json={"num_gpus": 1, "duration": 50})).json()
            deadline = time.monotonic() + 10
            while (await c.get(f"/jobs/{job['id']}")).json()["state"] != "done" and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert (await c.get(f"/jobs/{job['id']}")).json()["state"] == "done"
            assert (await c.get("/metrics")).json()["clock_running"] is True
        assert not live.running

    run_asgi(app, scenario)


def test_a_crash_inside_the_simulation_freezes_it_with_503s():
    app = fresh_app()
    live = app.state.cluster

    def broken(view):
        raise RuntimeError("scheduler bug")

    async def scenario(c):
        job = await submit(c, num_gpus=1, duration=10)
        live.sim.scheduler = broken
        await submit(c, num_gpus=1, duration=10)
        with pytest.raises(Exception, match="scheduler bug"):
            live.advance(1)
        assert_json_error(
            await c.post("/jobs", json={"num_gpus": 1, "duration": 5}), 503, "cluster_stopped", "scheduler bug"
        )
        assert_json_error(await c.post("/failures", json={"node": 0}), 503, "cluster_stopped", "scheduler bug")
        assert (await c.get("/metrics")).json()["error"] == "RuntimeError: scheduler bug"
        assert (await c.get(f"/jobs/{job['id']}")).status_code == 200  # what was stored can still be read

    run_asgi(app, scenario)


@pytest.mark.parametrize(
    ("options", "mentions"),
    [
        ({"scheduler": "lottery"}, "lottery"),
        ({"placer": "random"}, "random"),
        ({"speed": 0}, "speed"),
        ({"racks": 0}, "racks"),
    ],
)
def test_bad_options_are_refused_by_name(options, mentions):
    with pytest.raises(ValueError, match=mentions):
        fresh_app(**options)


SERVE = textwrap.dedent("""
    import argparse, sys
    from lab_core.cluster.demo import add_demo_arguments, run_demo
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    add_demo_arguments(parser)
    sys.exit(run_demo(parser.parse_args(sys.argv[1:])))
""")


def test_demo_serves_over_loopback(tmp_path: Path):
    # The cli's parser adds --host/--port then add_demo_arguments; this does the same without the
    # lab being registered in lab_core.labs.
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, "--port", str(port), "--speed", "600", "--background-jobs", "30"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(url + "/", timeout=0.5).status_code == 200, proc, timeout=30, what="cluster demo", log=log
        )
        with httpx.Client(base_url=url, timeout=5) as http:
            created = http.post("/jobs", json={"num_gpus": 2, "duration": 120, "name": "smoke"})
            assert created.status_code == 201, created.text
            location = created.headers["location"]
            bad = http.post("/jobs", json={"num_gpus": 2})
            assert bad.status_code == 422 and "duration" in bad.json()["detail"]
            # 120 simulated seconds at 600x take 0.2 s; allow for a slow machine
            deadline = time.monotonic() + 20
            while http.get(location).json()["state"] != "done" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert http.get(location).json()["state"] == "done"
            assert http.post("/failures", json={"node": 3}).status_code == 202
            assert http.post("/failures", json={"node": 42}).status_code == 404
            metrics = http.get("/metrics").json()
            assert metrics["t"] > 120 and metrics["clock_running"] is True and metrics["summary"]["jobs"] >= 1
            assert any(e["event"] == "node failed" and e["node"] == 3 for e in http.get("/events").json()["events"])
    finally:
        stop_process(proc, timeout=10)
    # uvicorn finishes its shutdown (the lifespan stops the clock) and then re-raises SIGTERM
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()
    assert "curl -X POST" in log.read_text()
