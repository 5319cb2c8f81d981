"""Pure path rules of core.scenario.paths and the expat guard of core.scenario.xmlsafe."""

from __future__ import annotations

import pytest

from core.scenario import ScenarioError
from core.scenario.paths import expansion_problem, is_junk, normalize_entry_name, resolve_reference, sumo_is_socket
from core.scenario.xmlsafe import parse_document


@pytest.mark.parametrize("raw, expected", [
    ("a/b.xml", "a/b.xml"),
    ("./a//b.xml", "a/b.xml"),
    ("dir/", "dir/"),
    ("../a", None),
    ("a/../../b", None),
    ("/abs", None),
    ("C:/x", None),
    ("a\\b", None),
    ("a\x00b", None),
    ("", None),
])
def test_normalize_entry_name(raw, expected):
    assert normalize_entry_name(raw) == expected


@pytest.mark.parametrize("name, junk", [
    ("__MACOSX/x/._a.xml", True), ("p/.DS_Store", True), ("Thumbs.db", True),
    ("p/._run.sumocfg", True), ("p/run.sumocfg", False), ("MACOSX.xml", False),
])
def test_is_junk(name, junk):
    assert is_junk(name) is junk


@pytest.mark.parametrize("value, base, expected", [
    ("out.xml", "", ("out.xml", None)),
    ("out.xml", "sc", ("sc/out.xml", None)),
    ("../r.xml", "sc", ("r.xml", None)),
    ("../../r.xml", "sc", (None, "escapes")),
    ("..", "", (None, "escapes")),
    ("%2e%2e/x", "", (None, "escapes")),
    ("%2Fetc%2Fpasswd", "", (None, "absolute")),
    ("localhost:80", "", (None, "socket")),
    ("localhost%3A80", "", (None, "socket")),
    ("C:\\x.xml", "", (None, "absolute")),
    ("stdout", "", (None, "device")),
    ("NUL", "", (None, "device")),
])
def test_resolve_reference(value, base, expected):
    assert resolve_reference(value, base) == expected


def test_sumo_socket_rule():
    assert sumo_is_socket("ab:1") and not sumo_is_socket("a:b") and not sumo_is_socket("x.xml")


def test_parse_document_refuses_entities():
    with pytest.raises(ScenarioError) as info:
        parse_document(b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', "f.xml")
    assert info.value.status_code == 422 and "f.xml must not contain a DOCTYPE" in info.value.message


def test_parse_document_tree():
    root = parse_document(b"<c>\n<input><net-file value='n'/></input></c>", "f.xml")
    assert [(e.tag, e.line) for e in root.iter()] == [("c", 1), ("input", 2), ("net-file", 2)]


@pytest.mark.parametrize("value, problem", [
    ("${HOME}/x", "${...} (environment expansion)"),
    ("a${UNSET}", "${...} (environment expansion)"),
    ("${unclosed", "${...} (environment expansion)"),
    ("~/x", "~ (home directory expansion)"),
    ("a.xml,~/b.xml", "~ (home directory expansion)"),
    ("a.xml, ~/b.xml", None),  # sumo only expands '~' at the start or right after ','
    ("$HOME/x", None),  # no braces: not expanded
    ("a~b", None),
])
def test_expansion_problem(value, problem):
    assert expansion_problem(value) == problem


def test_attributes_are_not_url_decoded():
    # option values are decoded by sumo, attributes of loaded files are not; both forms are refused alike
    assert resolve_reference("my%20file.xml", "d", decode=False) == ("d/my%20file.xml", None)
    assert resolve_reference("my%20file.xml", "d") == ("d/my file.xml", None)
    assert resolve_reference("%2e%2e/%2e%2e/x", "d", decode=False) == (None, "escapes")


def test_element_iter_is_not_recursive():
    depth = 50_000
    root = parse_document(b"<c>" + b"<a>" * depth + b"</a>" * depth + b"</c>", "f.xml")
    assert sum(1 for _ in root.iter()) == depth + 1
