"""Feed ranking: features of a (post, viewer) pair, simulated engagement, a torch logistic regression.

The pieces:

* :func:`features` -- the notebook's exercise seam: a small pure function turning one feed item
  seen by one viewer into a fixed-order vector (``FEATURE_NAMES``).
* :func:`simulate_engagement` -- seeded synthetic data: candidate posts per viewer, their like,
  reply and interaction counts, and whether the viewer engaged, drawn from a known logistic
  model of the features plus Gaussian noise (so a learned ranker has something true to find).
* :func:`train` -- logistic regression in torch (CPU, a few epochs, deterministic per seed)
  returning a :class:`Ranker` with ``score`` and ``rank``.
* :func:`evaluate` -- AUC and NDCG@k on held-out viewers, learned ranker vs newest-first order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from lab_core.feed.policy import FeedItem
from lab_core.feed.protocol import Features
from lab_core.sim import rng

__all__ = [
    "EVAL_COLUMNS",
    "FEATURE_NAMES",
    "NUM_FEATURES",
    "TRUE_BIAS",
    "TRUE_WEIGHTS",
    "EngagementData",
    "EngagementStats",
    "Ranker",
    "auc",
    "evaluate",
    "feature_matrix",
    "features",
    "ndcg_at_k",
    "simulate_engagement",
    "split",
    "train",
]

#: The order of the entries of :func:`features`.
FEATURE_NAMES: tuple[str, ...] = ("recency", "likes", "replies", "affinity")
NUM_FEATURES = len(FEATURE_NAMES)

#: Ground truth of the engagement simulator: logit = TRUE_BIAS + TRUE_WEIGHTS . features + noise.
TRUE_WEIGHTS: tuple[float, ...] = (3.0, 0.5, 0.7, 1.2)
TRUE_BIAS = -4.5

#: Columns of :func:`evaluate`.
EVAL_COLUMNS = ["model", "auc", "ndcg", "k", "viewers", "items"]


@dataclass(frozen=True)
class EngagementStats:
    """What the ranker knows at ranking time ``now`` (seconds); missing keys count as 0."""

    now: float
    likes: Mapping[int, int] = field(default_factory=dict)  # post_id -> likes so far
    replies: Mapping[int, int] = field(default_factory=dict)  # post_id -> replies so far
    interactions: Mapping[tuple[int, int], int] = field(default_factory=dict)  # (viewer, author) -> count
    half_life: float = 3600.0  # seconds after which recency halves

    def __post_init__(self) -> None:
        if not (math.isfinite(self.half_life) and self.half_life > 0):
            raise ValueError(f"half_life must be > 0 seconds, got {self.half_life!r}")


def features(item: FeedItem, viewer: int, stats: EngagementStats) -> np.ndarray:
    """Features of ``item`` for ``viewer``: float64 array of shape ``(4,)`` in ``FEATURE_NAMES`` order.

    0. recency  -- ``0.5 ** (age / half_life)``, 1 for a post made now, towards 0 with age
       (a post "from the future" counts as age 0);
    1. likes    -- ``log1p(likes)``;
    2. replies  -- ``log1p(replies)``;
    3. affinity -- ``log1p(past interactions of viewer with the author)``.

    ``log1p`` keeps a viral post's thousands of likes from drowning every other feature.
    """
    age = max(0.0, stats.now - item.created_at)
    return np.array(
        [
            0.5 ** (age / stats.half_life),
            math.log1p(stats.likes.get(item.post_id, 0)),
            math.log1p(stats.replies.get(item.post_id, 0)),
            math.log1p(stats.interactions.get((viewer, item.author_id), 0)),
        ],
        dtype=np.float64,
    )


def feature_matrix(
    items: Sequence[FeedItem], viewer: int | Sequence[int], stats: EngagementStats, using: Features | None = None
) -> np.ndarray:
    """:func:`features` (or ``using``, e.g. a student's) of each item stacked: shape ``(len(items), NUM_FEATURES)``."""
    viewers = [viewer] * len(items) if isinstance(viewer, (int, np.integer)) else list(viewer)
    if len(viewers) != len(items):
        raise ValueError(f"{len(items)} items but {len(viewers)} viewers")
    if not items:
        return np.empty((0, NUM_FEATURES), dtype=np.float64)
    fn = using or features  # looked up per call, so a patched module seam is used too
    return np.stack([np.asarray(fn(i, int(v), stats), dtype=np.float64) for i, v in zip(items, viewers)])


@dataclass(frozen=True)
class EngagementData:
    """Candidate items with the viewer who saw each, their features and engagement labels."""

    items: list[FeedItem]
    viewers: np.ndarray  # (n,) int64
    X: np.ndarray  # (n, NUM_FEATURES) float64, rows = features(items[i], viewers[i], stats)
    y: np.ndarray  # (n,) float64 in {0, 1}
    stats: EngagementStats

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, mask: np.ndarray) -> EngagementData:
        """Rows where ``mask`` is true."""
        mask = np.asarray(mask, dtype=bool)
        return EngagementData(
            [i for i, keep in zip(self.items, mask) if keep], self.viewers[mask], self.X[mask], self.y[mask], self.stats
        )


def simulate_engagement(
    n_viewers: int = 400,
    candidates: int = 50,
    n_authors: int = 300,
    *,
    horizon: float = 6 * 3600.0,
    noise: float = 0.5,
    weights: Sequence[float] = TRUE_WEIGHTS,
    bias: float = TRUE_BIAS,
    seed: int | None = None,
) -> EngagementData:
    """``candidates`` posts for each of ``n_viewers`` viewers, labelled by a known model.

    Posts are made uniformly over the last ``horizon`` seconds by authors drawn by a
    lognormal popularity. Likes accumulate with a post's age, popularity and a hidden quality,
    so old posts have more likes (recency and engagement pull apart); replies are a fraction
    of likes; viewer-author interaction counts are Poisson with a lognormal, mostly small rate.
    Engagement is Bernoulli with ``sigmoid(bias + weights . features + N(0, noise))``.
    """
    for name, value in (("n_viewers", n_viewers), ("candidates", candidates), ("n_authors", n_authors)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if len(weights) != NUM_FEATURES:
        raise ValueError(f"weights must have {NUM_FEATURES} entries ({FEATURE_NAMES}), got {len(weights)}")
    if not (math.isfinite(horizon) and horizon > 0):
        raise ValueError(f"horizon must be > 0 seconds, got {horizon!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    g = rng(seed)
    n = int(n_viewers) * int(candidates)
    now = float(horizon)
    popularity = g.lognormal(0.0, 1.0, int(n_authors))
    author = g.choice(int(n_authors), size=n, p=popularity / popularity.sum())
    created = g.uniform(0.0, now, size=n)
    age_hours = (now - created) / 3600.0
    quality = g.normal(0.0, 1.0, size=n)
    like_rate = 3.0 * popularity[author] * np.exp(0.7 * quality) * np.minimum(age_hours, 1.0)
    likes = g.poisson(like_rate)
    replies = g.binomial(likes, 0.15)
    viewer = np.repeat(np.arange(int(n_viewers), dtype=np.int64), int(candidates))
    interactions = g.poisson(g.lognormal(-1.5, 1.5, size=n))
    post_ids = np.arange(n, dtype=np.int64)
    items = [
        FeedItem(int(p), int(a), float(c)) for p, a, c in zip(post_ids.tolist(), author.tolist(), created.tolist())
    ]
    pair_counts: dict[tuple[int, int], int] = {}
    for v, a, k in zip(viewer.tolist(), author.tolist(), interactions.tolist()):
        pair_counts[(v, a)] = max(pair_counts.get((v, a), 0), int(k))  # one count per pair
    stats = EngagementStats(
        now=now,
        likes=dict(zip(post_ids.tolist(), likes.tolist())),
        replies=dict(zip(post_ids.tolist(), replies.tolist())),
        interactions=pair_counts,
    )
    X = feature_matrix(items, viewer.tolist(), stats)
    logit = bias + X @ np.asarray(weights, dtype=np.float64) + g.normal(0.0, noise, size=n)
    y = (g.uniform(size=n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    return EngagementData(items, viewer, X, y, stats)


def split(
    data: EngagementData, held_out: float = 0.3, *, seed: int | None = None
) -> tuple[EngagementData, EngagementData]:
    """(train, held-out) with a ``held_out`` fraction of *viewers* (not rows) held out."""
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be in (0, 1), got {held_out!r}")
    viewers = np.unique(data.viewers)
    k = min(len(viewers) - 1, max(1, int(round(held_out * len(viewers)))))
    if k < 1:
        raise ValueError("need at least two viewers to split")
    test_viewers = rng(seed).choice(viewers, size=k, replace=False)
    mask = np.isin(data.viewers, test_viewers)
    return data.subset(~mask), data.subset(mask)


@dataclass(frozen=True)
class Ranker:
    """A trained logistic regression over standardised :func:`features`."""

    weights: np.ndarray  # (NUM_FEATURES,) on standardised features
    bias: float
    mean: np.ndarray  # feature means of the training data
    std: np.ndarray  # feature standard deviations of the training data (0 replaced by 1)
    losses: tuple[float, ...] = ()  # mean training log-loss per epoch

    def score_features(self, X: np.ndarray) -> np.ndarray:
        """Engagement logits of feature rows ``X`` of shape ``(n, NUM_FEATURES)``."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != NUM_FEATURES:
            raise ValueError(f"X must have shape (n, {NUM_FEATURES}), got {X.shape}")
        return ((X - self.mean) / self.std) @ self.weights + self.bias

    def score(
        self, items: Sequence[FeedItem], viewer: int, stats: EngagementStats, using: Features | None = None
    ) -> np.ndarray:
        """Engagement logits of ``items`` for ``viewer`` (features by ``using``, default :func:`features`)."""
        return self.score_features(feature_matrix(items, viewer, stats, using))

    def probability(self, items: Sequence[FeedItem], viewer: int, stats: EngagementStats) -> np.ndarray:
        """Predicted engagement probabilities of ``items`` for ``viewer``."""
        return 1.0 / (1.0 + np.exp(-self.score(items, viewer, stats)))

    def rank(
        self, items: Sequence[FeedItem], viewer: int, stats: EngagementStats, using: Features | None = None
    ) -> list[FeedItem]:
        """``items`` best first; equal scores fall back to newest first."""
        items = list(items)
        scores = self.score(items, viewer, stats, using)
        order = sorted(range(len(items)), key=lambda i: (-scores[i], tuple(-x for x in items[i].order)))
        return [items[i] for i in order]

    def hook(
        self, stats: EngagementStats | Callable[[], EngagementStats]
    ) -> Callable[[int, list[FeedItem]], list[FeedItem]]:
        """This ranker as the feed service's hook ``(user, items) -> items`` (``FeedService(ranker=...)``).

        ``stats`` is fixed statistics, or a function returning fresh ones for every page.
        """

        def rank_page(user: int, items: list[FeedItem]) -> list[FeedItem]:
            return self.rank(items, user, stats() if callable(stats) else stats)

        return rank_page


def train(
    data: EngagementData,
    *,
    epochs: int = 5,
    batch_size: int = 256,
    lr: float = 0.05,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> Ranker:
    """Fit a logistic regression with Adam on minibatches; same data and seed, same weights."""
    if len(data) == 0:
        raise ValueError("no training rows")
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    mean = data.X.mean(axis=0)
    std = data.X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    X = torch.from_numpy((data.X - mean) / std)
    y = torch.from_numpy(data.y.astype(np.float64))
    torch.manual_seed(seed)
    model = torch.nn.Linear(NUM_FEATURES, 1, dtype=torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    order_gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    for _ in range(int(epochs)):
        perm = torch.randperm(len(y), generator=order_gen)
        total = 0.0
        for start in range(0, len(y), int(batch_size)):
            idx = perm[start : start + int(batch_size)]
            opt.zero_grad()
            loss = loss_fn(model(X[idx]).squeeze(1), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(y))
    return Ranker(
        weights=model.weight.detach().numpy().ravel().copy(),
        bias=float(model.bias.detach()[0]),
        mean=mean,
        std=std,
        losses=tuple(losses),
    )


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN unless both classes occur."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return math.nan
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def ndcg_at_k(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over groups (viewers) with at least one positive; ties keep input order."""
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    groups = np.asarray(groups)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for gid in np.unique(groups):
        rows = np.flatnonzero(groups == gid)
        rel = labels[rows]
        if rel.sum() == 0:
            continue
        top = rel[np.argsort(-scores[rows], kind="stable")][:k]
        ideal = np.sort(rel)[::-1][:k]
        values.append(float((top * discount[: top.size]).sum() / (ideal * discount[: ideal.size]).sum()))
    return float(np.mean(values)) if values else math.nan


def evaluate(ranker: Ranker, data: EngagementData, k: int = 10) -> pd.DataFrame:
    """AUC and NDCG@k of ``ranker`` and of newest-first order on ``data``: ``EVAL_COLUMNS``."""
    created = np.array([i.created_at for i in data.items], dtype=np.float64)
    n_viewers = int(np.unique(data.viewers).size)
    rows = []
    for model, scores in (("learned", ranker.score_features(data.X)), ("recency", created)):
        rows.append(
            {
                "model": model,
                "auc": auc(scores, data.y),
                "ndcg": ndcg_at_k(scores, data.y, data.viewers, k),
                "k": int(k),
                "viewers": n_viewers,
                "items": len(data),
            }
        )
    return pd.DataFrame(rows, columns=EVAL_COLUMNS)
