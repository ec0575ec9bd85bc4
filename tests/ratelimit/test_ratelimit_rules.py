"""Rules: loading and validation (errors name the rule and the field), matching, order, verdicts."""

from __future__ import annotations

import random
import re
import textwrap
from pathlib import Path

import pytest
import redis
import yaml

from lab_core.ratelimit import ALGORITHMS, RequestInfo, Rule, RuleError, RulesEngine, default_rules, load_rules
from lab_core.ratelimit.rules import Match
from lab_core.sim import ManualClock
from lab_core.store import redis_client

GOOD = textwrap.dedent(
    """\
    rules:
      - name: per-user
        scope: user
        algorithm: token_bucket
        limit: 5
        period: 10
        burst: 3
      - name: per-ip
        scope: ip
        algorithm: sliding_window_log
        limit: 10
        period: 10
    """
)


def rule(**overrides) -> dict:
    base = {"name": "r1", "scope": "user", "algorithm": "token_bucket", "limit": 5, "period": 1}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


# --- loading ---------------------------------------------------------------------------------


def test_load_from_yaml_string():
    rules = load_rules(GOOD)
    assert [r.name for r in rules] == ["per-user", "per-ip"]
    assert rules[0] == Rule(name="per-user", scope="user", limit=5, period=10, algorithm="token_bucket", burst=3)
    assert rules[1].algorithm == "sliding_window_log" and rules[1].burst is None
    assert rules[1].fail == "open" and rules[1].cost == 1 and rules[1].match == Match()


def test_load_from_file_path_and_str(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD)
    assert load_rules(path) == load_rules(GOOD)
    assert load_rules(str(path)) == load_rules(GOOD)
    yml = tmp_path / "rules.yml"
    yml.write_text(GOOD)
    assert load_rules(str(yml)) == load_rules(GOOD)


def test_load_from_dict_and_list():
    data = yaml.safe_load(GOOD)
    assert load_rules(data) == load_rules(GOOD)
    assert load_rules(data["rules"]) == load_rules(GOOD)


def test_missing_rules_file_is_named(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RuleError, match=re.escape(f"rules file {str(missing)!r} does not exist")):
        load_rules(missing)


def test_default_rules_load_as_documented():
    rules = {r.name: r for r in default_rules()}
    assert list(rules) == ["per-user", "per-ip", "expensive-report", "global"]
    assert (
        rules["per-user"].scope,
        rules["per-user"].algorithm,
        rules["per-user"].limit,
        rules["per-user"].period,
        rules["per-user"].burst,
    ) == ("user", "token_bucket", 60, 60, 10)
    assert (rules["per-ip"].scope, rules["per-ip"].algorithm, rules["per-ip"].limit) == (
        "ip",
        "sliding_window_counter",
        120,
    )
    report = rules["expensive-report"]
    assert (report.algorithm, report.cost, report.match.endpoints) == ("gcra", 10, ("/api/report",))
    assert (rules["global"].scope, rules["global"].fail, rules["global"].limit, rules["global"].period) == (
        "global",
        "closed",
        1000,
        1,
    )
    assert all(isinstance(r, Rule) for r in rules.values())


def test_engine_accepts_yaml_path_and_dict(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text(GOOD)
    for source in (GOOD, path, yaml.safe_load(GOOD), load_rules(GOOD)):
        engine = RulesEngine(source, clock=ManualClock())
        assert [r.name for r in engine.rules] == ["per-user", "per-ip"]


# --- validation: every error names the rule and the field ------------------------------------


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (rule(limit=-1), r"^rule 'r1': field 'limit' must be a positive integer, got -1"),
        (rule(limit=0), r"^rule 'r1': field 'limit' must be a positive integer, got 0"),
        (rule(limit="ten"), r"^rule 'r1': field 'limit' must be a positive integer, got 'ten'"),
        (rule(limit=2.5), r"^rule 'r1': field 'limit'"),
        (rule(limit=True), r"^rule 'r1': field 'limit'"),
        (rule(period=0), r"^rule 'r1': field 'period' must be a positive number of seconds, got 0"),
        (rule(period=-5), r"^rule 'r1': field 'period'"),
        (rule(period="1m"), r"^rule 'r1': field 'period'"),
        (rule(period=float("inf")), r"^rule 'r1': field 'period'"),
        (rule(scope="tenant"), r"^rule 'r1': field 'scope' must be one of user, ip, endpoint, global, got 'tenant'"),
        (rule(algorithm="leaky"), r"^rule 'r1': field 'algorithm' must be one of .*got 'leaky'"),
        (rule(colour="red"), r"^rule 'r1': unknown field\(s\) colour"),
        (rule(limits=5), r"^rule 'r1': unknown field\(s\) limits"),
        (rule(period=...), r"^rule 'r1': field 'period' is required"),
        (rule(scope=...), r"^rule 'r1': field 'scope' is required"),
        (rule(name=...), r"^rule '#1': field 'name' is required"),
        (rule(name=""), r"^rule '': field 'name' must be a non-empty string"),
        (rule(name=42), r"^rule 42: field 'name' must be a non-empty string"),
        (
            rule(algorithm="fixed_window", burst=10),
            r"^rule 'r1': field 'burst' does not apply to algorithm 'fixed_window'",
        ),
        (rule(algorithm="sliding_window_log", burst=10), r"^rule 'r1': field 'burst' does not apply"),
        (rule(algorithm="sliding_window_counter", burst=10), r"^rule 'r1': field 'burst' does not apply"),
        (rule(burst=0), r"^rule 'r1': field 'burst' must be a positive integer, got 0"),
        (rule(cost=6), r"^rule 'r1': field 'cost' 6 exceeds the rule's capacity 5"),
        (rule(burst=2, cost=3), r"^rule 'r1': field 'cost' 3 exceeds the rule's capacity 2"),
        (rule(cost=0), r"^rule 'r1': field 'cost' must be a positive integer"),
        (rule(fail="maybe"), r"^rule 'r1': field 'fail' must be 'open' or 'closed', got 'maybe'"),
        (rule(match={"paths": ["/x"]}), r"^rule 'r1': field 'match' takes only endpoints, methods, users"),
        (rule(match="/api/*"), r"^rule 'r1': field 'match' takes only"),
        (rule(match={"endpoints": "/api/*"}), r"^rule 'r1': field 'match.endpoints' must be a list of strings"),
        (rule(match={"methods": [1]}), r"^rule 'r1': field 'match.methods' must be a list of strings"),
    ],
)
def test_bad_rule_names_rule_and_field(data: dict, pattern: str):
    with pytest.raises(RuleError, match=pattern):
        load_rules([data])
    # the same error through the YAML text path
    with pytest.raises(RuleError, match=pattern):
        load_rules(yaml.safe_dump({"rules": [data]}, default_flow_style=False) + "\n")


def test_error_names_the_right_rule_among_several():
    rules = [rule(name="fine"), rule(name="broken", limit=0), rule(name="also-fine")]
    with pytest.raises(RuleError, match=r"^rule 'broken': field 'limit'"):
        load_rules(rules)


def test_rule_error_is_a_value_error():
    assert issubclass(RuleError, ValueError)  # the CLI turns ValueError into exit 2 + message


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ("rules:\n  - name: [unclosed\n", r"^rules are not valid YAML"),
        ("rules: {\n", r"^rules are not valid YAML"),
        ("", r"non-empty list"),
        ("rules: []\n", r"non-empty list"),
        ({"rules": []}, r"non-empty list"),
        ({"rules": [rule()], "extra": 1}, r"exactly one top-level key, 'rules'"),
        ("limits:\n  - name: x\n", r"exactly one top-level key, 'rules'"),
        ([42], r"^rule #1: must be a mapping, got int"),
        ([rule(), "text"], r"^rule #2: must be a mapping, got str"),
        ([rule(name="dup"), rule(name="other"), rule(name="dup")], r"unique; repeated: dup$"),
    ],
)
def test_bad_documents(source, pattern: str):
    with pytest.raises(RuleError, match=pattern):
        load_rules(source)


def test_bad_rules_file(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("rules:\n  - name: oops\n    scope: user\n    limit: 0\n    period: 1\n")
    with pytest.raises(RuleError, match=r"^rule 'oops': field 'limit'"):
        load_rules(path)
    with pytest.raises(RuleError, match=r"^rule 'oops': field 'limit'"):
        RulesEngine(path)


# --- matching --------------------------------------------------------------------------------


def req(endpoint="/api/items", method="GET", user=None, ip="10.0.0.1") -> RequestInfo:
    return RequestInfo(ip=ip, endpoint=endpoint, method=method, user=user)


def test_match_endpoint_globs():
    m = Match(endpoints=("/api/items/*", "/api/report"))
    assert m.matches(req("/api/items/42"))
    assert m.matches(req("/api/report"))
    assert not m.matches(req("/api/items"))
    assert not m.matches(req("/api/reports"))
    assert not m.matches(req("/API/report"))  # case-sensitive, like URL paths


def test_match_methods_and_users_from_yaml():
    [r] = load_rules([rule(match={"methods": ["post", "Put"], "users": ["alice"]})])
    assert r.match.methods == ("POST", "PUT")
    assert r.match.matches(req(method="post", user="alice"))
    assert r.match.matches(req(method="PUT", user="alice"))
    assert not r.match.matches(req(method="GET", user="alice"))
    assert not r.match.matches(req(method="POST", user="bob"))
    assert not r.match.matches(req(method="POST", user=None))
    assert Match().matches(req())  # no filter: everything


def test_only_matching_rules_are_checked():
    engine = RulesEngine(
        [
            rule(name="writes", scope="ip", match={"methods": ["POST"]}, limit=1),
            rule(name="reports", scope="ip", match={"endpoints": ["/api/report"]}, limit=1),
            rule(name="vip", scope="user", match={"users": ["vip"]}, limit=1),
        ],
        clock=ManualClock(),
    )
    assert engine.check(req("/api/items", "GET", user="bob")).checked == ()
    v = engine.check(req("/api/items", "POST"))
    assert [rd.rule.name for rd in v.checked] == ["writes"]
    v = engine.check(req("/api/report", "POST", user="vip"))
    assert [rd.rule.name for rd in v.checked] == ["vip", "writes"]  # user before ip; 'writes' refused
    assert not v.allowed and v.deciding.rule.name == "writes"


def test_no_rule_applies_means_allowed_without_deciding_rule():
    engine = RulesEngine([rule(scope="user")], clock=ManualClock())
    v = engine.check(req(user=None))  # anonymous: a user rule has no key
    assert v.allowed and v.deciding is None and v.checked == ()


def test_keys_per_scope():
    r = req("/api/items/7", user="alice", ip="192.0.2.9")
    assert Rule("u", "user", 1, 1).key_for(r) == "u:alice"
    assert Rule("i", "ip", 1, 1).key_for(r) == "i:192.0.2.9"
    assert Rule("e", "endpoint", 1, 1).key_for(r) == "e:/api/items/7"
    assert Rule("g", "global", 1, 1).key_for(r) == "g:*"
    assert Rule("u", "user", 1, 1).key_for(req(user=None)) is None


# --- order and verdicts ----------------------------------------------------------------------

ORDER_RULES = [  # written in the "wrong" order on purpose
    rule(name="g", scope="global", algorithm="fixed_window", limit=100, period=1000),
    rule(name="e", scope="endpoint", algorithm="fixed_window", limit=100, period=1000),
    rule(name="i", scope="ip", algorithm="fixed_window", limit=100, period=1000),
    rule(name="u", scope="user", algorithm="fixed_window", limit=2, period=1000),
]


def test_rules_checked_user_ip_endpoint_global():
    engine = RulesEngine(ORDER_RULES, clock=ManualClock())
    v = engine.check(req(user="alice"))
    assert [rd.rule.scope for rd in v.checked] == ["user", "ip", "endpoint", "global"]
    assert [rd.key for rd in v.checked] == ["u:alice", "i:10.0.0.1", "e:/api/items", "g:*"]


def test_first_rejection_stops_and_spares_the_global_quota():
    engine = RulesEngine(ORDER_RULES, clock=ManualClock())
    verdicts = [engine.check(req(user="alice")) for _ in range(5)]
    assert [v.allowed for v in verdicts] == [True, True, False, False, False]
    for v in verdicts[2:]:
        assert v.deciding.rule.name == "u"
        assert [rd.rule.name for rd in v.checked] == ["u"]  # ip/endpoint/global never asked
    # alice's 3 refused requests used none of the shared quotas: 2 spent, 98 left
    bob = engine.check(req(user="bob", ip="10.0.0.2"))
    global_rd = next(rd for rd in bob.checked if rd.rule.name == "g")
    assert global_rd.decision.remaining == 100 - 3
    endpoint_rd = next(rd for rd in bob.checked if rd.rule.name == "e")
    assert endpoint_rd.decision.remaining == 100 - 3


def test_deciding_rule_is_the_tightest_when_allowed():
    engine = RulesEngine(
        [
            rule(name="user-loose", scope="user", algorithm="fixed_window", limit=10, period=100),
            rule(name="ip-tight", scope="ip", algorithm="fixed_window", limit=4, period=100),
        ],
        clock=ManualClock(),
    )
    v = engine.check(req(user="a"))
    assert v.allowed and v.deciding.rule.name == "ip-tight"  # 3/4 left beats 9/10
    assert v.deciding.decision.remaining == 3 and v.deciding.key == "ip-tight:10.0.0.1"
    for _ in range(3):
        engine.check(req(user="a"))
    v = engine.check(req(user="a"))
    assert not v.allowed and v.deciding.rule.name == "ip-tight"
    assert not v.degraded and all(rd.error is None for rd in v.checked)


def test_ip_rule_limits_users_together_user_rule_separately():
    engine = RulesEngine(
        [
            rule(name="per-user", scope="user", algorithm="fixed_window", limit=3, period=100),
            rule(name="per-ip", scope="ip", algorithm="fixed_window", limit=5, period=100),
        ],
        clock=ManualClock(),
    )
    results = [engine.check(req(user=f"u{i % 3}", ip="203.0.113.7")) for i in range(9)]
    assert sum(v.allowed for v in results) == 5  # the office shares 5
    assert {v.deciding.rule.name for v in results if not v.allowed} == {"per-ip"}


def test_cost_from_the_rule():
    engine = RulesEngine(
        [rule(name="report", scope="user", algorithm="gcra", limit=30, period=60, cost=10)], clock=ManualClock()
    )
    verdicts = [engine.check(req(user="a")) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.deciding.decision.remaining for v in verdicts[:3]] == [20, 10, 0]


def test_limiter_inspection():
    engine = RulesEngine(GOOD, clock=ManualClock())
    assert engine.limiter("per-user").burst == 3
    with pytest.raises(KeyError):
        engine.limiter("nope")


# --- the same verdicts from memory and from Redis --------------------------------------------

MIXED = [  # one rule per algorithm; every one of them refuses something in the traffic below
    rule(name="user-tb", scope="user", algorithm="token_bucket", limit=3, period=2, burst=4),
    rule(
        name="user-report",
        scope="user",
        algorithm="gcra",
        limit=3,
        period=4,
        cost=2,
        match={"endpoints": ["/api/report"]},
    ),
    rule(name="ip-log", scope="ip", algorithm="sliding_window_log", limit=8, period=4),
    rule(name="ip-lb", scope="ip", algorithm="leaky_bucket", limit=3, period=2, burst=4),
    rule(name="ep-counter", scope="endpoint", algorithm="sliding_window_counter", limit=5, period=2),
    rule(name="global-fw", scope="global", algorithm="fixed_window", limit=16, period=4),
]


def scripted_traffic():
    users = [None, "alice", "bob", "carol"]
    for i in range(160):
        yield (
            0.0625 * (i % 5),  # time step
            RequestInfo(
                ip=f"10.0.0.{i % 3}",
                endpoint=["/api/items", "/api/report", "/api/items/1"][(i * 7) % 3],
                method="GET" if i % 4 else "POST",
                user=users[(i * 5) % 4],
            ),
        )


def verdict_trace(engine: RulesEngine, clock: ManualClock) -> list[tuple]:
    out = []
    for dt, request in scripted_traffic():
        clock.advance(dt)
        v = engine.check(request)
        out.append(
            (
                v.allowed,
                v.deciding and v.deciding.rule.name,
                tuple((rd.rule.name, rd.key, rd.decision) for rd in v.checked),
            )
        )
    return out


@pytest.mark.parametrize("backend", ["fakeredis", pytest.param("real", marks=pytest.mark.redis_server)])
def test_memory_and_redis_engines_agree(backend: str, request: pytest.FixtureRequest):
    store: redis.Redis = request.getfixturevalue("redis_fake" if backend == "fakeredis" else "redis_real")
    c1, c2 = ManualClock(1000.0), ManualClock(1000.0)
    memory = verdict_trace(RulesEngine(MIXED, clock=c1), c1)
    remote = verdict_trace(RulesEngine(MIXED, store=store, clock=c2, prefix="agree"), c2)
    assert remote == memory
    allowed = sum(v[0] for v in memory)
    assert 0 < allowed < len(memory)  # the traffic exercises both outcomes
    assert {v[1] for v in memory if not v[0]} == {r["name"] for r in MIXED}  # every rule refused some
    assert store.keys("agree:*")  # counters really went to the store


def _engine_pair(clock_a, clock_b):
    rules = load_rules(
        """
rules:
  - {name: per-user, scope: user, algorithm: token_bucket, limit: 4, period: 2, burst: 3}
  - {name: per-ip, scope: ip, algorithm: sliding_window_log, limit: 6, period: 4}
  - {name: report, scope: endpoint, algorithm: gcra, limit: 8, period: 4, cost: 2, match: {endpoints: ["/report"]}}
  - {name: all, scope: global, algorithm: sliding_window_counter, limit: 9, period: 2}
"""
    )
    batched = RulesEngine(rules, store=redis_client(fresh=True), clock=clock_a)
    one_by_one = RulesEngine(rules, store=redis_client(fresh=True), clock=clock_b, batch=False)
    return batched, one_by_one


def test_batched_rules_decide_exactly_like_one_script_per_rule():
    clock_a, clock_b = ManualClock(1000.0), ManualClock(1000.0)
    batched, one_by_one = _engine_pair(clock_a, clock_b)
    assert batched._batch is not None and one_by_one._batch is None
    rng = random.Random(5)
    for _ in range(400):
        step = rng.choice([0.0, 0.0, 0.125, 0.5, 1.5])
        clock_a.advance(step)
        clock_b.advance(step)
        request = RequestInfo(
            ip=rng.choice(["a", "b"]), endpoint=rng.choice(["/items", "/report"]), user=rng.choice(["u1", "u2", None])
        )
        got, want = batched.check(request), one_by_one.check(request)
        assert (got.allowed, got.deciding and got.deciding.rule.name) == (
            want.allowed,
            want.deciding and want.deciding.rule.name,
        )
        assert [(rd.rule.name, rd.decision) for rd in got.checked] == [
            (rd.rule.name, rd.decision) for rd in want.checked
        ]


def test_batched_rules_take_one_round_trip_per_request():
    batched, _ = _engine_pair(ManualClock(0.0), ManualClock(0.0))
    calls = []
    script = batched._batch._script

    def counting(*args, **kwargs):
        calls.append(kwargs["keys"])
        return script(*args, **kwargs)

    batched._batch._script = counting
    verdict = batched.check(RequestInfo(ip="a", endpoint="/report", user="u1"))
    assert verdict.allowed and len(verdict.checked) == 4
    assert len(calls) == 1 and len(calls[0]) == 5  # four rules, the log keeps two keys


def test_a_custom_limiter_class_turns_batching_off():
    class Mine(ALGORITHMS["token_bucket"]):
        pass

    engine = RulesEngine(
        [Rule(name="u", scope="user", limit=2, period=1)],
        store=redis_client(fresh=True),
        algorithms={"token_bucket": lambda *a, client=None, prefix=None, **kw: Mine(*a, **kw)},
    )
    assert engine._batch is None
