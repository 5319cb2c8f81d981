"""One contract, every backend: local, pvc, and S3/GCS/Azure against real emulators.

Every comparison is exact (bytes, keys, sizes), so a backend that truncates,
re-orders, mis-ranges or leaks across prefixes fails here.
"""
from __future__ import annotations

import hashlib
import io
import random
import socket
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from core.storage.base import CHUNK_SIZE, ObjectInfo, ObjectNotFound, StoreUnavailable, check_key
from core.storage.factory import build_store
from core.storage.local import LocalStore
from devstack import emulators

REPO = Path(__file__).resolve().parents[2]
BACKENDS = ["local", "pvc", "s3", "gcs", "azure"]

MiB = 1024 * 1024
#: Larger than several chunks, and not a multiple of any chunk size used.
DATA = random.Random(20240611).randbytes(3 * MiB + 12_345)

#: What ``kind`` each backend reports, and whether it must offer direct URLs.
EXPECTED_KIND = {"local": "local", "pvc": "pvc", "s3": "s3", "gcs": "gcs", "azure": "azure"}
#: GCS against the emulator has anonymous credentials, which cannot sign: None.
PRESIGNS = {"local": False, "pvc": False, "s3": True, "gcs": False, "azure": True}

backends = pytest.mark.parametrize("store_settings", BACKENDS, indirect=True)


class OneWayStream(io.RawIOBase):
    """A non-seekable stream that hands out data in small, uneven reads,
    like a request body being streamed in."""

    def __init__(self, data: bytes, max_read: int = 70_001) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._max = max_read

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), self._max, len(self._data) - self._pos)
        buf[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def _backend(store_settings: Settings) -> str:
    return store_settings.result_storage_type


# -- round trips ------------------------------------------------------------------
@backends
def test_kind(store, store_settings):
    assert store.kind == EXPECTED_KIND[_backend(store_settings)]


@backends
def test_put_bytes_round_trip(store):
    key = "results/acme/job-1/tripinfos.xml"
    store.put_bytes(key, DATA)
    assert store.size(key) == len(DATA)
    assert store.exists(key)
    got = store.get_bytes(key)
    assert len(got) == len(DATA)
    assert got == DATA


@backends
def test_put_file_round_trip_and_download_file(store, tmp_path):
    src = tmp_path / "upload.bin"
    src.write_bytes(DATA)
    key = "inputs/acme/job-1.zip"
    store.put_file(key, src)
    assert store.size(key) == len(DATA)
    dest = tmp_path / "down" / "deep" / "copy.bin"
    store.download_file(key, dest)
    assert dest.read_bytes() == DATA
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.bin"]  # no .part left


@backends
def test_put_stream_from_non_seekable_stream(store):
    key = "logs/acme/job-1/sumo.log"
    store.put_stream(key, io.BufferedReader(OneWayStream(DATA)))
    assert store.size(key) == len(DATA)
    assert store.get_bytes(key) == DATA


@backends
def test_put_stream_from_bytesio(store):
    key = "logs/acme/job-2/sumo.log"
    store.put_stream(key, io.BytesIO(DATA[:CHUNK_SIZE + 1]))
    assert store.get_bytes(key) == DATA[: CHUNK_SIZE + 1]


@backends
def test_overwrite_replaces_whole_object(store):
    key = "results/acme/job-1/summary.xml"
    store.put_bytes(key, DATA)
    store.put_bytes(key, b"short")
    assert store.size(key) == 5
    assert store.get_bytes(key) == b"short"


@backends
def test_empty_object(store):
    key = "results/acme/job-1/empty.txt"
    store.put_bytes(key, b"")
    assert store.exists(key)
    assert store.size(key) == 0
    assert store.get_bytes(key) == b""
    assert store.list("results/acme/job-1/") == [ObjectInfo(key=key, size=0)]


# -- iter_bytes -----------------------------------------------------------------
@backends
def test_iter_bytes_respects_chunk_size(store):
    key = "results/acme/job-1/big.bin"
    store.put_bytes(key, DATA)
    chunk_size = 256 * 1024
    chunks = list(store.iter_bytes(key, chunk_size=chunk_size))
    assert b"".join(chunks) == DATA
    assert all(0 < len(c) <= chunk_size for c in chunks)
    assert len(chunks) >= len(DATA) // chunk_size


@backends
@pytest.mark.parametrize(
    "start",
    [0, 1, 1000, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 7, len(DATA) - 1, len(DATA), len(DATA) + 10],
)
def test_iter_bytes_from_offset(store, start):
    key = "results/acme/job-1/big.bin"
    store.put_bytes(key, DATA)
    got = b"".join(store.iter_bytes(key, chunk_size=300_000, start=start))
    assert len(got) == max(len(DATA) - start, 0)
    assert got == DATA[start:]


# -- read_range --------------------------------------------------------------------
@backends
@pytest.mark.parametrize(
    "start,length",
    [(0, 1), (0, 65_536), (1, 10), (CHUNK_SIZE - 3, 7), (len(DATA) - 5, 5), (len(DATA) - 5, 100),
     (len(DATA) - 1, 1), (len(DATA), 10), (len(DATA) + 10, 10), (1000, 0), (0, len(DATA) + 1)],
)
def test_read_range(store, start, length):
    """One ranged read: exactly the bytes asked for, cut at the object's end, b"" past it."""
    key = "results/acme/job-1/sumo.log"
    store.put_bytes(key, DATA)
    got = store.read_range(key, start, length)
    assert len(got) == len(DATA[start:start + length])
    assert got == DATA[start:start + length]


@backends
def test_read_range_of_an_empty_object_and_a_missing_one(store):
    store.put_bytes("results/acme/job-1/empty.log", b"")
    assert store.read_range("results/acme/job-1/empty.log", 0, 100) == b""
    for start, length in ((0, 100), (5, 1), (0, 0)):
        with pytest.raises(ObjectNotFound):
            store.read_range("results/acme/job-1/absent.log", start, length)


@backends
def test_read_range_from_the_end_of_a_large_object(store):
    """What a tail read does: a few small ranges from the end of an object far larger than any of them."""
    key = "results/acme/job-1/big.log"
    store.put_stream(key, io.BufferedReader(OneWayStream(DATA)))
    size = store.size(key)
    pieces = [store.read_range(key, size - n * 4096, 4096) for n in range(3, 0, -1)]
    assert b"".join(pieces) == DATA[-3 * 4096:]


# -- missing keys -----------------------------------------------------------------
@backends
def test_missing_key(store, tmp_path):
    store.put_bytes("results/acme/job-1/present.xml", b"x")
    missing = "results/acme/job-1/absent.xml"
    with pytest.raises(ObjectNotFound):
        store.size(missing)
    # Raised when asked, not on first iteration, so the API can answer 404
    # before it starts a streaming response.
    with pytest.raises(ObjectNotFound):
        store.iter_bytes(missing)
    with pytest.raises(ObjectNotFound):
        store.iter_bytes(missing, start=5)
    with pytest.raises(ObjectNotFound):
        store.get_bytes(missing)
    assert not store.exists(missing)
    # A "directory" is not an object.
    with pytest.raises(ObjectNotFound):
        store.size("results/acme/job-1")
    dest = tmp_path / "out.bin"
    with pytest.raises(ObjectNotFound):
        store.download_file(missing, dest)
    assert not dest.exists()


# -- list / delete_prefix ---------------------------------------------------------
LAYOUT = {
    "inputs/acme/job-1.zip": 11,
    "results/acme/job-1/b.xml": 3,
    "results/acme/job-1/a.xml": 1,
    "results/acme/job-1/sub/deeper/c.xml": 7,
    "results/acme/job-10/a.xml": 5,
    "results/other/job-1/a.xml": 2,
    "results/acme/job-1.log": 4,
}


def _populate(store) -> None:
    for key, size in LAYOUT.items():
        store.put_bytes(key, bytes([size]) * size)


def _expected(prefix: str) -> list[ObjectInfo]:
    return [ObjectInfo(key=k, size=s) for k, s in sorted(LAYOUT.items()) if k.startswith(prefix)]


@backends
def test_list_with_prefix(store):
    _populate(store)
    assert store.list("results/acme/job-1/") == [
        ObjectInfo("results/acme/job-1/a.xml", 1),
        ObjectInfo("results/acme/job-1/b.xml", 3),
        ObjectInfo("results/acme/job-1/sub/deeper/c.xml", 7),
    ]
    assert store.list("results/acme/") == _expected("results/acme/")
    assert store.list("results/") == _expected("results/")
    assert store.list("inputs/") == [ObjectInfo("inputs/acme/job-1.zip", 11)]
    assert store.list("") == _expected("")
    assert store.list("nothing/") == []
    assert store.list("results/acme/job-1/sub/deeper/c.xml") == [ObjectInfo("results/acme/job-1/sub/deeper/c.xml", 7)]


@backends
def test_list_prefix_is_a_plain_string_prefix(store, store_settings, request):
    """base.py: "Every object whose key starts with prefix" — also without a trailing slash."""
    _populate(store)
    assert store.list("results/acme/job-1") == _expected("results/acme/job-1")
    assert store.list("results/acme/job-1") != _expected("results/acme/job-1/")


@backends
def test_delete_prefix(store):
    _populate(store)
    store.delete_prefix("results/acme/job-1/")
    remaining = {k: s for k, s in LAYOUT.items() if not k.startswith("results/acme/job-1/")}
    assert store.list("") == [ObjectInfo(k, s) for k, s in sorted(remaining.items())]
    assert not store.exists("results/acme/job-1/a.xml")
    with pytest.raises(ObjectNotFound):
        store.size("results/acme/job-1/sub/deeper/c.xml")
    # Neighbours sharing the string prefix survive intact.
    assert store.get_bytes("results/acme/job-10/a.xml") == bytes([5]) * 5
    assert store.get_bytes("results/acme/job-1.log") == bytes([4]) * 4
    # Deleting what is not there is fine, and deleting twice too.
    store.delete_prefix("results/acme/job-1/")
    store.delete_prefix("nothing/here/")
    store.delete_prefix("results/")
    assert store.list("") == [ObjectInfo("inputs/acme/job-1.zip", 11)]


# -- key validation --------------------------------------------------------------------
BAD_KEYS = ["../x", "/abs", "a/../../b", "a//b", "./a", "a/", "", "a\\b", "a\x00b"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_check_key_rejects(key):
    with pytest.raises(ValueError):
        check_key(key)


@pytest.mark.parametrize("key", ["a", "results/acme/job-1/tripinfos.xml", "x/.hidden", "a/b..c", "ü/space d+e"])
def test_check_key_accepts(key):
    assert check_key(key) == key


@backends
@pytest.mark.parametrize("key", ["../x", "/abs", "a/../../escape"])
def test_backends_refuse_unsafe_keys(store, tmp_path, key):
    src = tmp_path / "f.bin"
    src.write_bytes(b"data")
    with pytest.raises(ValueError):
        store.put_bytes(key, b"data")
    with pytest.raises(ValueError):
        store.put_file(key, src)
    with pytest.raises(ValueError):
        store.put_stream(key, io.BytesIO(b"data"))
    with pytest.raises(ValueError):
        store.size(key)
    with pytest.raises(ValueError):
        store.iter_bytes(key)
    with pytest.raises(ValueError):
        store.read_range(key, 0, 10)
    assert store.list("") == []
    assert not (tmp_path / "x").exists()
    assert not (tmp_path.parent / "escape").exists()


# -- odd but valid key names --------------------------------------------------------------
ODD_KEY = "results/acme/job 1/tripinfos ü+%20&=?#.xml"


@backends
def test_odd_key_names_round_trip(store):
    store.put_bytes(ODD_KEY, DATA[:1000])
    assert store.size(ODD_KEY) == 1000
    assert store.get_bytes(ODD_KEY) == DATA[:1000]
    assert store.list("results/acme/job 1/") == [ObjectInfo(ODD_KEY, 1000)]


# -- presigned URLs -------------------------------------------------------------------------
@backends
@pytest.mark.parametrize("key", ["results/acme/job-1/tripinfos.xml", ODD_KEY])
def test_presigned_url_downloads_the_object(store, store_settings, key):
    store.put_bytes(key, DATA)
    url = store.presigned_url(key, expires_seconds=300)
    if not PRESIGNS[_backend(store_settings)]:
        assert url is None
        return
    assert isinstance(url, str) and url.startswith("http://127.0.0.1:")
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text[:500]
    assert len(response.content) == len(DATA)
    assert response.content == DATA


# -- factory ------------------------------------------------------------------------------
def test_factory_local_and_pvc_roots(tmp_path):
    local = build_store(Settings(result_storage_type="local", data_dir=tmp_path / "data"))
    assert isinstance(local, LocalStore) and local.kind == "local"
    assert local.root == tmp_path / "data" / "storage"
    pvc = build_store(Settings(result_storage_type="pvc", result_storage_path=tmp_path / "pvc"))
    assert isinstance(pvc, LocalStore) and pvc.kind == "pvc"
    assert pvc.root == tmp_path / "pvc"


def test_factory_does_not_import_cloud_sdks_for_local(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from core.settings import Settings
        from core.storage.factory import build_store
        build_store(Settings(result_storage_type="local", data_dir={str(tmp_path)!r}))
        heavy = [m for m in ("boto3", "botocore", "google.cloud.storage", "azure.storage.blob") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr


# -- multi-part transfers ---------------------------------------------------------------------
BIG = random.Random(7).randbytes(21 * MiB + 333)


@backends
def test_large_object_uses_multi_part_paths(store, tmp_path):
    """Above S3's multipart threshold, several GCS resumable chunks and ranged
    reads, and several Azure blocks: every part must land in order."""
    key = "results/acme/job-1/big-stream.bin"
    store.put_stream(key, io.BufferedReader(OneWayStream(BIG, max_read=1_000_003)))
    assert store.size(key) == len(BIG)
    assert store.get_bytes(key) == BIG
    start = 9 * MiB + 5
    assert b"".join(store.iter_bytes(key, start=start)) == BIG[start:]
    src = tmp_path / "big.bin"
    src.write_bytes(BIG)
    store.put_file("inputs/acme/big.zip", src)
    assert store.get_bytes("inputs/acme/big.zip") == BIG


@backends
def test_iter_bytes_streams_a_large_object(store):
    """A download (iter_bytes without a range) holds about one chunk at a time, not the object: the
    Python memory allocated while reading a 64 MiB object stays a fraction of it on every backend."""
    import tracemalloc

    key = "results/acme/job-1/large.bin"
    size = 64 * MiB
    store.put_stream(key, io.BufferedReader(OneWayStream(BIG * 3 + BIG[:size - 3 * len(BIG)], max_read=4 * MiB)))
    store.put_bytes("results/acme/job-1/small.bin", b"x" * 100)
    store.get_bytes("results/acme/job-1/small.bin")  # what a first download imports or sets up is not measured
    digest, total = hashlib.sha256(), 0
    tracemalloc.start()
    try:
        for chunk in store.iter_bytes(key):
            assert len(chunk) <= CHUNK_SIZE
            digest.update(chunk)
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert digest.hexdigest() == hashlib.sha256(BIG * 3 + BIG[:size - 3 * len(BIG)]).hexdigest()
    print(f"\n{store.kind}: {peak / MiB:.1f} MiB allocated at most while streaming {size / MiB:.0f} MiB")
    assert peak < 24 * MiB, f"{peak / MiB:.1f} MiB allocated while streaming {size / MiB:.0f} MiB"


# -- prefixes never reach outside the store ------------------------------------------------------
@backends
def test_prefixes_cannot_escape_the_store(store, store_settings, tmp_path, request):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_bytes(b"keep me")
    store.put_bytes("results/a.txt", b"a")
    for prefix in ("../", "../outside", "/"):
        try:
            assert store.list(prefix) == []
        except ValueError:
            pass
        try:
            store.delete_prefix(prefix)
        except ValueError:
            pass
    assert (outside / "f.txt").read_bytes() == b"keep me"
    assert store.list("") == [ObjectInfo("results/a.txt", 1)]


# -- a cloud store that cannot be reached ------------------------------------------------------------
#: How each cloud backend names itself in StoreUnavailable (the API's 503 detail).
STORE_NAMES = {"s3": "S3", "gcs": "GCS", "azure": "Azure Blob"}
#: Far above every backend's budget (its module docstring), far below google-cloud-storage's default 120 s.
UNREACHABLE_BOUND_SECONDS = 60


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that refuses connections: bound, never listening, held until the test ends."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _pointed_at(settings: Settings, port: int) -> Settings:
    url = f"http://127.0.0.1:{port}"
    return settings.model_copy(update={
        "s3_endpoint_url": url,
        "gcs_endpoint_url": url,
        "azure_connection_string": emulators.azurite_connection_string(port),
    })


@pytest.mark.parametrize("store_settings", list(STORE_NAMES), indirect=True)
def test_unreachable_store_raises_store_unavailable_in_bounded_time(store_settings, closed_port, tmp_path):
    """Every call raises StoreUnavailable naming the store, within a bound: in a process that never reached
    the store (the bucket check fails first), and in one that did before the store went away (each
    call's own request fails)."""
    settings = _pointed_at(store_settings, closed_port)
    fresh = build_store(settings)
    known = build_store(settings)
    known._ready = True  # as if its bucket had been checked before the store went away
    key = "results/acme/job-1/tripinfos.xml"
    src = tmp_path / "tripinfos.xml"
    src.write_bytes(b"<tripinfos/>")
    calls = {
        "put_bytes (first call)": lambda: fresh.put_bytes(key, b"data"),
        "put_bytes": lambda: known.put_bytes(key, b"data"),
        "put_file": lambda: known.put_file(key, src),
        "get_bytes": lambda: known.get_bytes(key),
        "exists": lambda: known.exists(key),
        "list": lambda: known.list("results/acme/"),
        "size": lambda: known.size(key),
        "iter_bytes": lambda: known.iter_bytes(key),  # raises when asked, before any iteration
        "read_range": lambda: known.read_range(key, 100, 4096),
        "delete_prefix": lambda: known.delete_prefix("results/acme/job-1/"),
    }

    def attempt(call):
        started = time.monotonic()
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - checked below, by the main thread
            return exc, time.monotonic() - started
        return None, time.monotonic() - started

    # Concurrently: each call waits out its own retries, so one test does not take the sum of them.
    with ThreadPoolExecutor(len(calls)) as pool:
        outcomes = dict(zip(calls, pool.map(attempt, calls.values())))
    backend = _backend(store_settings)
    print(f"\n{backend} against a closed port: " + ", ".join(f"{name} {s:.1f} s" for name, (_, s) in outcomes.items()))
    for name, (exc, seconds) in outcomes.items():
        assert isinstance(exc, StoreUnavailable), f"{name}: {exc!r}"
        assert f"the {STORE_NAMES[backend]} result store cannot be reached" in str(exc), f"{name}: {exc}"
        assert seconds < UNREACHABLE_BOUND_SECONDS, f"{name} took {seconds:.1f} s"
