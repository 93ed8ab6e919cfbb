"""API keys from a file: one key per line, or `name: key` to name whom it belongs to; `#` starts a comment.

Keys are kept as SHA-256 digests in a dict (digest -> principal name), so a lookup is one hash and one dict
probe: its timing does not depend on how much of a guess matches, and the keys themselves are not held in
memory. `Authenticator` hashes the presented key once and asks each key store with the digest.

The file is checked in the background at most once a second (its mtime, size and inode: a Kubernetes Secret
mounted as a volume changes by a symlink swap) and re-read when it changed, off the event loop. The request
path never touches the file system. A file that cannot be read at start is an error; later it keeps the
keys loaded before, with a warning.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def parse_keys(text: str) -> dict[bytes, str]:
    """digest -> principal name. A key without a name is named by its line (`key-3`)."""
    keys: dict[bytes, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, key = line.partition(":")
        if sep and key.strip() and name.strip() and " " not in name.strip():
            name, key = name.strip(), key.strip()
        else:
            name, key = f"key-{number}", line
        keys[digest(key)] = name
    return keys


class ApiKeyFile:
    """The keys of one file, kept current by `watch()`."""

    def __init__(self, path: str, *, check_interval: float = CHECK_INTERVAL) -> None:
        self.path = path
        self.check_interval = check_interval
        self.keys: dict[bytes, str] = {}
        self._stamp: tuple[int, int, int] | None = None
        changed = self._read_if_changed()
        if isinstance(changed, str):
            raise ValueError(f"cannot read API keys file {path}: {changed}")
        self._apply(changed)

    def lookup(self, key_digest: bytes) -> str | None:
        """The principal name of the key with this digest, or None."""
        return self.keys.get(key_digest)

    async def check(self) -> bool:
        """Re-read the file if it changed (in a thread); True when the keys were replaced."""
        changed = await asyncio.to_thread(self._read_if_changed)
        if isinstance(changed, str):
            log.warning("cannot read API keys file %s (%s); keeping the %d keys loaded before",
                        self.path, changed, len(self.keys))
            return False
        if changed is None:
            return False
        self._apply(changed)
        log.info("API keys file %s changed: %d keys", self.path, len(self.keys))
        return True

    async def watch(self) -> None:
        """Check the file every `check_interval` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.check_interval)
            await self.check()

    def _apply(self, changed: tuple[tuple[int, int, int], dict[bytes, str]] | None) -> None:
        if changed is not None:
            self._stamp, self.keys = changed

    def _read_if_changed(self) -> tuple[tuple[int, int, int], dict[bytes, str]] | str | None:
        """(stamp, keys) when the file changed, None when not, or why it cannot be read."""
        try:
            info = os.stat(self.path)
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
            if stamp == self._stamp:
                return None
            with open(self.path, encoding="utf-8") as handle:
                return stamp, parse_keys(handle.read())
        except OSError as exc:
            return exc.strerror or str(exc)
        except UnicodeDecodeError:
            return "not UTF-8 text"
