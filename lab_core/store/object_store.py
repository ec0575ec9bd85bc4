"""A key -> bytes object store over fsspec: a local folder by default, ``memory://`` in tests, ``s3://`` for real.

The training lab keeps its corpus, tokenizer and token shards here, so the same loader reads a
folder on this machine or a bucket shared by a cluster. Keys are ``/``-separated relative paths.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import fsspec


class MissingObjectError(KeyError):
    """No object under ``key`` in the store at ``url``."""

    def __init__(self, key: str, url: str) -> None:
        super().__init__(key)
        self.key, self.url = key, url

    def __str__(self) -> str:
        return f"object {self.key!r} not found in store {self.url!r}"


def _check_key(key: str) -> str:
    parts = key.split("/") if isinstance(key, str) else []
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"key {key!r}: need a non-empty relative path without '.', '..' or empty parts")
    return key


class ObjectStore:
    """Objects under one root: a local folder (plain path or ``file://``), ``memory://...`` or any fsspec URL.

    ``put`` is atomic on local folders (write a temporary file, then rename), so a reader never
    sees half an object; object stores such as S3 give that guarantee themselves.
    """

    def __init__(self, url: str | Path) -> None:
        text = str(url)
        if not text:
            raise ValueError("url: empty; give a folder path or an fsspec URL such as memory://bucket")
        protocol = text.split("://", 1)[0] if "://" in text else "file"
        if protocol == "file":
            root = Path(text.removeprefix("file://")).expanduser().resolve()
            self._fs = fsspec.filesystem("file")
            self._root = root.as_posix()
            self._local = root
            self._url = root.as_posix()
        else:
            try:
                self._fs, root = fsspec.core.url_to_fs(text)
            except (ImportError, ValueError) as exc:
                raise ValueError(f"url {text!r}: no usable fsspec filesystem ({exc})") from exc
            self._root = root.rstrip("/")
            self._local = None
            self._url = text.rstrip("/")

    @property
    def url(self) -> str:
        """The store's root as a URL (a local store gives its absolute folder)."""
        return self._url

    def _path(self, key: str) -> str:
        return f"{self._root}/{_check_key(key)}"

    def local_path(self, key: str) -> Path | None:
        """The file behind ``key`` when the store is a local folder, else None."""
        return None if self._local is None else self._local / _check_key(key)

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any previous object."""
        path = self._path(key)
        if self._local is None:
            parent = path.rsplit("/", 1)[0]
            self._fs.makedirs(parent, exist_ok=True)
            self._fs.pipe_file(path, bytes(data))
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``MissingObjectError`` (a KeyError) naming key and store when absent."""
        try:
            return self._fs.cat_file(self._path(key))
        except FileNotFoundError:
            raise MissingObjectError(key, self.url) from None

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        return self._fs.isfile(self._path(key))

    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys that start with ``prefix`` (a plain string prefix, not only a folder)."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = f"{self._root}/{folder}" if folder else self._root
        if not self._fs.isdir(base):
            return []
        # Some filesystems return paths with a leading "/" and some without; compare without it.
        root = self._root.lstrip("/") + "/"
        keys = []
        for path in self._fs.find(base):
            key = path.lstrip("/").removeprefix(root)
            name = key.rsplit("/", 1)[-1]
            # A local put's temporary file (".name.XXXX.tmp") is not an object until it is renamed.
            if self._local is not None and name.startswith(".") and name.endswith(".tmp"):
                continue
            if key.startswith(prefix):
                keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove the object under ``key``; ``MissingObjectError`` when there is none."""
        path = self._path(key)
        if not self._fs.isfile(path):
            raise MissingObjectError(key, self.url)
        self._fs.rm_file(path)

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"
