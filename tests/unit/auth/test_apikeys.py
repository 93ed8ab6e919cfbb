"""API keys from a file: the format, digests, and re-reading the file when it changes."""

from __future__ import annotations

import asyncio
import os

import pytest

from kthena_router.auth.apikeys import ApiKeyFile, digest, parse_keys


def test_key_files_name_their_keys_skip_comments_and_number_unnamed_keys():
    keys = parse_keys("# team keys\nalice: sk-alice-1\nsk-anonymous  # inline comment\n\nbob:sk-bob\n")
    assert keys == {digest("sk-alice-1"): "alice", digest("sk-anonymous"): "key-3", digest("sk-bob"): "bob"}


def test_a_key_may_contain_colons_after_its_name_and_a_line_with_spaces_before_the_colon_is_one_key():
    keys = parse_keys("alice: sk:with:colons\nnot a name: sk-x\n")
    assert keys[digest("sk:with:colons")] == "alice"
    assert keys[digest("not a name: sk-x")] == "key-2"


def test_only_digests_are_kept_so_the_keys_are_not_in_memory(tmp_path):
    path = tmp_path / "keys"
    path.write_text("alice: sk-secret-value\n")
    keys = ApiKeyFile(str(path))
    assert keys.lookup(digest("sk-secret-value")) == "alice"
    assert keys.lookup(digest("sk-secret-valu")) is None
    assert all(len(d) == 32 for d in keys.keys) and b"sk-secret-value" not in b"".join(keys.keys)


async def test_a_changed_key_file_is_reread_and_an_unreadable_one_keeps_the_old_keys(tmp_path):
    path = tmp_path / "keys"
    path.write_text("alice: sk-1\n")
    keys = ApiKeyFile(str(path))
    assert not await keys.check()  # unchanged: not read again
    replacement = tmp_path / "keys.new"
    replacement.write_text("bob: sk-2\n")
    os.replace(replacement, path)  # how a mounted Secret changes: a new file under the same name
    assert await keys.check()
    assert keys.lookup(digest("sk-2")) == "bob" and keys.lookup(digest("sk-1")) is None
    path.unlink()
    assert not await keys.check()
    assert keys.lookup(digest("sk-2")) == "bob"
    path.write_bytes(b"\xff\xfe not text")
    assert not await keys.check()
    assert keys.lookup(digest("sk-2")) == "bob"


async def test_the_watch_picks_up_an_added_key_within_its_interval(tmp_path):
    path = tmp_path / "keys"
    path.write_text("alice: sk-1\n")
    keys = ApiKeyFile(str(path), check_interval=0.05)
    watching = asyncio.create_task(keys.watch())
    try:
        path.write_text("alice: sk-1\ncarol: sk-3\n")
        async with asyncio.timeout(5):
            while keys.lookup(digest("sk-3")) is None:
                await asyncio.sleep(0.02)
        assert keys.lookup(digest("sk-1")) == "alice"
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)


def test_a_missing_key_file_is_an_error_at_start(tmp_path):
    with pytest.raises(ValueError, match="cannot read API keys file"):
        ApiKeyFile(str(tmp_path / "nope"))
