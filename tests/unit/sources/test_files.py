import logging
import os
import time

import pytest

from kthena_router.api.meta import ObjectRef
from kthena_router.sources.files import FileSource

POOL = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: {name}, namespace: ns}}
spec:
  selector: {{matchLabels: {{app: m}}}}
  targetPorts: [{{number: {port}}}]
"""


def _write(path, text):
    path.write_text(text)
    # Make sure a rewrite within the same clock tick still looks changed.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_every_yaml_file_and_document_is_read(tmp_path):
    _write(tmp_path / "a.yaml", POOL.format(name="a", port=8000) + "---\n" + POOL.format(name="b", port=8001))
    _write(tmp_path / "c.yml", POOL.format(name="c", port=8002))
    _write(tmp_path / "ignored.txt", POOL.format(name="d", port=8003))
    result = FileSource(tmp_path).reload()
    assert sorted(r.name for r in result.resources.pools) == ["a", "b", "c"]
    assert result.errors == ()


def test_unknown_kinds_are_skipped_and_logged(tmp_path, caplog):
    _write(tmp_path / "a.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n---\n"
           + POOL.format(name="a", port=8000))
    with caplog.at_level(logging.INFO):
        result = FileSource(tmp_path).reload()
    assert list(result.resources.pools) == [ObjectRef("ns", "a")]
    assert "unsupported kind apps/v1 Deployment" in caplog.text


def test_an_invalid_object_is_reported_with_file_kind_name_and_field_and_the_rest_load(tmp_path, caplog):
    _write(tmp_path / "a.yaml", POOL.format(name="bad", port=99999) + "---\n" + POOL.format(name="ok", port=8000))
    with caplog.at_level(logging.ERROR):
        result = FileSource(tmp_path).reload()
    assert list(result.resources.pools) == [ObjectRef("ns", "ok")]
    (error,) = result.errors
    assert "a.yaml" in error and "InferencePool ns/bad" in error and "spec.targetPorts[0].number" in error
    assert "InferencePool ns/bad" in caplog.text


def test_a_broken_edit_keeps_the_last_valid_version_of_that_object(tmp_path):
    source = FileSource(tmp_path)
    path = tmp_path / "a.yaml"
    _write(path, POOL.format(name="a", port=8000) + "---\n" + POOL.format(name="b", port=8001))
    source.reload()
    _write(path, POOL.format(name="a", port=0) + "---\n" + POOL.format(name="b", port=9001))
    result = source.reload()
    assert result.changed
    assert result.resources.pools[ObjectRef("ns", "a")].target_ports == (8000,)
    assert result.resources.pools[ObjectRef("ns", "b")].target_ports == (9001,)
    assert "keeping the last valid version" in result.errors[0]


def test_a_file_that_is_no_longer_yaml_keeps_all_its_objects(tmp_path):
    source = FileSource(tmp_path)
    path = tmp_path / "a.yaml"
    _write(path, POOL.format(name="a", port=8000))
    source.reload()
    _write(path, "spec: [unclosed")
    result = source.reload()
    assert list(result.resources.pools) == [ObjectRef("ns", "a")]
    assert "cannot read as YAML" in result.errors[0]


def test_removing_a_file_removes_its_objects_and_unchanged_files_are_not_reparsed(tmp_path):
    source = FileSource(tmp_path)
    _write(tmp_path / "a.yaml", POOL.format(name="a", port=8000))
    _write(tmp_path / "b.yaml", POOL.format(name="b", port=8000))
    source.reload()
    assert not source.reload().changed
    (tmp_path / "b.yaml").unlink()
    result = source.reload()
    assert result.changed and list(result.resources.pools) == [ObjectRef("ns", "a")]


def test_disabled_apis_drop_their_kinds(tmp_path):
    _write(tmp_path / "a.yaml", POOL.format(name="a", port=8000))
    assert FileSource(tmp_path, enable_inference_extension=False).reload().resources.pools == {}


def test_a_missing_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        FileSource(tmp_path / "nope").reload()


async def test_watch_reports_a_change_within_a_second(tmp_path):
    import asyncio

    source = FileSource(tmp_path, interval=0.05)
    source.reload()
    seen = asyncio.Event()

    async def on_change(resources):
        if resources.pools:
            seen.set()

    task = asyncio.create_task(source.watch(on_change))
    try:
        start = time.monotonic()
        _write(tmp_path / "a.yaml", POOL.format(name="a", port=8000))
        await asyncio.wait_for(seen.wait(), 1.0)
        assert time.monotonic() - start < 1.0
    finally:
        task.cancel()
