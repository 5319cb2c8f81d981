"""The validator and the real sumo 1.28 agree: what it accepts runs, what it refuses really escapes.

Accepted scenarios are inspected, extracted with ``extract_scenario`` and run
by the real binary (``SUMO_HOME`` set as the executors set it); each must
exit 0. Each refused attack is also handed to sumo directly, bypassing the
validator, in a run folder with its own ``HOME`` and a secret in the
environment, and the test asserts on the host what sumo then does (a file
outside the run, a secret in a file name, a request to a local web server):
if a sumo release stops doing it, the test says so and the rule can go.
"""
from __future__ import annotations

import gzip
import http.server
import os
import pathlib
import subprocess
import threading
import zipfile

import pytest

from core.executors.local import default_sumo_binary
from core.scenario import ArchiveLimits, ScenarioError, extract_scenario, inspect_archive
from core.waits import free_port
from tests.integration.harness import wait_until
from tests.unit.scenario_archives import SQUARE_ZIP, additional_xml, config_xml, make_zip

pytestmark = pytest.mark.integration

SUMO = default_sumo_binary()
SUMO_HOME = pathlib.Path(SUMO).resolve().parent.parent
LIMITS = ArchiveLimits(max_uncompressed_bytes=64 << 20, max_entries=1000, max_ratio=1000)
SECRET = "secretvalue"


def square() -> dict[str, bytes]:
    with zipfile.ZipFile(SQUARE_ZIP) as zf:
        return {n: zf.read(n) for n in ("square.net.xml", "square.rou.xml")}


def config(body: str = "", net: str = "square.net.xml", routes: str = "square.rou.xml",
           additional: str = "") -> str:
    add = f'<additional-files value="{additional}"/>' if additional else ""
    return config_xml(f'<input><net-file value="{net}"/><route-files value="{routes}"/>{add}</input>\n{body}')


def run_sumo(folder: pathlib.Path, config_file: str, home: pathlib.Path, end: int = 20,
             extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """sumo as the executors run it: in the config's folder, SUMO_HOME set; plus a HOME and a secret."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SUMO_HOME": str(SUMO_HOME), "HOME": str(home),
           "FOO": SECRET, **(extra_env or {})}
    cfg = folder / config_file
    return subprocess.run([SUMO, "-c", cfg.name, "--end", str(end), "--no-step-log"], cwd=cfg.parent, env=env,
                          capture_output=True, text=True, timeout=120)


def accepted_and_run(tmp_path: pathlib.Path, entries: dict, end: int = 20):
    """Inspect, extract and run; sumo must exit 0. Returns (scenario, run folder, result)."""
    path = make_zip(tmp_path, entries)
    scenario = inspect_archive(path, None, LIMITS, max_threads=2)
    run = tmp_path / "run"
    extract_scenario(path, scenario, run)
    home = tmp_path / "home"
    home.mkdir()
    result = run_sumo(run, scenario.config_file, home, end=end)
    assert result.returncode == 0, result.stderr[-2000:]
    return scenario, run, result


def refused_then_run(tmp_path: pathlib.Path, entries: dict, *needles: str, end: int = 20):
    """The validator refuses (message contains every needle); then sumo runs the same files unchecked."""
    path = make_zip(tmp_path, entries)
    with pytest.raises(ScenarioError) as info:
        inspect_archive(path, None, LIMITS)
    assert info.value.status_code == 422, info.value
    for needle in needles:
        assert needle in info.value.message, info.value.message
    run = tmp_path / "run"
    with zipfile.ZipFile(path) as zf:
        zf.extractall(run)
    home = tmp_path / "home"
    home.mkdir()
    (home / "sub").mkdir()
    cfg = next(n for n in entries if n.endswith(".sumocfg"))
    return run, home, run_sumo(run, cfg, home, end=end)


def host_files(*roots: pathlib.Path) -> set[str]:
    return {str(p) for root in roots for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------- accepted: sumo runs them


def test_phemlight_path_missing_falls_back_to_sumo_data(tmp_path):
    """phemlight-path names a folder the archive lacks: sumo uses $SUMO_HOME/data/emissions/PHEMlight(5)."""
    files = square()
    routes = files["square.rou.xml"].replace(
        b"<routes>", b'<routes><vType id="p4" emissionClass="PHEMlight/PC_G_EU4"/>'
                     b'<vType id="p5" emissionClass="PHEMlight5/PC_EU4_D_MW"/>'
    ).replace(b'<flow id="horiz" route', b'<flow id="horiz" type="p4" route'
              ).replace(b'<flow id="vertic" route', b'<flow id="vertic" type="p5" route')
    assert routes.count(b'type="p') == 2
    cfg = config('<emissions><phemlight-path value="PHEMlight/"/><phemlight-year value="2020"/></emissions>'
                 '<output><emission-output value="em.xml"/></output>')
    scenario, run, _ = accepted_and_run(tmp_path, {**files, "square.rou.xml": routes, "run.sumocfg": cfg})
    emissions = (run / "em.xml").read_text()
    assert 'eclass="PHEMlight/PC_G_EU4"' in emissions and 'eclass="PHEMlight5/PC_EU4_D_MW"' in emissions
    assert scenario.outputs == ("em.xml",)


@pytest.mark.parametrize("encode", [
    lambda t: t.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"),
    lambda t: b"\xef\xbb\xbf" + t.encode(),
    lambda t: t.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1"),
], ids=["utf16", "utf8-bom", "latin1"])
def test_config_encodings(tmp_path, encode):
    cfg = encode(config('<output><tripinfo-output value="trips.xml"/></output>'))
    scenario, run, _ = accepted_and_run(tmp_path, {**square(), "run.sumocfg": cfg}, end=100)
    assert scenario.outputs == ("trips.xml",) and (run / "trips.xml").exists()


def test_gzipped_network_and_routes(tmp_path):
    files = {k + ".gz": gzip.compress(v) for k, v in square().items()}
    cfg = config(net="square.net.xml.gz", routes="square.rou.xml.gz")
    accepted_and_run(tmp_path, {**files, "run.sumocfg": cfg})


def test_includes_relative_to_the_including_file(tmp_path):
    add = additional_xml('<include href="inc/i.xml"/><include href="inc/j.xml"/>')
    inc = additional_xml('<include href="j.xml"/><edgeData id="e" period="10" file="out-i.xml"/>')
    files = {**square(), "run.sumocfg": config(additional="sub/a.add.xml"), "sub/a.add.xml": add,
             "sub/inc/i.xml": inc, "sub/inc/j.xml": additional_xml('<edgeData id="f" file="out-j.xml"/>')}
    _, run, _ = accepted_and_run(tmp_path, files)
    assert (run / "sub/inc/out-i.xml").exists() and (run / "sub/inc/out-j.xml").exists()


def test_what_sumo_takes_literally(tmp_path):
    """'$VAR' without braces and '~' after ', ' are no expansion: sumo writes and reads them as named."""
    cfg = config('<output><tripinfo-output value="$HOME.xml"/></output>',
                 routes="square.rou.xml, ~/more.rou.xml")
    files = {**square(), "run.sumocfg": cfg, "~/more.rou.xml": b"<routes/>"}
    _, run, _ = accepted_and_run(tmp_path, files, end=100)
    assert (run / "$HOME.xml").exists()
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())


def test_file_param_relative_to_the_config_folder(tmp_path):
    files = square()
    routes = files["square.rou.xml"].replace(
        b"<routes>", b'<routes><vType id="s"><param key="has.ssm.device" value="true"/>'
                     b'<param key="device.ssm.file" value="ssm.xml"/></vType>'
    ).replace(b'<flow id="horiz" route', b'<flow id="horiz" type="s" route')
    _, run, _ = accepted_and_run(tmp_path, {**files, "square.rou.xml": routes, "run.sumocfg": config()}, end=30)
    assert (run / "ssm.xml").exists()


def test_config_nested_5000_deep(tmp_path):
    accepted_and_run(tmp_path, {**square(), "run.sumocfg": config("<a>" * 5000 + "</a>" * 5000)})


def test_sumo_schemas_resolve_offline_even_with_validation_always(tmp_path):
    xsi = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    add = (f'<additional {xsi} xsi:noNamespaceSchemaLocation="http://sumo.dlr.de/xsd/additional_file.xsd">'
           '<edgeData id="e" file="e.xml"/></additional>')
    cfg = config('<report><xml-validation value="always"/></report>', additional="a.add.xml")
    accepted_and_run(tmp_path, {**square(), "run.sumocfg": cfg, "a.add.xml": add})


def test_threads_within_cpu_request(tmp_path):
    accepted_and_run(tmp_path, {**square(), "run.sumocfg": config('<processing><threads value="2"/></processing>')})


# ----------------------------------------------------------------- refused: what sumo would have done


def test_unset_variable_makes_an_absolute_output(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    cfg = config(f'<output><summary-output value="${{UNSET_VAR}}{outside}/x.xml"/></output>')
    run, home, result = refused_then_run(tmp_path, {**square(), "run.sumocfg": cfg},
                                         "option summary-output (line", "uses ${...} (environment expansion)")
    assert result.returncode == 0, result.stderr
    assert (outside / "x.xml").exists()  # written outside the run folder


def test_secret_in_an_output_name(tmp_path):
    cfg = config('<output><tripinfo-output value="${FOO}.xml"/></output>')
    run, home, result = refused_then_run(tmp_path, {**square(), "run.sumocfg": cfg}, "option tripinfo-output")
    assert (run / f"{SECRET}.xml").exists()


def test_home_in_a_detector_file(tmp_path):
    add = additional_xml('<edgeData id="e" file="~/sub/x.xml"/>')
    files = {**square(), "run.sumocfg": config(additional="a.add.xml"), "a.add.xml": add}
    run, home, result = refused_then_run(tmp_path, files, "element <edgeData> (line 2) of a.add.xml",
                                         "attribute file uses ~ (home directory expansion)")
    assert (home / "sub" / "x.xml").exists()


def test_secret_through_an_included_file(tmp_path):
    files = {**square(), "run.sumocfg": config(additional="a.add.xml"),
             "a.add.xml": additional_xml('<include href="inc.xml"/>'),
             "inc.xml": additional_xml('<edgeData id="e" file="${FOO}-inc.xml"/>')}
    run, home, result = refused_then_run(tmp_path, files, "of inc.xml: attribute file uses ${...}")
    assert (run / f"{SECRET}-inc.xml").exists()


def test_secret_through_a_device_param(tmp_path):
    files = square()
    routes = files["square.rou.xml"].replace(
        b"<routes>", b'<routes><vType id="s"><param key="has.ssm.device" value="true"/>'
                     b'<param key="device.ssm.file" value="${FOO}-ssm.xml"/></vType>'
    ).replace(b'<flow id="horiz" route', b'<flow id="horiz" type="s" route')
    run, home, result = refused_then_run(tmp_path, {**files, "square.rou.xml": routes, "run.sumocfg": config()},
                                         'element <param key="device.ssm.file">', end=30)
    assert (run / f"{SECRET}-ssm.xml").exists()


def test_include_cycle_crashes_sumo(tmp_path):
    files = {**square(), "run.sumocfg": config(additional="a.add.xml"),
             "a.add.xml": additional_xml('<include href="a.add.xml"/>')}
    run, home, result = refused_then_run(tmp_path, files, "a.add.xml includes itself")
    assert result.returncode != 0


class _Recorder(http.server.BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        _Recorder.paths.append(self.path)
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_schema_location_makes_sumo_fetch_from_the_network(tmp_path):
    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        xsi = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        add = f'<additional {xsi} xsi:noNamespaceSchemaLocation="http://127.0.0.1:{port}/x.xsd"/>'
        cfg = config('<report><xml-validation value="auto"/></report>', additional="a.add.xml")
        refused_then_run(tmp_path, {**square(), "run.sumocfg": cfg, "a.add.xml": add},
                         "attribute xsi:noNamespaceSchemaLocation names the schema")
        wait_until(lambda: "/x.xsd" in _Recorder.paths, timeout=10, what="sumo's schema request")
    finally:
        server.shutdown()
        server.server_close()
