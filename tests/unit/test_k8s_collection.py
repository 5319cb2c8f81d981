"""The collection's pure parts: the collector's manifest, its check against what the API recorded, the bounded
read of the statistics, the per-job upload tokens, and the upload's hashing reader."""
from __future__ import annotations

import hashlib
import io
import json

import pytest

from core.collect_tokens import NoTokenKey, job_token, token_key, token_matches
from core.executors.kubernetes.collection import CollectionMismatch, cross_check, parse_manifest, read_bounded
from core.executors.kubernetes.pod_scripts import MANIFEST_PREFIX
from core.services.collect_uploads import IncompleteBody, _Hashing
from core.storage.local import LocalStore

A = hashlib.sha256(b"a").hexdigest()
B = hashlib.sha256(b"b").hexdigest()


def manifest_line(files, **extra) -> str:
    return MANIFEST_PREFIX + json.dumps({"files": files, "skipped": [], "skipped_count": 0, **extra})


def test_the_manifest_is_the_last_manifest_line_outputs_first():
    text = "a warning\n" + manifest_line([["x", 1, B]]) + "\n" + manifest_line(
        [["sumo.log", 1, A], ["sumo-statistics.xml", 1, B], ["out/a.xml", 1, A]], max_rss_kib=1234) + "\n"
    got = parse_manifest(text)
    assert [f["name"] for f in got["files"]] == ["out/a.xml", "sumo-statistics.xml", "sumo.log"]
    assert got["files"][0] == {"name": "out/a.xml", "size": 1, "sha256": A} and got["max_rss_kib"] == 1234


@pytest.mark.parametrize("text", [
    "",                                                    # no manifest at all (e.g. an older collector's log)
    "collector: the upload of x was refused: 403\n",
    MANIFEST_PREFIX + '{"files": [["a", 1]]}',             # truncated entry
    MANIFEST_PREFIX + '{"files": [["a", 1, "',            # a line cut short
])
def test_a_missing_or_unreadable_manifest_is_a_mismatch(text):
    with pytest.raises(CollectionMismatch):
        parse_manifest(text)


@pytest.mark.parametrize("entry", [["../x", 1, A], ["/etc/passwd", 1, A], ["a\\b", 1, A], ["dir/", 1, A],
                                   ["a", -1, A], ["a", 1, "nothex"]])
def test_a_manifest_naming_anything_but_a_plain_file_is_refused(entry):
    with pytest.raises(CollectionMismatch):
        parse_manifest(manifest_line([entry]))


def test_the_cross_check_wants_every_file_recorded_with_the_same_size_and_digest():
    files = [{"name": "a", "size": 1, "sha256": A}, {"name": "b", "size": 1, "sha256": B}]
    recorded = {"a": {"size": 1, "sha256": A}, "b": {"size": 1, "sha256": B}, "older": {"size": 3, "sha256": A}}
    assert cross_check(files, recorded) == files  # what the API got beyond the manifest is not a result
    with pytest.raises(CollectionMismatch, match="recorded no upload"):
        cross_check(files, {"a": recorded["a"]})
    with pytest.raises(CollectionMismatch, match="the API received 2 bytes"):
        cross_check(files, {**recorded, "b": {"size": 2, "sha256": B}})
    with pytest.raises(CollectionMismatch, match="sha256"):
        cross_check(files, {**recorded, "b": {"size": 1, "sha256": A}})


def test_statistics_are_read_back_bounded(tmp_path):
    store = LocalStore(tmp_path)
    store.put_bytes("r/stats.xml", b"<statistics/>")
    store.put_bytes("r/huge.xml", b"x" * 5000)
    assert read_bounded(store, "r/stats.xml", 100) == b"<statistics/>"
    assert read_bounded(store, "r/huge.xml", 100) is None
    with pytest.raises(CollectionMismatch, match="not in the result store"):
        read_bounded(store, "r/missing.xml", 100)


def test_a_token_names_one_job_under_one_key():
    key = token_key("", "admin-key")
    token = job_token(key, "job-1")
    assert len(token) == 64 and token_matches(key, "job-1", token)
    assert not token_matches(key, "job-2", token)                            # another job's token
    assert not token_matches(token_key("", "another-admin-key"), "job-1", token)
    assert not token_matches(key, "job-1", token[:-1] + "0") and not token_matches(key, "job-1", "")
    assert token_key("own-secret", "admin-key") == b"own-secret" != key      # COLLECT_TOKEN_SECRET wins
    assert "admin-key" not in token and b"admin-key" not in key              # derived: ADMIN_KEY is not in it
    with pytest.raises(NoTokenKey):
        token_key("", "")


class Trickle(io.RawIOBase):
    """A request body that comes in small reads."""

    def __init__(self, data: bytes, step: int = 3):
        self.data, self.step = data, step

    def read(self, size=-1):
        n = min(self.step, size) if size >= 0 else self.step
        out, self.data = self.data[:n], self.data[n:]
        return out


def test_the_upload_reader_fills_each_read_and_hashes_what_it_gave():
    reader = _Hashing(Trickle(b"0123456789" * 10), 100, "f")
    assert reader.read(40) == (b"0123456789" * 4)  # whole reads, as a store's multipart upload expects
    assert reader.read() == (b"0123456789" * 6)
    assert reader.read(10) == b""
    assert reader.finish() == hashlib.sha256(b"0123456789" * 10).hexdigest()


def test_a_body_shorter_than_its_length_is_refused():
    reader = _Hashing(Trickle(b"short"), 100, "f")
    with pytest.raises(IncompleteBody, match="95 bytes before its Content-Length"):
        reader.read(100)
