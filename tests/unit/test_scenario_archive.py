"""ZIP-level rules of core.scenario: validity, entry names, bombs, layout, extraction."""

from __future__ import annotations

import os
import pathlib
import zipfile

import pytest

from core.scenario import ArchiveLimits, ScenarioError, extract_scenario, inspect_archive

from tests.unit.scenario_archives import (
    BOLOGNA_ZIP,
    NET,
    ROUTES,
    SQUARE_ZIP,
    basic_config,
    encrypted_zip,
    folder_scenario_with_junk,
    lying_header_zip,
    make_zip,
    overlapping_zip,
    scenario_zip,
    symlink_zip,
    zeros_zip,
)

LIMITS = ArchiveLimits(max_uncompressed_bytes=256 << 20, max_entries=1000, max_ratio=100)


def refused(path: pathlib.Path, config_file: str | None = None,
            limits: ArchiveLimits = LIMITS) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        inspect_archive(path, config_file, limits)
    return info.value


# ----------------------------------------------------------------- real scenarios


def test_square_accepted():
    s = inspect_archive(SQUARE_ZIP, None, LIMITS)
    assert s.root == ""
    assert s.config_file == "square.sumocfg"
    assert s.files == ("square.net.xml", "square.rou.xml", "square.sumocfg")
    assert s.outputs == () and s.log_file is None
    with zipfile.ZipFile(SQUARE_ZIP) as zf:
        assert s.uncompressed_size == sum(i.file_size for i in zf.infolist())


def test_bologna_accepted():
    s = inspect_archive(BOLOGNA_ZIP, None, LIMITS)
    assert s.config_file == "run.sumocfg"
    assert "tripinfos.xml" in s.outputs
    assert s.log_file == "sumo_log.txt"
    assert "sumo_log.txt" not in s.outputs
    assert "acosta.rou.xml" in s.files and "settings.gui.xml" in s.files
    assert list(s.files) == sorted(s.files)


# ----------------------------------------------------------------- not a zip / empty


def test_not_a_zip(tmp_path):
    p = tmp_path / "upload.zip"
    p.write_bytes(b"this is a tarball, honest")
    err = refused(p)
    assert err.status_code == 400
    assert "is not a valid ZIP archive" in err.message


def test_truncated_zip(tmp_path):
    data = SQUARE_ZIP.read_bytes()
    p = tmp_path / "upload.zip"
    p.write_bytes(data[: len(data) // 2])
    err = refused(p)
    assert err.status_code == 400
    assert "is not a valid ZIP archive" in err.message


def test_empty_zip(tmp_path):
    p = make_zip(tmp_path, {})
    err = refused(p)
    assert err.status_code == 422
    assert "empty" in err.message


def test_only_junk(tmp_path):
    p = make_zip(tmp_path, {"__MACOSX/._run.sumocfg": "x", ".DS_Store": "x", "dir/": ""})
    err = refused(p)
    assert err.status_code == 422
    assert "no files" in err.message


# ----------------------------------------------------------------- entry names


@pytest.mark.parametrize("name", [
    "../evil.xml",
    "a/../../evil.xml",
    "/etc/passwd",
    "C:/Windows/evil.xml",
    "c:evil.xml",
    "sub\\..\\..\\evil.xml",
    "..\\evil.xml",
    "ok/\x01bad.xml",
])
def test_unsafe_entry_names(tmp_path, name):
    p = make_zip(tmp_path, [("net.net.xml", b"x"), ("r.rou.xml", ROUTES),
                            ("run.sumocfg", basic_config()), (name, b"evil")])
    err = refused(p)
    assert err.status_code == 422
    assert repr(name) in err.message


def test_unsafe_name_even_in_junk(tmp_path):
    p = make_zip(tmp_path, [("run.sumocfg", basic_config()), ("__MACOSX/../../x", b"evil")])
    err = refused(p)
    assert err.status_code == 422 and "'__MACOSX/../../x'" in err.message


def test_symlink_entry(tmp_path):
    err = refused(symlink_zip(tmp_path))
    assert err.status_code == 422
    assert "'link.xml'" in err.message and "symbolic link" in err.message


def test_encrypted_entry(tmp_path):
    err = refused(encrypted_zip(tmp_path))
    assert err.status_code == 422
    assert "'r.rou.xml'" in err.message and "encrypted" in err.message


def test_duplicate_entries(tmp_path):
    p = make_zip(tmp_path, [("net.net.xml", b"x"), ("r.rou.xml", ROUTES),
                            ("run.sumocfg", basic_config()), ("./r.rou.xml", b"other")])
    err = refused(p)
    assert err.status_code == 422 and "duplicate entry 'r.rou.xml'" in err.message


# ----------------------------------------------------------------- zip bombs


def test_too_many_entries(tmp_path):
    p = scenario_zip(tmp_path, extra={f"f{i}.xml": "x" for i in range(10)})
    err = refused(p, limits=ArchiveLimits(1 << 30, 5, 100))
    assert err.status_code == 413
    assert "13 entries" in err.message and "limit of 5" in err.message


def test_total_size_limit(tmp_path):
    p = scenario_zip(tmp_path, extra={"big.xml": os.urandom(200_000)})
    err = refused(p, limits=ArchiveLimits(100_000, 100, 100))
    assert err.status_code == 413
    assert "limit of 100000 bytes" in err.message


def test_entry_ratio(tmp_path):
    p = zeros_zip(tmp_path, {"zeros.xml": 20 << 20})
    err = refused(p)
    assert err.status_code == 413
    assert "'zeros.xml'" in err.message and "compression ratio of 100" in err.message


def test_small_entries_are_exempt_from_the_ratio(tmp_path):
    # 1 KiB of zeros compresses far beyond 100x but is below the ratio floor.
    p = scenario_zip(tmp_path, extra={"zeros.xml": b"\x00" * 1024})
    assert "zeros.xml" in inspect_archive(p, None, LIMITS).files


def test_archive_ratio(tmp_path):
    # each entry stays under the per-entry floor, but together they are a bomb
    p = zeros_zip(tmp_path, {f"z{i}.xml": 300_000 for i in range(100)})
    err = refused(p)
    assert err.status_code == 413
    assert err.message.startswith("archive expands from")


@pytest.fixture(scope="module")
def gigabyte_bomb(tmp_path_factory):
    return zeros_zip(tmp_path_factory.mktemp("bomb"), {"bomb.xml": 1 << 30}, name="bomb.zip")


def test_real_zip_bomb(gigabyte_bomb):
    assert gigabyte_bomb.stat().st_size < 8 << 20  # 1 GiB of zeros in a few MB
    err = refused(gigabyte_bomb, limits=ArchiveLimits(4 << 30, 100, 100))
    assert err.status_code == 413 and "'bomb.xml'" in err.message
    err = refused(gigabyte_bomb, limits=ArchiveLimits(512 << 20, 100, 10_000))
    assert err.status_code == 413 and "limit of 536870912 bytes" in err.message


def test_overlapping_entries_bomb(tmp_path):
    err = refused(overlapping_zip(tmp_path))
    assert err.status_code == 413
    assert "overlap" in err.message


def test_lying_header_cannot_exceed_declared_size(tmp_path):
    p = lying_header_zip(tmp_path, declared=1000)
    s = inspect_archive(p, None, LIMITS)
    dest = tmp_path / "out"
    try:
        extract_scenario(p, s, dest)
    except ScenarioError as err:
        assert "big.xml" in err.message
    big = dest / "big.xml"
    assert not big.exists() or big.stat().st_size <= 1000
    total = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    assert total <= s.uncompressed_size


# ----------------------------------------------------------------- layout & config choice


def test_folder_with_macos_junk_accepted_and_extracted(tmp_path):
    p = folder_scenario_with_junk(tmp_path)
    s = inspect_archive(p, None, LIMITS)
    assert s.root == "proj/"
    assert s.files == ("square.net.xml", "square.rou.xml", "square.sumocfg")
    assert s.config_file == "square.sumocfg"
    dest = tmp_path / "x"
    extract_scenario(p, s, dest)
    assert sorted(str(f.relative_to(dest)) for f in dest.rglob("*")) == list(s.files)
    with zipfile.ZipFile(SQUARE_ZIP) as zf:
        for name in s.files:
            assert (dest / name).read_bytes() == zf.read(name)


def test_no_sumocfg(tmp_path):
    p = make_zip(tmp_path, {"net.net.xml": "x", "r.rou.xml": "y"})
    err = refused(p)
    assert err.status_code == 422
    assert err.message == "no .sumocfg file found in the archive"


def test_several_configs_need_a_choice(tmp_path):
    p = scenario_zip(tmp_path, extra={"other/b.sumocfg": basic_config()})
    err = refused(p)
    assert err.status_code == 422
    assert "run.sumocfg" in err.message and "other/b.sumocfg" in err.message


def test_chosen_config_missing(tmp_path):
    p = scenario_zip(tmp_path, extra={"b.sumocfg": basic_config()})
    err = refused(p, config_file="nope.sumocfg")
    assert err.status_code == 422
    assert "'nope.sumocfg'" in err.message
    assert "b.sumocfg" in err.message and "run.sumocfg" in err.message


def test_chosen_config_with_or_without_root_prefix(tmp_path):
    entries = {"proj/net.net.xml": NET, "proj/r.rou.xml": ROUTES,
               "proj/a.sumocfg": basic_config(), "proj/b.sumocfg": basic_config()}
    p = make_zip(tmp_path, entries)
    assert inspect_archive(p, "b.sumocfg", LIMITS).config_file == "b.sumocfg"
    assert inspect_archive(p, "proj/b.sumocfg", LIMITS).config_file == "b.sumocfg"


# ----------------------------------------------------------------- extraction


def test_extract_round_trip(tmp_path):
    s = inspect_archive(BOLOGNA_ZIP, None, LIMITS)
    dest = tmp_path / "deep" / "dest"
    extract_scenario(BOLOGNA_ZIP, s, dest)
    written = sorted(str(f.relative_to(dest)) for f in dest.rglob("*") if f.is_file())
    assert written == list(s.files)
    with zipfile.ZipFile(BOLOGNA_ZIP) as zf:
        for name in s.files:
            assert (dest / name).read_bytes() == zf.read(name)
    assert sum((dest / n).stat().st_size for n in s.files) == s.uncompressed_size


def test_extract_creates_subfolders_and_skips_junk(tmp_path):
    p = scenario_zip(tmp_path, extra={"data/det/e1.add.xml": "<additional/>", "._x": "junk"})
    s = inspect_archive(p, None, LIMITS)
    extract_scenario(p, s, tmp_path / "out")
    assert (tmp_path / "out" / "data" / "det" / "e1.add.xml").read_text() == "<additional/>"
    assert not (tmp_path / "out" / "._x").exists()


def test_extract_never_follows_symlinks(tmp_path):
    p = scenario_zip(tmp_path, extra={"data/e1.add.xml": "<additional/>"})
    s = inspect_archive(p, None, LIMITS)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "data").symlink_to(outside)
    with pytest.raises(ScenarioError):
        extract_scenario(p, s, dest)
    assert list(outside.iterdir()) == []
