"""SUMO-level rules of core.scenario: config XML, input files, outputs, TraCI, additional files."""

from __future__ import annotations

import gzip
import pathlib

import pytest

from core.scenario import ArchiveLimits, ScenarioError, inspect_archive

from tests.unit.scenario_archives import NET, ROUTES, basic_config, config_xml, make_zip, scenario_zip
LIMITS = ArchiveLimits(max_uncompressed_bytes=64 << 20, max_entries=1000, max_ratio=1000)


def inspect(tmp_path: pathlib.Path, config: str, extra: dict | None = None, **kw):
    return inspect_archive(scenario_zip(tmp_path, config, extra, **kw), None, LIMITS)


def refused(tmp_path: pathlib.Path, config: str, extra: dict | None = None, **kw) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        inspect(tmp_path, config, extra, **kw)
    return info.value


def output(option: str, value: str) -> str:
    return f'<output><{option} value="{value}"/></output>'


# ----------------------------------------------------------------- XML


def test_malformed_xml(tmp_path):
    err = refused(tmp_path, "<configuration><input><net-file value='x'></input></configuration>")
    assert err.status_code == 422
    assert err.message.startswith("run.sumocfg is not well-formed XML: mismatched tag: line 1")


def test_entity_expansion_refused(tmp_path):
    laughs = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
              ' <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n]>\n'
              '<configuration><input><net-file value="&lol2;"/></input></configuration>\n')
    err = refused(tmp_path, laughs)
    assert err.status_code == 422
    assert "run.sumocfg must not contain a DOCTYPE declaration (lolz)" in err.message


def test_external_entity_refused(tmp_path):
    xxe = ('<?xml version="1.0"?><!DOCTYPE c SYSTEM "file:///etc/passwd">'
           '<configuration/>')
    err = refused(tmp_path, xxe)
    assert err.status_code == 422 and "DOCTYPE" in err.message


def test_wrong_root_element(tmp_path):
    err = refused(tmp_path, "<routes><net-file value='net.net.xml'/></routes>")
    assert err.status_code == 422
    assert "<routes>" in err.message


def test_sumoconfiguration_root_v_attribute_and_options_under_root(tmp_path):
    cfg = config_xml('<net-file v="net.net.xml"/><route-files value="r.rou.xml"/>'
                     '<tripinfo-output v="trips.xml"/>', root="sumoConfiguration")
    assert inspect(tmp_path, cfg).outputs == ("trips.xml",)


def test_text_value_refused(tmp_path):
    err = refused(tmp_path, config_xml("<net-file>net.net.xml</net-file>"))
    assert err.status_code == 422 and "'net-file'" in err.message


def test_unknown_option(tmp_path):
    err = refused(tmp_path, basic_config('<processing><warp-speed value="9"/></processing>'))
    assert err.status_code == 422 and "unknown option 'warp-speed'" in err.message


def test_option_set_twice(tmp_path):
    err = refused(tmp_path, basic_config('<n value="net.net.xml"/>'))
    assert err.status_code == 422 and "more than once" in err.message


# ----------------------------------------------------------------- input files


def test_missing_inputs_all_named(tmp_path):
    cfg = config_xml('<input><net-file value="net.net.xml"/>'
                     '<route-files value="r.rou.xml, a.rou.xml,b.rou.xml"/>'
                     '<additional-files value="x.add.xml"/></input>')
    err = refused(tmp_path, cfg)
    assert err.status_code == 422
    assert err.message == ("missing file(s) referenced by run.sumocfg: "
                           "route-files: a.rou.xml, b.rou.xml; additional-files: x.add.xml")


def test_inputs_relative_to_config_folder(tmp_path):
    p = make_zip(tmp_path, {"sc/run.sumocfg": basic_config(routes="r.rou.xml,more/r2.rou.xml"),
                            "sc/net.net.xml": NET, "sc/r.rou.xml": ROUTES,
                            "sc/more/r2.rou.xml": ROUTES, "readme.txt": "hi"})
    s = inspect_archive(p, None, LIMITS)
    assert s.root == "" and s.config_file == "sc/run.sumocfg"
    p2 = make_zip(tmp_path, {"sc/run.sumocfg": basic_config(routes="../r.rou.xml"),
                             "sc/net.net.xml": NET, "r.rou.xml": ROUTES}, name="b.zip")
    assert inspect_archive(p2, None, LIMITS).config_file == "sc/run.sumocfg"


@pytest.mark.parametrize("value, what", [
    ("/etc/passwd", "an absolute path"),
    ("../../etc/passwd", "a path outside the scenario folder"),
    ("%2e%2e/%2e%2e/etc/passwd", "a path outside the scenario folder"),
    ("C:/net.net.xml", "an absolute path"),
])
def test_input_outside_scenario(tmp_path, value, what):
    err = refused(tmp_path, basic_config(net=value))
    assert err.status_code == 422
    assert err.message == f"option net-file refers to {what} ({value}), which is not allowed"


def test_empty_list_item(tmp_path):
    err = refused(tmp_path, basic_config(routes="r.rou.xml, ,r.rou.xml"))
    assert err.status_code == 422 and "route-files" in err.message


def test_synonyms_and_abbreviations_are_inputs_too(tmp_path):
    cfg = config_xml('<n value="net.net.xml"/><routes value="r.rou.xml"/><a value="gone.add.xml"/>')
    err = refused(tmp_path, cfg)
    assert "a (additional-files): gone.add.xml" in err.message


def test_url_encoded_names_are_decoded(tmp_path):
    s = inspect(tmp_path, basic_config(routes="my%20routes.rou.xml"), {"my routes.rou.xml": ROUTES})
    assert "my routes.rou.xml" in s.files


def test_gui_only_options(tmp_path):
    # sumo 1.28 ignores most gui_only options, but still loads gui-settings-file
    ok = basic_config('<gui_only><edgedata-files value="nope.xml"/><start value="true"/></gui_only>')
    assert inspect(tmp_path, ok).config_file == "run.sumocfg"
    bad = basic_config('<gui_only><gui-settings-file value="nope.gui.xml"/></gui_only>')
    with pytest.raises(ScenarioError) as info:
        inspect_archive(scenario_zip(tmp_path, bad, name="g.zip"), None, LIMITS)
    assert info.value.message == ("missing file(s) referenced by run.sumocfg: "
                                  "gui-settings-file: nope.gui.xml")


# ----------------------------------------------------------------- outputs


def test_socket_output(tmp_path):
    err = refused(tmp_path, basic_config(output("tripinfo-output", "localhost:1234")))
    assert err.status_code == 422
    assert err.message == ("option tripinfo-output writes to a network socket (localhost:1234), "
                           "which is not allowed")


def test_socket_output_via_synonym(tmp_path):
    err = refused(tmp_path, basic_config(output("ndump", "10.0.0.1:80")))
    assert err.status_code == 422
    assert "option ndump (netstate-dump) writes to a network socket (10.0.0.1:80)" in err.message


@pytest.mark.parametrize("value, what", [
    ("/tmp/trips.xml", "an absolute path"),
    ("../trips.xml", "a path outside the scenario folder"),
    ("out/../../trips.xml", "a path outside the scenario folder"),
])
def test_output_outside_scenario(tmp_path, value, what):
    err = refused(tmp_path, basic_config(output("summary-output", value)))
    assert err.status_code == 422
    assert err.message == f"option summary-output writes to {what} ({value}), which is not allowed"


def test_log_outside_scenario(tmp_path):
    err = refused(tmp_path, basic_config('<report><log value="/var/log/x"/></report>'))
    assert err.status_code == 422 and "option log writes to an absolute path" in err.message


def test_outputs_collected_and_normalized(tmp_path):
    cfg = basic_config(
        '<output><tripinfo-output value="out/trips.xml"/><fcd-output value="./fcd.xml"/>'
        '<vehroute-output value="stdout"/></output>'
        '<report><log value="logs/sumo.log"/><error-log value="err.txt"/></report>'
    )
    p = make_zip(tmp_path, {"sc/run.sumocfg": cfg, "sc/net.net.xml": NET, "sc/r.rou.xml": ROUTES})
    s = inspect_archive(p, None, LIMITS)
    assert s.root == "sc/"
    assert s.outputs == ("out/trips.xml", "fcd.xml", "err.txt")
    assert s.log_file == "logs/sumo.log"


def test_output_prefix(tmp_path):
    cfg = basic_config('<output><output-prefix value="run1_"/><tripinfo-output value="o/t.xml"/>'
                       '</output><report><log value="l.txt"/></report>')
    s = inspect(tmp_path, cfg)
    assert s.outputs == ("o/run1_t.xml",) and s.log_file == "run1_l.txt"
    err = refused(tmp_path, basic_config('<output><output-prefix value="../../x"/></output>'),
                  name="b.zip")
    assert err.status_code == 422 and "output-prefix" in err.message


# ----------------------------------------------------------------- TraCI


@pytest.mark.parametrize("option, value", [("remote-port", "8813"), ("num-clients", "2")])
def test_traci_waiting_refused(tmp_path, option, value):
    err = refused(tmp_path, basic_config(f'<traci_server><{option} value="{value}"/></traci_server>'))
    assert err.status_code == 422
    assert err.message == (f"option {option} makes SUMO wait for a TraCI client ({value}), "
                           "which is not allowed")


def test_traci_defaults_accepted(tmp_path):
    cfg = basic_config('<traci_server><remote-port value="0"/><num-clients value="1"/></traci_server>')
    assert inspect(tmp_path, cfg).config_file == "run.sumocfg"


# ----------------------------------------------------------------- additional files


@pytest.mark.parametrize("value, what", [
    ("/tmp/e1.xml", "an absolute path"),
    ("localhost:9999", "a network socket"),
    ("../../e1.xml", "a path outside the scenario folder"),
])
def test_additional_file_outputs(tmp_path, value, what):
    add = ('<additional>\n  <e1Detector id="d" lane="a_0" pos="1" period="60"'
           f' file="{value}"/>\n</additional>')
    cfg = basic_config('<input><additional-files value="det/d.add.xml"/></input>')
    cfg = cfg.replace("</input>\n<input>", "")
    err = refused(tmp_path, cfg, {"det/d.add.xml": add})
    assert err.status_code == 422
    assert err.message == (f"element <e1Detector> (line 2) of det/d.add.xml: attribute file "
                           f"writes to {what} ({value}), which is not allowed")


def test_additional_file_relative_output_ok(tmp_path):
    add = '<additional><e1Detector id="d" lane="a_0" pos="1" period="60" file="e1.xml"/></additional>'
    cfg = basic_config('<input><additional-files value="d.add.xml"/></input>').replace(
        "</input>\n<input>", "")
    assert "d.add.xml" in inspect(tmp_path, cfg, {"d.add.xml": add}).files


def test_gzipped_additional_file_is_scanned(tmp_path):
    add = b'<additional><e2Detector id="d" lane="a_0" pos="1" length="5" file="/etc/x"/></additional>'
    cfg = basic_config('<input><additional-files value="d.add.xml.gz"/></input>').replace(
        "</input>\n<input>", "")
    err = refused(tmp_path, cfg, {"d.add.xml.gz": gzip.compress(add)})
    assert err.status_code == 422
    assert "element <e2Detector> (line 1) of d.add.xml.gz: attribute file" in err.message


def test_route_files_are_scanned_for_additional_elements(tmp_path):
    routes = '<routes>\n<inductionLoop id="d" lane="a_0" pos="1" file="srv:7"/>\n</routes>'
    err = refused(tmp_path, basic_config(), {"r.rou.xml": routes})
    assert err.status_code == 422
    assert "of r.rou.xml: attribute file writes to a network socket (srv:7)" in err.message


def test_remote_pedestrian_model_refused(tmp_path):
    err = refused(tmp_path, basic_config('<processing><pedestrian.model value="remote"/></processing>'))
    assert err.status_code == 422 and "pedestrian.model" in err.message


def test_output_suffix(tmp_path):
    cfg = basic_config('<output><output-suffix value="_a"/><tripinfo-output value="t.xml"/></output>')
    assert inspect(tmp_path, cfg).outputs == ("t_a.xml",)


def test_config_too_large(tmp_path):
    cfg = basic_config("<!--" + "x" * (1 << 20) + "-->")
    err = refused(tmp_path, cfg)
    assert err.status_code == 413 and "run.sumocfg" in err.message
