"""Every refusal of ``POST /jobs``, through the real service, with crafted archives.

Each test uses a fresh tenant and, after the refusal, checks that nothing was
stored: the tenant's ``GET /jobs`` is empty.  Messages are checked to name the
problem (the entry, the option, the missing file, the limit).
"""
from __future__ import annotations

import os
import zipfile

import httpx
import pytest

from tests.integration.harness import Api
from tests.unit.scenario_archives import (
    NET,
    ROUTES,
    SQUARE_ZIP,
    basic_config,
    config_xml,
    folder_scenario_with_junk,
    make_zip,
    overlapping_zip,
    scenario_zip,
    symlink_zip,
    zeros_zip,
)

pytestmark = pytest.mark.integration


def jobs_of(api: Api, tenant: dict) -> list[dict]:
    r = api.http.get("/jobs", headers=api.auth(tenant))
    assert r.status_code == 200, r.text
    return r.json()["jobs"]


def assert_nothing_stored(api: Api, tenant: dict) -> None:
    assert jobs_of(api, tenant) == []
    r = api.http.get("/jobs", params={"status": "QUEUED"}, headers=api.auth(tenant))
    assert r.json()["jobs"] == []


def refused(api: Api, tenant: dict, archive, status: int, *needles: str, **kw) -> str:
    """Submit, expect ``status`` and a detail containing every needle; nothing stored."""
    if hasattr(archive, "read_bytes"):
        archive = archive.read_bytes()
    r = api.submit(tenant, archive, **kw)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str), detail
    for needle in needles:
        assert needle in detail, f"{needle!r} not in {detail!r}"
    assert_nothing_stored(api, tenant)
    return detail


def square_entries() -> dict[str, bytes]:
    with zipfile.ZipFile(SQUARE_ZIP) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


# ----------------------------------------------------------------- ZIP-level refusals


def test_not_a_zip(api, tenant):
    refused(api, tenant, b"this is plainly not a zip archive\n" * 10, 400, "not a valid ZIP")


def test_empty_upload_is_not_a_zip(api, tenant):
    refused(api, tenant, b"", 400, "not a valid ZIP")


def test_dotdot_entry(api, tenant, tmp_path):
    path = scenario_zip(tmp_path, extra={"../evil.xml": b"<x/>"})
    refused(api, tenant, path, 422, "unsafe entry name", "../evil.xml")


def test_absolute_entry(api, tenant, tmp_path):
    path = scenario_zip(tmp_path, extra={"/etc/cron.d/evil": b"x"})
    refused(api, tenant, path, 422, "unsafe entry name", "/etc/cron.d/evil")


def test_symlink_entry(api, tenant, tmp_path):
    refused(api, tenant, symlink_zip(tmp_path), 422, "link.xml", "symbolic link")


def post_on_own_connection(api, tenant, path):
    """Submit on a fresh connection with a bounded timeout: the server may close it after refusing."""
    with httpx.Client(base_url=str(api.http.base_url), timeout=httpx.Timeout(30)) as http:
        return http.post(
            "/jobs",
            data={"scenario_id": path.stem, "cpu_request": "1", "memory_gi": "1"},
            files={"sumo_files": (path.name, path.read_bytes(), "application/zip")},
            headers=api.auth(tenant),
        )


def test_zip_bomb_answers_413(api, tenant, tmp_path):
    # 200 MiB of zeros deflate to well under the 5 MB upload limit
    path = zeros_zip(tmp_path, {"bomb.xml": 200 << 20})
    assert path.stat().st_size < 4 << 20
    r = post_on_own_connection(api, tenant, path)
    assert r.status_code == 413, r.text
    assert "bomb.xml" in r.json()["detail"]
    assert_nothing_stored(api, tenant)


def test_overlapping_entries_bomb(api, tenant, tmp_path):
    refused(api, tenant, overlapping_zip(tmp_path), 413, "overlap")


def test_too_many_entries(api, tenant, tmp_path):
    entries = dict(square_entries())
    entries.update({f"pad/{i}.txt": b"" for i in range(2001)})
    path = make_zip(tmp_path, entries)
    refused(api, tenant, path, 413, "entries", "limit of 2000")


def test_upload_over_max_file_size(api, tenant, tmp_path):
    # ~6 MB of incompressible bytes, stored: the compressed upload itself is over MAX_FILE_SIZE_MB=5
    entries = dict(square_entries())
    entries["noise.bin"] = os.urandom(6 << 20)
    path = make_zip(tmp_path, entries, compression=zipfile.ZIP_STORED)
    assert path.stat().st_size > 6 << 20
    r = post_on_own_connection(api, tenant, path)
    assert r.status_code == 413, r.text
    assert "MAX_FILE_SIZE_MB" in r.json()["detail"]
    assert_nothing_stored(api, tenant)


def test_upload_over_max_file_size_without_content_length(api, tenant, tmp_path):
    """A chunked upload (no Content-Length) is cut off while it streams in."""
    entries = dict(square_entries())
    entries["noise.bin"] = os.urandom(6 << 20)
    body_zip = make_zip(tmp_path, entries, compression=zipfile.ZIP_STORED).read_bytes()
    boundary = "sumo-k8-test-boundary"
    parts = []
    for name, value in (("scenario_id", "big"), ("cpu_request", "1"), ("memory_gi", "1")):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="sumo_files"; filename="big.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n".encode()
    )
    payload = b"".join(parts) + body_zip + f"\r\n--{boundary}--\r\n".encode()

    def chunks():
        for i in range(0, len(payload), 256 * 1024):
            yield payload[i:i + 256 * 1024]

    headers = {**api.auth(tenant), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    with httpx.Client(base_url=str(api.http.base_url), timeout=httpx.Timeout(30)) as http:
        r = http.post("/jobs", content=chunks(), headers=headers)
    assert r.status_code == 413, r.text
    assert "MAX_FILE_SIZE_MB" in r.json()["detail"]
    assert_nothing_stored(api, tenant)


# ----------------------------------------------------------------- configuration refusals


def test_no_sumocfg(api, tenant, tmp_path):
    path = make_zip(tmp_path, {"net.net.xml": NET, "r.rou.xml": ROUTES})
    refused(api, tenant, path, 422, "no .sumocfg")


def test_several_sumocfg_without_choice_lists_them(api, tenant, tmp_path):
    path = scenario_zip(tmp_path, extra={"alt.sumocfg": basic_config(), "sub/third.sumocfg": basic_config("", "../net.net.xml", "../r.rou.xml")})
    detail = refused(api, tenant, path, 422, "several .sumocfg", "config_file")
    for name in ("alt.sumocfg", "run.sumocfg", "sub/third.sumocfg"):
        assert name in detail


def test_config_file_not_in_archive(api, tenant, tmp_path):
    path = scenario_zip(tmp_path, extra={"alt.sumocfg": basic_config()})
    refused(api, tenant, path, 422, "nope.sumocfg", "alt.sumocfg", "run.sumocfg", config_file="nope.sumocfg")


def test_config_file_chosen_among_several_is_accepted(api, tenant, tmp_path):
    entries = square_entries()
    entries["alt.sumocfg"] = entries["square.sumocfg"]
    entries["broken.sumocfg"] = b"<configuration><oops></configuration>"
    path = make_zip(tmp_path, entries)
    r = api.submit(tenant, path.read_bytes(), config_file="alt.sumocfg")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["config_file"] == "alt.sumocfg"
    assert body["status"] == "QUEUED"
    assert r.headers["Location"] == f"/jobs/{body['job_id']}"
    job = api.job(tenant, body["job_id"])
    assert job["config_file"] == "alt.sumocfg"
    assert [j["job_id"] for j in jobs_of(api, tenant)] == [body["job_id"]]
    api.http.delete(f"/jobs/{body['job_id']}", headers=api.auth(tenant))  # not needed to run


def test_malformed_xml_config(api, tenant, tmp_path):
    path = scenario_zip(tmp_path, config="<configuration><input></configuration>")
    refused(api, tenant, path, 422, "run.sumocfg", "not well-formed XML")


def test_wrong_config_root(api, tenant, tmp_path):
    path = scenario_zip(tmp_path, config=config_xml("", root="routes"))
    refused(api, tenant, path, 422, "run.sumocfg", "<routes>")


def test_unknown_option(api, tenant, tmp_path):
    path = scenario_zip(tmp_path, config=basic_config('<processing><warp-speed value="9"/></processing>'))
    refused(api, tenant, path, 422, "unknown option", "warp-speed")


def test_missing_referenced_inputs_are_each_named(api, tenant, tmp_path):
    config = config_xml(
        "<input>\n"
        '  <net-file value="net.net.xml"/>\n'
        '  <route-files value="r.rou.xml, gone1.rou.xml, gone2.rou.xml"/>\n'
        '  <additional-files value="detectors.add.xml"/>\n'
        "</input>"
    )
    path = scenario_zip(tmp_path, config=config)
    refused(api, tenant, path, 422, "missing file", "gone1.rou.xml", "gone2.rou.xml", "detectors.add.xml",
            "route-files", "additional-files")


def test_missing_net_file(api, tenant, tmp_path):
    path = make_zip(tmp_path, {"r.rou.xml": ROUTES, "run.sumocfg": basic_config()})
    detail = refused(api, tenant, path, 422, "missing file", "net-file", "net.net.xml")
    assert "r.rou.xml" not in detail.split("missing file")[1]


def test_input_outside_the_scenario(api, tenant, tmp_path):
    path = scenario_zip(tmp_path, config=basic_config(net="../../etc/net.net.xml"))
    refused(api, tenant, path, 422, "net-file", "outside the scenario folder")


def test_socket_output(api, tenant, tmp_path):
    path = scenario_zip(tmp_path, config=basic_config('<output><tripinfo-output value="localhost:1234"/></output>'))
    refused(api, tenant, path, 422, "tripinfo-output", "network socket", "localhost:1234")


def test_absolute_output(api, tenant, tmp_path):
    path = scenario_zip(tmp_path, config=basic_config('<output><fcd-output value="/tmp/fcd.xml"/></output>'))
    refused(api, tenant, path, 422, "fcd-output", "absolute path")


def test_traci_remote_port(api, tenant, tmp_path):
    path = scenario_zip(tmp_path, config=basic_config('<traci_server><remote-port value="8813"/></traci_server>'))
    refused(api, tenant, path, 422, "remote-port", "TraCI", "8813")


def test_detector_writing_to_socket_in_additional_file(api, tenant, tmp_path):
    add = b'<additional><inductionLoop id="d" lane="e_0" pos="1" period="60" file="srv:7"/></additional>'
    config = basic_config().replace('<route-files value="r.rou.xml"/>', '<route-files value="r.rou.xml"/>\n  <additional-files value="d.add.xml"/>')
    path = scenario_zip(tmp_path, config=config, extra={"d.add.xml": add})
    refused(api, tenant, path, 422, "d.add.xml", "network socket", "srv:7")


# ----------------------------------------------------------------- resource requests and form fields


def test_cpu_over_tenant_max_cpu(api, tmp_path):
    tenant = api.register(max_cpu=2)
    refused(api, tenant, SQUARE_ZIP, 422, "max_cpu", "3", cpu=3)


def test_memory_over_tenant_max_memory(api, tmp_path):
    tenant = api.register(max_memory_gi=2)
    refused(api, tenant, SQUARE_ZIP, 422, "max_memory_gi", "5", memory=5)


@pytest.mark.parametrize("field,value", [("cpu_request", "0"), ("cpu_request", "-1"), ("cpu_request", "1.5"),
                                         ("cpu_request", "two"), ("cpu_request", ""), ("memory_gi", "0"),
                                         ("memory_gi", "x"), ("cpu_request", "1001")])
def test_bad_resource_request(api, tenant, field, value):
    form = {"scenario_id": "s", "cpu_request": "1", "memory_gi": "1", field: value}
    r = api.http.post("/jobs", data=form, files={"sumo_files": ("s.zip", SQUARE_ZIP.read_bytes(), "application/zip")},
                      headers=api.auth(tenant))
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"]
    assert_nothing_stored(api, tenant)


@pytest.mark.parametrize("missing", ["scenario_id", "cpu_request", "memory_gi", "sumo_files"])
def test_missing_form_field(api, tenant, missing):
    form = {"scenario_id": "s", "cpu_request": "1", "memory_gi": "1"}
    files = {"sumo_files": ("s.zip", SQUARE_ZIP.read_bytes(), "application/zip")}
    if missing == "sumo_files":
        files = {"other": ("x.txt", b"x", "text/plain")}
    else:
        del form[missing]
    r = api.http.post("/jobs", data=form, files=files, headers=api.auth(tenant))
    assert r.status_code == 422, r.text
    assert missing in r.json()["detail"]
    assert_nothing_stored(api, tenant)


def test_sumo_files_as_plain_field_is_refused(api, tenant):
    form = {"scenario_id": "s", "cpu_request": "1", "memory_gi": "1", "sumo_files": "not a file"}
    r = api.http.post("/jobs", data=form, headers=api.auth(tenant))
    assert r.status_code == 422, r.text
    assert "sumo_files" in r.json()["detail"]
    assert_nothing_stored(api, tenant)


def test_empty_scenario_id(api, tenant):
    r = api.submit(tenant, "square.zip", scenario_id="")
    assert r.status_code == 422, r.text
    assert "scenario_id" in r.json()["detail"]
    assert_nothing_stored(api, tenant)


def test_nul_byte_in_scenario_id(api, tenant):
    """PostgreSQL refuses NUL in text: a valid archive with such a scenario_id must get a 422, not a 500."""
    form = {"scenario_id": "a\x00b", "cpu_request": "1", "memory_gi": "1"}
    # own connection: after a 500 the server drops the keep-alive connection of the shared client
    with httpx.Client(base_url=str(api.http.base_url), timeout=httpx.Timeout(30)) as http:
        r = http.post("/jobs", data=form, files={"sumo_files": ("s.zip", SQUARE_ZIP.read_bytes(), "application/zip")},
                      headers=api.auth(tenant))
    assert r.status_code == 422, r.text
    assert "scenario_id" in r.json()["detail"]
    assert_nothing_stored(api, tenant)


# ----------------------------------------------------------------- accepted archive with litter


def test_macos_junk_and_top_level_folder_runs(api, tenant, tmp_path):
    path = folder_scenario_with_junk(tmp_path)
    r = api.submit(tenant, path.read_bytes(), scenario_id="finder")
    assert r.status_code == 202, r.text
    assert r.json()["config_file"] == "square.sumocfg"
    job = api.wait_status(tenant, r.json()["job_id"], timeout=90)
    assert job["status"] == "SUCCEEDED", job
    assert job["exit_code"] == 0


def test_refusals_leave_the_tenant_with_no_jobs(api, tenant, tmp_path):
    """Several refusals in a row, then one good submission: only that one is listed."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for archive in (b"junk", symlink_zip(tmp_path / "a").read_bytes(),
                    scenario_zip(tmp_path / "b", config="<configuration>").read_bytes()):
        assert api.submit(tenant, archive).status_code in (400, 422)
    assert api.submit(tenant, "square.zip", cpu=99).status_code == 422
    assert_nothing_stored(api, tenant)
    job_id = api.submit_ok(tenant, "square.zip")
    assert [j["job_id"] for j in jobs_of(api, tenant)] == [job_id]
    api.http.delete(f"/jobs/{job_id}", headers=api.auth(tenant))


# ----------------------------------------------------------------- what the loaded files point at


def square_with(config_body: str = "", additional: dict | None = None, routes: bytes | None = None) -> dict:
    """square.zip's files with ``config_body`` added to its config and ``additional`` files loaded."""
    entries = square_entries()
    cfg = entries["square.sumocfg"].decode()
    if additional:
        cfg = cfg.replace("</input>", f'    <additional-files value="{",".join(additional)}"/>\n    </input>')
        entries.update({k: v.encode() if isinstance(v, str) else v for k, v in additional.items()})
    if routes is not None:
        entries["square.rou.xml"] = routes
    entries["square.sumocfg"] = cfg.replace("</configuration>", f"{config_body}\n</configuration>").encode()
    return entries


def test_environment_expansion_in_an_option(api, tenant, tmp_path):
    path = make_zip(tmp_path, square_with('<output><tripinfo-output value="${ADMIN_KEY}.xml"/></output>'))
    detail = refused(api, tenant, path, 422, "square.sumocfg: option tripinfo-output (line",
                     "uses ${...} (environment expansion), which is not allowed")
    assert "test-admin-key" not in detail


def test_home_expansion_in_a_detector_file(api, tenant, tmp_path):
    path = make_zip(tmp_path, square_with(additional={"d.add.xml": '<additional><edgeData id="e" '
                                                                   'file="~/x.xml"/></additional>'}))
    refused(api, tenant, path, 422, "element <edgeData> (line 1) of d.add.xml: attribute file",
            "~ (home directory expansion)")


def test_missing_included_file(api, tenant, tmp_path):
    path = make_zip(tmp_path, square_with(additional={"d.add.xml": '<additional>\n<include href="sub/i.xml"/>'
                                                                   '\n</additional>'}))
    refused(api, tenant, path, 422, "element <include> (line 2) of d.add.xml includes sub/i.xml",
            "not in the archive")


def test_device_param_writing_outside(api, tenant, tmp_path):
    routes = square_entries()["square.rou.xml"].replace(
        b"<routes>", b'<routes><vType id="s"><param key="device.ssm.file" value="/tmp/ssm.xml"/></vType>')
    path = make_zip(tmp_path, square_with(routes=routes))
    refused(api, tenant, path, 422, 'element <param key="device.ssm.file">', "of square.rou.xml",
            "absolute path (/tmp/ssm.xml)")


def test_threads_over_cpu_request(api, tenant, tmp_path):
    path = make_zip(tmp_path, square_with('<processing><threads value="4"/></processing>'))
    refused(api, tenant, path, 422, "option threads (line", "4 threads", "cpu_request of 2", cpu=2)


def test_schema_location_outside_refused(api, tenant, tmp_path):
    add = ('<additional xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           'xsi:noNamespaceSchemaLocation="file:///etc/passwd"/>')
    path = make_zip(tmp_path, square_with(additional={"d.add.xml": add}))
    refused(api, tenant, path, 422, "of d.add.xml: attribute xsi:noNamespaceSchemaLocation", "file:///etc/passwd")


def test_huge_tag_in_gzipped_routes_is_413(api, tenant, tmp_path):
    """A 20 MB tag inflated from a few KB: refused before the parser buffers it."""
    import gzip

    routes = gzip.compress(b'<routes><vehicle id="' + b"v" * (20 << 20) + b'"/></routes>')
    entries = square_with()
    entries["square.rou.xml"] = routes  # sumo reads gzip by its magic bytes, whatever the name
    path = make_zip(tmp_path, entries, compression=zipfile.ZIP_STORED)
    refused(api, tenant, path, 413, "square.rou.xml: a single tag or comment", "longer than")


def test_gzip_inflation_is_one_budget_per_archive(api, tenant, tmp_path):
    """Three gzip members of 30 MB each, under the 64 MB limit one by one, over it together."""
    import gzip

    filler = gzip.compress(b"<additional>" + b"<x/>" * (30 << 18) + b"</additional>", compresslevel=9)
    adds = {f"a{i}.add.xml": filler for i in range(3)}
    path = make_zip(tmp_path, square_with(additional=adds), compression=zipfile.ZIP_STORED)
    refused(api, tenant, path, 413, "a2.add.xml inflates beyond")


def test_config_nested_5000_deep_is_accepted(api, tenant, tmp_path):
    path = make_zip(tmp_path, square_with("<a>" * 5000 + "</a>" * 5000))
    job_id = api.submit_ok(tenant, path.read_bytes())
    api.http.delete(f"/jobs/{job_id}", headers=api.auth(tenant))


def test_binary_garbage_named_xml(api, tenant, tmp_path):
    path = make_zip(tmp_path, square_with(additional={"d.add.xml": bytes(range(256)) * 16}))
    refused(api, tenant, path, 422, "d.add.xml is not well-formed XML")


def test_utf16_config_with_missing_phemlight_folder_runs(api, tenant, tmp_path):
    """sumo reads UTF-16 configs and falls back to its own PHEMlight data: accepted, and the job succeeds."""
    entries = square_with('<emissions><phemlight-path value="PHEMlight/"/></emissions>')
    entries["square.rou.xml"] = entries["square.rou.xml"].replace(
        b"<routes>", b'<routes><vType id="p" emissionClass="PHEMlight/PC_G_EU4"/>').replace(
        b'<flow id="horiz" route', b'<flow id="horiz" type="p" route')
    text = entries["square.sumocfg"].decode()
    entries["square.sumocfg"] = text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    path = make_zip(tmp_path, entries)
    job_id = api.submit_ok(tenant, path.read_bytes())
    job = api.wait_status(tenant, job_id, timeout=90)
    assert job["status"] == "SUCCEEDED", job
