"""API keys from a file: one key per line, or `name: key` to name whom it belongs to; `#` starts a comment.

Keys are kept as SHA-256 digests in a dict, so a lookup is one hash and one dict probe (timing does not
depend on how much of a guess matches) and the keys themselves are not held in memory. The file is checked
for changes at most once a second (its mtime and inode: a Kubernetes Secret mounted as a volume is
replaced by a symlink swap), and re-read when it changed; a file that cannot be read keeps the last keys.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time

log = logging.getLogger(__name__)

_CHECK_EVERY = 1.0


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_keys(text: str) -> dict[bytes, str]:
    """digest -> principal name. A key without a name is named by its position (`key-3`)."""
    keys: dict[bytes, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, key = line.partition(":")
        if sep and key.strip() and " " not in name.strip():
            name, key = name.strip(), key.strip()
        else:
            name, key = f"key-{number}", line
        keys[digest(key)] = name
    return keys


class ApiKeyFile:
    def __init__(self, path: str, *, clock=time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self.keys: dict[bytes, str] = {}
        self._stamp: tuple[int, int] | None = None
        self._next_check = 0.0
        self.reload(force=True)

    def reload(self, *, force: bool = False) -> None:
        try:
            info = os.stat(self.path)
        except OSError as exc:
            if force:
                raise ValueError(f"cannot read API keys file {self.path}: {exc.strerror}") from None
            log.warning("cannot read API keys file %s (%s); keeping the %d keys loaded before",
                        self.path, exc.strerror, len(self.keys))
            return
        stamp = (info.st_mtime_ns, info.st_ino)
        if stamp == self._stamp and not force:
            return
        try:
            with open(self.path, encoding="utf-8") as handle:
                keys = parse_keys(handle.read())
        except (OSError, UnicodeDecodeError) as exc:
            if force:
                raise ValueError(f"cannot read API keys file {self.path}: {exc}") from None
            log.warning("cannot read API keys file %s (%s); keeping the keys loaded before", self.path, exc)
            return
        self._stamp = stamp
        if not force:
            log.info("API keys file %s changed: %d keys", self.path, len(keys))
        self.keys = keys

    def lookup(self, key: str) -> str | None:
        """The principal name for `key`, or None."""
        now = self.clock()
        if now >= self._next_check:
            self._next_check = now + _CHECK_EVERY
            self.reload()
        return self.keys.get(digest(key))
