"""Users, the follow graph and posts in SQLite, with typed errors for every refused write."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from lab_core.feed.policy import FeedItem, Source
from lab_core.sim.clock import Clock, RealClock
from lab_core.store import sqlite

MAX_NAME_CHARS = 40

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS follows (
    follower INTEGER NOT NULL REFERENCES users(id),
    followee INTEGER NOT NULL REFERENCES users(id),
    created_at REAL NOT NULL,
    PRIMARY KEY (follower, followee),
    CHECK (follower <> followee)
);
CREATE INDEX IF NOT EXISTS follows_by_followee ON follows (followee, follower);
CREATE TABLE IF NOT EXISTS posts (
    id INTEGER PRIMARY KEY,
    author INTEGER NOT NULL REFERENCES users(id),
    text TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS posts_by_author ON posts (author, created_at DESC, id DESC);
"""


class FeedError(ValueError):
    """A write or lookup the feed refuses; nothing was stored."""


class UnknownUser(FeedError):
    """No user has this id."""


class DuplicateUser(FeedError):
    """The user name is taken."""


class InvalidName(FeedError):
    """A user name that is empty, too long or not a string."""


class SelfFollow(FeedError):
    """A user tried to follow themselves."""


class DuplicateFollow(FeedError):
    """The follow already exists."""


class NotFollowing(FeedError):
    """An unfollow of a follow that does not exist."""


class PostTooLong(FeedError):
    """The post text exceeds the configured maximum."""


class EmptyPost(FeedError):
    """The post text is empty or blank."""


class FeedStore:
    """The durable side of the feed; one lock serialises access because the connection is shared by threads."""

    def __init__(self, db: str | Path = ":memory:", *, clock: Clock | None = None, max_post_chars: int = 280) -> None:
        self.conn = sqlite(db)
        self.clock = clock or RealClock()
        self.max_post_chars = max_post_chars
        self.lock = threading.RLock()
        with self.lock:
            self.conn.executescript(SCHEMA)

    # --- users -------------------------------------------------------------------------------

    def add_user(self, name: object) -> dict:
        """Create a user and return ``{"id", "name", "created_at"}``."""
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME_CHARS:
            raise InvalidName(f"user name must be a non-empty string of at most {MAX_NAME_CHARS} characters")
        name = name.strip()
        with self.lock:
            if self.conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise DuplicateUser(f"user name {name!r} is taken")
            now = self.clock.now()
            cur = self.conn.execute("INSERT INTO users (name, created_at) VALUES (?, ?)", (name, now))
            return {"id": cur.lastrowid, "name": name, "created_at": now}

    def user(self, user_id: int) -> dict:
        """One user; UnknownUser if absent."""
        with self.lock:
            row = self.conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise UnknownUser(f"no user with id {user_id}")
        return row

    def users(self) -> list[dict]:
        """Every user in id order."""
        with self.lock:
            return self.conn.execute("SELECT * FROM users ORDER BY id").fetchall()

    def names(self, user_ids: Iterable[int]) -> dict[int, str]:
        """``{id: name}`` for the given ids that exist."""
        ids = sorted(set(user_ids))
        if not ids:
            return {}
        with self.lock:
            rows = self.conn.execute(
                f"SELECT id, name FROM users WHERE id IN ({','.join('?' * len(ids))})", ids
            ).fetchall()
        return {r["id"]: r["name"] for r in rows}

    # --- follow graph ------------------------------------------------------------------------

    def follow(self, follower: int, followee: int) -> None:
        """Record that ``follower`` follows ``followee``."""
        with self.lock:
            self.user(follower)
            self.user(followee)
            if follower == followee:
                raise SelfFollow(f"user {follower} cannot follow themselves")
            if self.is_following(follower, followee):
                raise DuplicateFollow(f"user {follower} already follows user {followee}")
            self.conn.execute(
                "INSERT INTO follows (follower, followee, created_at) VALUES (?, ?, ?)",
                (follower, followee, self.clock.now()),
            )

    def unfollow(self, follower: int, followee: int) -> None:
        """Remove a follow; NotFollowing if there was none."""
        with self.lock:
            self.user(follower)
            self.user(followee)
            cur = self.conn.execute("DELETE FROM follows WHERE follower = ? AND followee = ?", (follower, followee))
            if cur.rowcount == 0:
                raise NotFollowing(f"user {follower} does not follow user {followee}")

    def is_following(self, follower: int, followee: int) -> bool:
        """Whether the follow exists."""
        with self.lock:
            return (
                self.conn.execute(
                    "SELECT 1 FROM follows WHERE follower = ? AND followee = ?", (follower, followee)
                ).fetchone()
                is not None
            )

    def followers(self, user_id: int) -> list[int]:
        """Ids of the users following ``user_id``, ascending."""
        with self.lock:
            rows = self.conn.execute("SELECT follower FROM follows WHERE followee = ? ORDER BY follower", (user_id,))
            return [r["follower"] for r in rows.fetchall()]

    def followees(self, user_id: int) -> list[int]:
        """Ids of the users ``user_id`` follows, ascending."""
        with self.lock:
            rows = self.conn.execute("SELECT followee FROM follows WHERE follower = ? ORDER BY followee", (user_id,))
            return [r["followee"] for r in rows.fetchall()]

    def follower_count(self, user_id: int) -> int:
        """How many users follow ``user_id``."""
        return self.follower_counts([user_id])[user_id]

    def follower_counts(self, user_ids: Iterable[int]) -> dict[int, int]:
        """``{id: follower count}`` for every given id (0 for users nobody follows)."""
        ids = sorted(set(user_ids))
        counts = dict.fromkeys(ids, 0)
        if ids:
            with self.lock:
                rows = self.conn.execute(
                    f"SELECT followee, COUNT(*) AS n FROM follows WHERE followee IN ({','.join('?' * len(ids))}) "
                    "GROUP BY followee",
                    ids,
                ).fetchall()
            counts.update({r["followee"]: r["n"] for r in rows})
        return counts

    # --- posts -------------------------------------------------------------------------------

    def add_post(self, author: int, text: object) -> dict:
        """Store a post stamped with the clock's time; returns ``{"id", "author", "text", "created_at"}``."""
        if not isinstance(text, str) or not text.strip():
            raise EmptyPost("post text must be a non-empty string")
        if len(text) > self.max_post_chars:
            raise PostTooLong(f"post has {len(text)} characters; the limit is {self.max_post_chars}")
        with self.lock:
            self.user(author)
            now = self.clock.now()
            cur = self.conn.execute(
                "INSERT INTO posts (author, text, created_at) VALUES (?, ?, ?)", (author, text, now)
            )
            return {"id": cur.lastrowid, "author": author, "text": text, "created_at": now}

    def posts_by_ids(self, post_ids: Iterable[int]) -> dict[int, dict]:
        """``{id: post row}`` for the given ids that exist."""
        ids = sorted(set(post_ids))
        if not ids:
            return {}
        with self.lock:
            rows = self.conn.execute(f"SELECT * FROM posts WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall()
        return {r["id"]: r for r in rows}

    def post_count(self) -> int:
        """How many posts are stored."""
        with self.lock:
            return self.conn.execute("SELECT COUNT(*) AS n FROM posts").fetchone()["n"]

    def recent_posts(
        self,
        authors: Iterable[int],
        limit: int,
        *,
        before: tuple[float, int] | None = None,
        source: Source = "pull",
    ) -> list[FeedItem]:
        """The newest ``limit`` posts by ``authors``, newest first, strictly older than ``before`` if given."""
        ids = sorted(set(authors))
        if not ids or limit < 1:
            return []
        sql = f"SELECT id, author, created_at FROM posts WHERE author IN ({','.join('?' * len(ids))})"
        params: list = list(ids)
        if before is not None:
            sql += " AND (created_at < ? OR (created_at = ? AND id < ?))"
            params += [before[0], before[0], before[1]]
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(limit)
        with self.lock:
            rows = self.conn.execute(sql, params).fetchall()
        return [FeedItem(r["id"], r["author"], r["created_at"], source) for r in rows]
