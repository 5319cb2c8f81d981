"""What the config and the XML files sumo loads may point at: expansion, includes, params, schemas.

Every case mirrors a behaviour of sumo 1.28 checked with the real binary
(tests/integration/test_validation_sumo_agrees.py runs sumo on the accepted
ones and on the attacks, to show what the refusals prevent).
"""

from __future__ import annotations

import gzip
import pathlib

import pytest

from core.scenario import ArchiveLimits, ScenarioError, inspect_archive
from core.scenario import sumo_options as table
from core.scenario.xmlrefs import KEY_NEEDLES, _FILE_KEYS, is_file_param

from tests.unit.scenario_archives import NET, ROUTES, additional_xml, config_with, make_zip

LIMITS = ArchiveLimits(max_uncompressed_bytes=64 << 20, max_entries=5000, max_ratio=1000)


def archive(tmp_path: pathlib.Path, config: str, files: dict | None = None, name: str = "upload.zip"):
    entries = {"net.net.xml": NET, "r.rou.xml": ROUTES, "run.sumocfg": config}
    entries.update(files or {})
    return make_zip(tmp_path, entries, name=name)


def inspect(tmp_path, config, files=None, **kw):
    return inspect_archive(archive(tmp_path, config, files), None, LIMITS, **kw)


def refused(tmp_path, config, files=None, status=422, **kw) -> str:
    with pytest.raises(ScenarioError) as info:
        inspect(tmp_path, config, files, **kw)
    assert info.value.status_code == status, info.value
    return info.value.message


def with_add(body: str, root: str = "additional") -> tuple[str, dict]:
    return config_with(additional="a.add.xml"), {"a.add.xml": additional_xml(body, root)}


# ----------------------------------------------------------------- ${VAR} and ~ in option values


def test_environment_in_output_option_named_with_line(tmp_path):
    cfg = config_with(extra='<output>\n  <tripinfo-output value="${ADMIN_KEY}.xml"/>\n</output>')
    assert refused(tmp_path, cfg) == (
        "run.sumocfg: option tripinfo-output (line 8) uses ${...} (environment expansion), "
        "which is not allowed")


@pytest.mark.parametrize("element", [
    '<output><summary-output value="${UNSET}/tmp/x.xml"/></output>',  # wrote /tmp/x.xml on the host
    '<output><output-prefix value="${B}"/></output>',
    '<time><begin value="${B}"/></time>',
    '<output><device.ssm.file value="${HOME}/ssm.xml"/></output>',
    '<gui_only><start value="${X}"/></gui_only>',
    '<processing><threads value="${N}"/></processing>',
    '<input><additional-files value="a${X}.xml"/></input>',
])
def test_environment_in_any_option(tmp_path, element):
    assert "uses ${...} (environment expansion)" in refused(tmp_path, config_with(extra=element))


@pytest.mark.parametrize("element, option", [
    ('<output><tripinfo-output value="~/trips.xml"/></output>', "tripinfo-output"),
    ('<output><output-prefix value="~"/></output>', "output-prefix"),
    ('<output><fcd-output value="fcd.xml,~/x.xml"/></output>', "fcd-output"),
])
def test_home_in_option(tmp_path, element, option):
    msg = refused(tmp_path, config_with(extra=element))
    assert f"option {option} (line" in msg and "uses ~ (home directory expansion)" in msg


def test_what_sumo_does_not_expand_is_accepted(tmp_path):
    # "$VAR" without braces and "~" after ", " are taken literally by sumo
    cfg = config_with(routes="r.rou.xml, ~/more.rou.xml",
                      extra='<output><tripinfo-output value="$HOME.xml"/></output>')
    s = inspect(tmp_path, cfg, {"~/more.rou.xml": ROUTES})
    assert s.outputs == ("$HOME.xml",)


# ----------------------------------------------------------------- threads


@pytest.mark.parametrize("element, given", [
    ('<processing><threads value="8"/></processing>', "threads"),
    ('<routing><device.rerouting.threads value="3"/></routing>', "device.rerouting.threads"),
    ('<routing><routing-threads value="3"/></routing>', "routing-threads (device.rerouting.threads)"),
])
def test_threads_over_cpu_request(tmp_path, element, given):
    msg = refused(tmp_path, config_with(extra=element), max_threads=2)
    assert f"option {given} (line 7)" in msg and "cpu_request of 2" in msg


def test_threads_within_cpu_request_or_unbounded(tmp_path):
    cfg = config_with(extra='<processing><threads value="2"/></processing>')
    assert inspect(tmp_path, cfg, max_threads=2).config_file == "run.sumocfg"
    cfg = config_with(extra='<processing><threads value="64"/></processing>')
    assert inspect(tmp_path, cfg).config_file == "run.sumocfg"  # other callers pass no bound


# ----------------------------------------------------------------- phemlight-path falls back to sumo's data


def test_phemlight_path_missing_is_accepted(tmp_path):
    cfg = config_with(extra='<emissions><phemlight-path value="PHEMlight/"/></emissions>')
    assert inspect(tmp_path, cfg).config_file == "run.sumocfg"


@pytest.mark.parametrize("value, what", [("/usr/share/sumo/data", "an absolute path"),
                                         ("../../PHEMlight", "a path outside the scenario folder")])
def test_phemlight_path_outside_is_refused(tmp_path, value, what):
    cfg = config_with(extra=f'<emissions><phemlight-path value="{value}"/></emissions>')
    assert refused(tmp_path, cfg) == f"option phemlight-path refers to {what} ({value}), which is not allowed"


# ----------------------------------------------------------------- file attributes of loaded files


@pytest.mark.parametrize("element, attr, what", [
    ('<edgeData id="e" file="${FOO}-edge.xml"/>', "file", "${...} (environment expansion)"),
    ('<edgeData id="e" file="~/sub/x.xml"/>', "file", "~ (home directory expansion)"),
    ('<timedEvent type="SaveTLSStates" source="A0" dest="tls-${FOO}.xml"/>', "dest", "${...} (environment expansion)"),
    ('<calibrator id="c" lane="a_0" pos="1" output="${X}.xml"/>', "output", "${...} (environment expansion)"),
])
def test_expansion_in_file_attributes(tmp_path, element, attr, what):
    cfg, files = with_add(element)
    tag = element[1:element.index(" ")]
    assert refused(tmp_path, cfg, files) == (
        f"element <{tag}> (line 2) of a.add.xml: attribute {attr} uses {what}, which is not allowed")


def test_non_file_attributes_are_not_expanded_by_sumo(tmp_path):
    cfg, files = with_add('<vType id="${FOO}"/><flow id="~x" type="${FOO}" begin="0" end="1" number="1"/>')
    assert inspect(tmp_path, cfg, files).config_file == "run.sumocfg"


def test_net_file_is_scanned(tmp_path):
    net = NET.replace(b"</net>", b'<inductionLoop id="d" lane="a_0" pos="1" file="/tmp/e1.xml"/></net>')
    msg = refused(tmp_path, config_with(), {"net.net.xml": net})
    assert msg.startswith("element <inductionLoop> (line 1) of net.net.xml: attribute file writes to an "
                          "absolute path (/tmp/e1.xml)")


@pytest.mark.parametrize("option, value", [
    ("weight-files", "w.xml"), ("load-state", "w.xml"), ("device.fcd-replay.files", "w.xml")])
def test_other_xml_inputs_are_scanned(tmp_path, option, value):
    cfg = config_with(extra=f'<input><{option} value="{value}"/></input>'.replace("<input>", "<x>")
                      .replace("</input>", "</x>"))
    msg = refused(tmp_path, cfg, {"w.xml": '<meandata><include href="/etc/passwd"/></meandata>'})
    assert "element <include> (line 1) of w.xml: attribute href refers to an absolute path" in msg


def test_binary_state_is_not_parsed(tmp_path):
    cfg = config_with(extra='<x><load-state value="s.sbx"/></x>')
    assert inspect(tmp_path, cfg, {"s.sbx": b"\x00\x01binary state"}).config_file == "run.sumocfg"


# ----------------------------------------------------------------- <include href>


def test_include_is_followed_relative_to_the_including_file(tmp_path):
    cfg = config_with(additional="sub/a.add.xml")
    files = {"sub/a.add.xml": additional_xml('<include href="inc/i.xml"/>'),
             "sub/inc/i.xml": additional_xml('<edgeData id="e" file="${FOO}-inc.xml"/>')}
    assert refused(tmp_path, cfg, files) == (
        "element <edgeData> (line 2) of sub/inc/i.xml: attribute file uses ${...} (environment "
        "expansion), which is not allowed")


def test_missing_include_is_named(tmp_path):
    cfg, files = with_add('<include href="gone.xml"/>')
    assert refused(tmp_path, cfg, files) == (
        "element <include> (line 2) of a.add.xml includes gone.xml, which is not in the archive "
        "(looked for gone.xml)")


@pytest.mark.parametrize("href, what", [
    ("${INC}", "uses ${...} (environment expansion)"),
    ("~/inc.xml", "uses ~ (home directory expansion)"),
    ("/etc/passwd", "refers to an absolute path (/etc/passwd)"),
    ("../../etc/passwd", "refers to a path outside the scenario folder (../../etc/passwd)"),
    ("srv:80", "refers to a network socket (srv:80)"),
])
def test_include_outside_refused(tmp_path, href, what):
    cfg, files = with_add(f'<include href="{href}"/>')
    assert refused(tmp_path, cfg, files) == (
        f"element <include> (line 2) of a.add.xml: attribute href {what}, which is not allowed")


def test_include_in_route_and_net_files(tmp_path):
    routes = b'<routes><include href="more.xml"/></routes>'
    net = NET.replace(b"</net>", b'<include href="netinc.xml"/></net>')
    files = {"r.rou.xml": routes, "more.xml": ROUTES, "net.net.xml": net,
             "netinc.xml": additional_xml('<edgeData id="x" file="/abs.xml"/>')}
    msg = refused(tmp_path, config_with(), files)
    assert msg.startswith("element <edgeData> (line 2) of netinc.xml: attribute file writes to an absolute")


def test_include_cycle_refused(tmp_path):
    cfg, files = with_add('<include href="b.xml"/>')
    files["b.xml"] = additional_xml('<include href="c.xml"/>')
    files["c.xml"] = additional_xml('<include href="b.xml"/>')
    assert refused(tmp_path, cfg, files) == (
        "b.xml includes itself (b.xml -> c.xml -> b.xml); sumo cannot load an include cycle")


def test_self_include_refused(tmp_path):
    cfg, files = with_add('<include href="a.add.xml"/>')
    assert "a.add.xml includes itself (a.add.xml -> a.add.xml)" in refused(tmp_path, cfg, files)


def test_long_include_chain_and_diamond_accepted(tmp_path):
    n = 2000
    cfg, files = with_add('<include href="i0.xml"/><include href="i1.xml"/>')
    for i in range(n):
        files[f"i{i}.xml"] = additional_xml(f'<include href="i{i + 1}.xml"/>' if i + 1 < n else "")
    s = inspect(tmp_path, cfg, files)
    assert f"i{n - 1}.xml" in s.files


def test_include_in_variable_speed_sign_definitions(tmp_path):
    cfg, files = with_add('<variableSpeedSign id="v" lanes="a_0" file="vss.xml"/>')
    files["vss.xml"] = '<vss><include href="missing.xml"/><step time="0" speed="5"/></vss>'
    assert "element <include> (line 1) of vss.xml includes missing.xml" in refused(tmp_path, cfg, files)


def test_variable_speed_sign_file_outside_refused(tmp_path):
    cfg, files = with_add('<variableSpeedSign id="v" lanes="a_0" file="/etc/passwd"/>')
    assert refused(tmp_path, cfg, files) == (
        "element <variableSpeedSign> (line 2) of a.add.xml: attribute file refers to an absolute path "
        "(/etc/passwd), which is not allowed")


@pytest.mark.parametrize("eclass", ["PHEMlight/../../../tmp/evil", "PHEMlight5/a/b", "PHEMlight/..\\x"])
def test_emission_class_that_is_a_path(tmp_path, eclass):
    # sumo opens "<phemlight path>/<name>.PHEMLight.veh", for every path it searches
    cfg, files = with_add(f'<vType id="t" emissionClass="{eclass}"/>')
    assert refused(tmp_path, cfg, files) == (
        f"element <vType> (line 2) of a.add.xml: attribute emissionClass ({eclass}) is a path; sumo would "
        "open emission data outside its data folders, which is not allowed")


def test_emission_classes_of_sumo_are_accepted(tmp_path):
    cfg, files = with_add('<vType id="a" emissionClass="PHEMlight/PC_G_EU4"/><vType id="b" '
                          'emissionClass="HBEFA4/PC_petrol_Euro-4"/><vType id="c" emissionClass="Zero"/>')
    assert inspect(tmp_path, cfg, files).config_file == "run.sumocfg"


# ----------------------------------------------------------------- <param key=... value=...>


@pytest.mark.parametrize("key, value, what", [
    ("device.ssm.file", "/tmp/ssm.xml", "writes to an absolute path (/tmp/ssm.xml)"),
    ("device.toc.file", "../../toc.xml", "writes to a path outside the scenario folder (../../toc.xml)"),
    ("device.ssm.file", "${FOO}-ssm.xml", "uses ${...} (environment expansion)"),
    ("device.ssm.file", "~/ssm.xml", "uses ~ (home directory expansion)"),
    ("device.ssm.file", "host:9", "writes to a network socket (host:9)"),
    ("my.own.file", "/x", "writes to an absolute path (/x)"),
    ("device.rerouting.output", "/x", "writes to an absolute path (/x)"),
    ("log", "/var/log/x", "writes to an absolute path (/var/log/x)"),
    ("save-state.prefix", "/x", "writes to an absolute path (/x)"),
])
def test_file_params(tmp_path, key, value, what):
    cfg, files = with_add(f'<vType id="t">\n  <param key="{key}" value="{value}"/>\n</vType>')
    assert refused(tmp_path, cfg, files) == (
        f'element <param key="{key}"> (line 3) of a.add.xml: value {what}, which is not allowed')


def test_file_param_spelled_with_character_references(tmp_path):
    cfg, files = with_add('<vType id="t"><param key="device.ssm.fil&#101;" value="/tmp/x"/></vType>')
    assert 'element <param key="device.ssm.file">' in refused(tmp_path, cfg, files)


def test_file_param_relative_to_sumo_working_directory(tmp_path):
    # sumo runs in the config's folder and opens param outputs from there
    cfg = config_with(additional="../add/a.add.xml", net="../net.net.xml", routes="../r.rou.xml")
    files = {"sc/run.sumocfg": cfg,
             "add/a.add.xml": '<additional><vType id="t"><param key="device.ssm.file" value="../ssm.xml"/>'
                              '</vType></additional>'}
    p = make_zip(tmp_path, {"net.net.xml": NET, "r.rou.xml": ROUTES, **files})
    assert inspect_archive(p, None, LIMITS).config_file == "sc/run.sumocfg"


def test_other_params_are_free(tmp_path):
    cfg, files = with_add('<vType id="t"><param key="origId" value="/x/${Y}"/><param key="has.ssm.device" '
                          'value="true"/></vType>')
    assert inspect(tmp_path, cfg, files).config_file == "run.sumocfg"


def test_key_needles_cover_every_file_key():
    """The pre-filter finds every file key: by 'file'/'output' or one of KEY_NEEDLES."""
    for key in _FILE_KEYS:
        raw = key.encode()
        assert b"file" in raw or b"output" in raw or any(n in raw for n in KEY_NEEDLES), key
        assert is_file_param(key)
    assert not is_file_param("origId") and is_file_param("x.file") and is_file_param("myoutput")


# ----------------------------------------------------------------- schema locations


XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


@pytest.mark.parametrize("location", [
    "http://127.0.0.1:18931/additional_file.xsd",  # fetched with xml-validation auto/always
    "/etc/hostname",  # opened even with the default "local"
    "file:///etc/hostname",
    "http://sumo.dlr.de/xsd/../../../../etc/hostname",
    "http://sumo.dlr.de/xsd/no_such_file.xsd",
])
def test_schema_locations_sumo_would_open_are_refused(tmp_path, location):
    cfg = config_with(additional="a.add.xml")
    files = {"a.add.xml": f'<additional {XSI} xsi:noNamespaceSchemaLocation="{location}"/>'}
    msg = refused(tmp_path, cfg, files)
    assert msg.startswith("element <additional> (line 1) of a.add.xml: attribute "
                          f"xsi:noNamespaceSchemaLocation names the schema {location!r}")


@pytest.mark.parametrize("attrs", [
    'xsi:noNamespaceSchemaLocation="http://sumo.dlr.de/xsd/additional_file.xsd"',
    'xsi:noNamespaceSchemaLocation="https://sumo.dlr.de/xsd/additional_file.xsd"',
    'xsi:noNamespaceSchemaLocation="http://sumo.sf.net/xsd/additional_file.xsd"',
    'xsi:schemaLocation="urn:x http://sumo.dlr.de/xsd/additional_file.xsd"',
    'xsi:noNamespaceSchemaLocation="schemas/mine.xsd"',
])
def test_sumo_schemas_and_scenario_files_are_accepted(tmp_path, attrs):
    cfg = config_with(additional="a.add.xml")
    assert inspect(tmp_path, cfg, {"a.add.xml": f"<additional {XSI} {attrs}/>"}).config_file == "run.sumocfg"


def test_schema_of_unvalidated_net_is_not_opened(tmp_path):
    """xml-validation.net defaults to never: sumo opens no schema of the network."""
    net = f'<net {XSI} xsi:noNamespaceSchemaLocation="/etc/hostname"></net>'
    assert inspect(tmp_path, config_with(), {"net.net.xml": net}).config_file == "run.sumocfg"
    cfg = config_with(extra='<report><xml-validation.net value="local"/></report>')
    assert "xsi:noNamespaceSchemaLocation" in refused(tmp_path, cfg, {"net.net.xml": net})


def test_schema_hint_on_nested_element_with_any_prefix(tmp_path):
    body = '<vType id="t" xmlns:q="http://www.w3.org/2001/XMLSchema-instance" q:schemaLocation="a /etc/x"/>'
    cfg, files = with_add(body)
    assert "element <vType> (line 2) of a.add.xml: attribute q:schemaLocation" in refused(tmp_path, cfg, files)


def test_schema_of_the_config_itself(tmp_path):
    cfg = config_with().replace("<configuration>", f'<configuration {XSI} '
                                'xsi:noNamespaceSchemaLocation="http://evil.example/c.xsd">')
    assert "element <configuration> (line 2) of run.sumocfg" in refused(tmp_path, cfg)


def test_schema_files_table_is_sumos():
    assert {"net_file.xsd", "additional_file.xsd", "sumoConfiguration.xsd", "types/base.xsd"} \
        <= table.SCHEMA_FILES


# ----------------------------------------------------------------- .gz inputs and the shared budget


def test_gzipped_net_and_routes_are_scanned(tmp_path):
    net = gzip.compress(NET.replace(b"</net>", b'<include href="gone.xml"/></net>'))
    cfg = config_with(net="net.net.xml.gz")
    assert "of net.net.xml.gz includes gone.xml" in refused(tmp_path, cfg, {"net.net.xml.gz": net})


def test_concatenated_gzip_members_are_read_whole(tmp_path):
    routes = gzip.compress(b"<routes>\n") + gzip.compress(b'<include href="/x"/></routes>')
    cfg = config_with(routes="r.rou.xml.gz")
    assert "of r.rou.xml.gz: attribute href refers to an absolute path" in \
        refused(tmp_path, cfg, {"r.rou.xml.gz": routes})


def test_gzip_budget_is_shared_by_the_archive(tmp_path):
    """Each member inflates under the limit, together they do not: one budget per archive."""
    filler = b"<additional>" + b"<!-- " + b"x" * (3 << 20) + b" -->" + b"</additional>"
    files = {f"a{i}.add.xml.gz": gzip.compress(filler) for i in range(3)}
    cfg = config_with(additional=",".join(files))
    limits = ArchiveLimits(max_uncompressed_bytes=8 << 20, max_entries=100, max_ratio=10_000)
    with pytest.raises(ScenarioError) as info:
        inspect_archive(archive(tmp_path, cfg, files), None, limits)
    assert info.value.status_code == 413
    assert "a2.add.xml.gz inflates beyond" in info.value.message


def test_gzip_bomb_is_refused_without_memory(tmp_path):
    import tracemalloc

    bomb = gzip.compress(b"<routes>" + b" " * (512 << 20), compresslevel=9)
    assert len(bomb) < 1 << 20
    cfg = config_with(routes="r.rou.xml.gz")
    p = archive(tmp_path, cfg, {"r.rou.xml.gz": bomb})
    limits = ArchiveLimits(max_uncompressed_bytes=64 << 20, max_entries=100, max_ratio=1000)
    tracemalloc.start()
    try:
        with pytest.raises(ScenarioError) as info:
            inspect_archive(p, None, limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.status_code == 413 and "r.rou.xml.gz" in info.value.message
    assert peak < 32 << 20


def test_corrupt_gzip(tmp_path):
    bad = gzip.compress(ROUTES)[:12] + b"\xff" * 40
    msg = refused(tmp_path, config_with(routes="r.rou.xml.gz"), {"r.rou.xml.gz": bad})
    assert "r.rou.xml.gz" in msg
