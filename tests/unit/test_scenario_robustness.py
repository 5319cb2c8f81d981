"""No upload makes inspect_archive fail with anything but a ScenarioError, or use unbounded memory.

Deep nesting, huge tags, odd encodings, binary garbage, and a seeded fuzz
run over mutations of real configs and additional files. The pre-filter of
``xmlsafe.scan_elements`` (handler off for pieces without watched names) is
checked against the handler-always-on result, with pieces small enough that
watched names straddle every boundary.
"""

from __future__ import annotations

import io
import random
import tracemalloc
import zipfile

import pytest

from core.scenario import ArchiveLimits, ScenarioError, inspect_archive
from core.scenario import xmlsafe
from core.scenario.xmlrefs import FILE_ATTRIBUTES, WATCH, is_file_param

from tests.unit.scenario_archives import BOLOGNA_ZIP, NET, ROUTES, additional_xml, config_with, make_zip

LIMITS = ArchiveLimits(max_uncompressed_bytes=256 << 20, max_entries=1000, max_ratio=100_000)


def archive(tmp_path, config, files=None, name="upload.zip"):
    entries = {"net.net.xml": NET, "r.rou.xml": ROUTES, "run.sumocfg": config}
    entries.update(files or {})
    return make_zip(tmp_path, entries, name=name)


def outcome(path, limits=LIMITS):
    """'ok' or the refusal's status code; any other exception fails the test."""
    try:
        inspect_archive(path, None, limits)
        return "ok"
    except ScenarioError as err:
        return err.status_code


# ----------------------------------------------------------------- depth


def test_config_nested_5000_deep_is_no_500(tmp_path):
    # sumo 1.28 runs it (it complains about the empty sections, exit code 0)
    deep = "<a>" * 5000 + "</a>" * 5000
    cfg = config_with(extra=deep)
    assert outcome(archive(tmp_path, cfg)) == "ok"


def test_option_deep_inside_sections_is_still_checked(tmp_path):
    deep = "<a>" * 5000 + '<tripinfo-output value="/tmp/x"/>' + "</a>" * 5000
    with pytest.raises(ScenarioError) as info:
        inspect_archive(archive(tmp_path, config_with(extra=deep)), None, LIMITS)
    assert "option tripinfo-output writes to an absolute path" in info.value.message


def test_additional_file_nested_200000_deep(tmp_path):
    body = "<a>" * 200_000 + '<edgeData id="e" file="/x"/>' + "</a>" * 200_000
    cfg = config_with(additional="a.add.xml")
    assert outcome(archive(tmp_path, cfg, {"a.add.xml": additional_xml(body)})) == 422


# ----------------------------------------------------------------- huge tags


def test_huge_tag_in_route_file_is_413_before_expat_buffers_it(tmp_path):
    size = 300 << 20
    path = tmp_path / "huge.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("net.net.xml", NET)
        zf.writestr("run.sumocfg", config_with())
        with zf.open("r.rou.xml", "w", force_zip64=True) as out:
            out.write(b'<routes><vehicle id="')
            chunk = b"v" * (1 << 20)
            for _ in range(size >> 20):
                out.write(chunk)
            out.write(b'"/></routes>')
    limits = ArchiveLimits(max_uncompressed_bytes=1 << 30, max_entries=10, max_ratio=100_000)
    tracemalloc.start()
    try:
        with pytest.raises(ScenarioError) as info:
            inspect_archive(path, None, limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.status_code == 413
    assert info.value.message.startswith("r.rou.xml: a single tag or comment starting at line 1 is longer")
    assert peak < 4 * xmlsafe.MAX_TOKEN_BYTES


def test_huge_comment_with_angle_brackets_is_413(tmp_path):
    comment = b"<!--" + b"<a>" * ((xmlsafe.MAX_TOKEN_BYTES + 2 * xmlsafe.FEED_BYTES) // 3) + b"-->"
    cfg = config_with(additional="a.add.xml")
    p = archive(tmp_path, cfg, {"a.add.xml": b"<additional>" + comment + b"</additional>"})
    assert outcome(p) == 413


def test_big_but_bounded_attribute_is_accepted(tmp_path):
    shape = " ".join(f"{i}.0,{i}.5" for i in range(200_000)).encode()  # a few MB: a long polygon
    cfg = config_with(additional="a.add.xml")
    p = archive(tmp_path, cfg, {"a.add.xml": b'<additional><poly id="p" shape="' + shape + b'"/></additional>'})
    assert outcome(p) == "ok"


# ----------------------------------------------------------------- encodings and garbage


def test_utf16_and_bom_configs_are_read_like_sumo(tmp_path):
    text = config_with(extra='<output><tripinfo-output value="t.xml"/></output>')
    for i, data in enumerate([text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"),
                              text.split("?>", 1)[1].encode("utf-16"),
                              b"\xef\xbb\xbf" + text.encode(),
                              text.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1")]):
        s = inspect_archive(archive(tmp_path, data, name=f"{i}.zip"), None, LIMITS)
        assert s.outputs == ("t.xml",)


def test_utf16_additional_file_is_checked_in_full(tmp_path):
    add = additional_xml('<edgeData id="e" file="/tmp/x.xml"/>').encode("utf-16")
    cfg = config_with(additional="a.add.xml")
    with pytest.raises(ScenarioError) as info:
        inspect_archive(archive(tmp_path, cfg, {"a.add.xml": add}), None, LIMITS)
    assert "attribute file writes to an absolute path (/tmp/x.xml)" in info.value.message


@pytest.mark.parametrize("data", [
    bytes(range(256)) * 64,
    b"\x1f\x8b" + bytes(range(256)) * 4,
    b"<additional>\x00</additional>",
    b'<?xml version="1.0" encoding="no-such-codec"?><additional/>',
    b'<?xml version="1.0" encoding="utf-32"?><additional/>',
    b"",
])
def test_binary_garbage_named_xml(tmp_path, data):
    cfg = config_with(additional="a.add.xml")
    assert outcome(archive(tmp_path, cfg, {"a.add.xml": data})) == 422


@pytest.mark.parametrize("data", [b"\xff\xfe\x00\x00garbage", b"\x00" * 100, bytes(range(256)) * 4])
def test_binary_garbage_as_config(tmp_path, data):
    assert outcome(archive(tmp_path, data)) == 422


def test_corrupt_member_data(tmp_path):
    p = archive(tmp_path, config_with(additional="a.add.xml"),
                {"a.add.xml": additional_xml("<x/>" * 2000)})
    raw = bytearray(p.read_bytes())
    pos = raw.find(b"a.add.xml") + 40  # inside the compressed data of the member
    raw[pos:pos + 40] = b"\xff" * 40
    p.write_bytes(bytes(raw))
    assert outcome(p) in (400, 422)


# ----------------------------------------------------------------- the pre-filter is exact


def _matters(tag: str, attrs: dict, first: bool) -> bool:
    """What xmlrefs acts on: the root, file attributes, includes, file params, schema hints."""
    return first or bool(FILE_ATTRIBUTES.intersection(attrs)) or tag == "include" or "emissionClass" in attrs \
        or (tag == "param" and is_file_param(attrs.get("key", ""))) \
        or any(name.endswith(WATCH.suffixes) for name in attrs)


def _reported(data: bytes, feed: int, monkeypatch, prefilter: bool) -> list[tuple[str, int]]:
    """The elements that matter among those scan_elements reports (it may report more)."""
    monkeypatch.setattr(xmlsafe, "FEED_BYTES", feed)
    seen: list[tuple[str, int]] = []

    def on_element(tag, attrs, line):
        if _matters(tag, attrs, not seen):
            seen.append((tag, line))

    # the reference: a suffix needle found in every piece keeps the full handler on throughout
    watch = WATCH if prefilter else xmlsafe.Watch(attrs=WATCH.attrs, tags=WATCH.tags, suffixes=WATCH.suffixes,
                                                  suffix_needles=(b"",))
    xmlsafe.scan_elements(io.BytesIO(data), "x.xml", on_element, watch)
    return seen


def test_prefilter_reports_what_the_full_handler_reports(monkeypatch):
    rnd = random.Random(20261207)
    pieces = ['<edge id="e"><lane id="l" shape="0,0 1,1"/></edge>', '<param key="origId" value="1"/>',
              '<param key="device.ssm.file" value="s.xml"/>', '<param key="log" value="l"/>',
              '<inductionLoop id="d" file="o.xml"/>', '<include href="i.xml"/>', '<!-- file= -->',
              '<x a="&amp;"/>', '<v xmlns:q="u" q:schemaLocation="a b"/>', '<tlLogic id="t"/>',
              '<param key="astar.all-distances" value="d"/>', "text file output dest\n",
              '<timedEvent dest="d.xml"/>', '<![CDATA[ <edge file="x"/> ]]>',
              '<param key="device.ssm.fil&#101;" value="x"/>', "<param\nkey='log'\n value='x'/>",
              '<param key="save-state.prefix" value="p"/>', '<param key="origId" value="file"/>',
              '<vType id="t" emissionClass="PHEMlight/PC_G_EU4"/>']
    for trial in range(200):
        body = "".join(rnd.choice(pieces) + ("\n" if rnd.random() < 0.3 else "") for _ in range(300))
        data = f"<net>{body}</net>".encode()
        feed = rnd.choice([1, 2, 5, 7, 13, 31, 64, 97, 256, 4096])
        expected = _reported(data, feed, monkeypatch, False)
        assert len(expected) > 50
        assert _reported(data, feed, monkeypatch, True) == expected, (trial, feed)


# ----------------------------------------------------------------- fuzz: only ScenarioError escapes


def _mutate(rnd: random.Random, data: bytes) -> bytes:
    ops = rnd.randint(1, 4)
    buf = bytearray(data)
    for _ in range(ops):
        op = rnd.randrange(9)
        pos = rnd.randrange(len(buf) + 1) if buf else 0
        if op == 0 and buf:
            del buf[pos:pos + rnd.randint(1, 40)]
        elif op == 1:
            buf[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        elif op == 2:
            buf[pos:pos] = rnd.choice([b"<", b">", b"&", b'"', b"${X}", b"~/", b"<!--", b"]]>", b"<![CDATA[",
                                       b"<!DOCTYPE x>", b"&#0;", b"&#x110000;", b"\x00", b"\xff\xfe",
                                       b'<include href="run.sumocfg"/>', b'<include href="a.add.xml"/>',
                                       b'<param key="device.ssm.file" value="/x"/>', b"<a>" * 50,
                                       b' file="../x"', b' xsi:schemaLocation="a b"'])
        elif op == 3 and buf:
            a = rnd.randrange(len(buf))
            buf[pos:pos] = buf[a:a + rnd.randint(1, 200)]
        elif op == 4:
            buf = buf[:pos]
        elif op == 5 and buf:
            buf[rnd.randrange(len(buf))] ^= 1 << rnd.randrange(8)
        elif op == 6:
            buf = bytearray(b"\xef\xbb\xbf") + buf
        elif op == 7:
            try:
                buf = bytearray(bytes(buf).decode("utf-8").encode("utf-16"))
            except UnicodeDecodeError:
                pass
        else:
            import gzip
            buf = bytearray(gzip.compress(bytes(buf)))
    return bytes(buf)


def test_fuzz_mutated_real_files_only_raise_scenario_errors(tmp_path):
    with zipfile.ZipFile(BOLOGNA_ZIP) as zf:
        real = {n: zf.read(n) for n in ("run.sumocfg", "acosta_detectors.add.xml", "acosta_tls.add.xml",
                                        "acosta_bus_stops.add.xml", "acosta_vtypes.add.xml")}
    rnd = random.Random(1207)
    config = config_with(additional="a.add.xml,b.add.xml").encode()
    seen: set = set()
    for trial in range(400):
        files = {
            "run.sumocfg": _mutate(rnd, rnd.choice([config, real["run.sumocfg"]]))
            if rnd.random() < 0.5 else config,
            "a.add.xml": _mutate(rnd, real[rnd.choice(list(real)[1:])]),
            "b.add.xml": _mutate(rnd, additional_xml('<include href="a.add.xml"/><vType id="t">'
                                                      '<param key="device.ssm.file" value="s.xml"/></vType>'
                                                      ).encode()),
        }
        p = make_zip(tmp_path, {"net.net.xml": NET, "r.rou.xml": ROUTES, **files}, name=f"f{trial % 4}.zip")
        try:
            inspect_archive(p, None, LIMITS)
            seen.add("ok")
        except ScenarioError as err:
            assert err.status_code in (400, 413, 422), err
            assert err.message and "Traceback" not in err.message
            seen.add(err.status_code)
    assert {"ok", 422} <= seen
