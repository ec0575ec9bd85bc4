"""Lab 03: news feed — fan-out on write and on read, Redis timelines, merge, ranking.

Public API: ``FeedConfig``; the pure policy (``FeedItem``, ``Page``, ``is_celebrity``,
``fanout_targets``, ``merge``, ``encode_cursor``, ``decode_cursor``, ``CursorError``);
``FeedStore`` and its errors; ``Timelines`` and ``add_to_timeline``; ``publish`` and
``FanoutWorker``; ``FeedService`` with its ``RankHook``; ``FeedSystem`` / ``build_system`` /
``build_api``; the demo's ``create_app``; the social graph (``SocialGraph``,
``power_law_graph``); the fleet simulator (``simulate``, ``compare``, ``CostModel``); the ranker
(``features``, ``train``, ``Ranker``, ``evaluate``). The student seams are in
``lab_core.feed.protocol``; what the dashboard runs is in ``lab_core.feed.experiments``.
"""

from lab_core.feed.api import FeedSystem, build_api, build_system
from lab_core.feed.config import FeedConfig
from lab_core.feed.demo import add_demo_arguments, create_app, run_demo, seed
from lab_core.feed.fanout import FanoutJob, FanoutWorker, ensure_group, publish
from lab_core.feed.graph import SocialGraph, power_law_graph, top_share
from lab_core.feed.policy import (
    CursorError,
    FeedItem,
    Page,
    decode_cursor,
    encode_cursor,
    fanout_targets,
    is_celebrity,
    merge,
)
from lab_core.feed.ranker import (
    FEATURE_NAMES,
    EngagementStats,
    Ranker,
    auc,
    evaluate,
    features,
    ndcg_at_k,
    simulate_engagement,
    train,
)
from lab_core.feed.service import FeedService, RankHook, recency
from lab_core.feed.simulate import CostModel, FeedSimResult, compare, simulate
from lab_core.feed.store import (
    DuplicateFollow,
    DuplicateUser,
    EmptyPost,
    FeedError,
    FeedStore,
    InvalidName,
    NotFollowing,
    PostTooLong,
    SelfFollow,
    UnknownUser,
)
from lab_core.feed.timeline import Timelines, add_to_timeline, timeline_key

__all__ = [
    "FEATURE_NAMES",
    "CostModel",
    "CursorError",
    "DuplicateFollow",
    "DuplicateUser",
    "EmptyPost",
    "EngagementStats",
    "FanoutJob",
    "FanoutWorker",
    "FeedConfig",
    "FeedError",
    "FeedItem",
    "FeedService",
    "FeedSimResult",
    "FeedStore",
    "FeedSystem",
    "InvalidName",
    "NotFollowing",
    "Page",
    "PostTooLong",
    "RankHook",
    "Ranker",
    "SelfFollow",
    "SocialGraph",
    "Timelines",
    "UnknownUser",
    "add_demo_arguments",
    "add_to_timeline",
    "auc",
    "build_api",
    "build_system",
    "compare",
    "create_app",
    "decode_cursor",
    "encode_cursor",
    "ensure_group",
    "evaluate",
    "fanout_targets",
    "features",
    "is_celebrity",
    "merge",
    "ndcg_at_k",
    "power_law_graph",
    "publish",
    "recency",
    "run_demo",
    "seed",
    "simulate",
    "simulate_engagement",
    "timeline_key",
    "top_share",
    "train",
]
