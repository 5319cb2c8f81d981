"""Where the CLI writes a downloaded result: inside the download folder, whatever name the service lists."""
from __future__ import annotations

from pathlib import Path

import pytest
import typer

from cli.main import result_path


@pytest.mark.parametrize("name, parts", [("tripinfos.xml", ("tripinfos.xml",)),
                                         ("run/out/edges.xml", ("run", "out", "edges.xml"))])
def test_listed_names_land_inside_the_folder(tmp_path: Path, name, parts):
    assert result_path(tmp_path, name) == tmp_path.joinpath(*parts)


@pytest.mark.parametrize("name", ["../escape.xml", "run/../../escape", "/etc/passwd", "", ".", "a\\..\\b"])
def test_names_reaching_outside_are_refused(tmp_path: Path, name):
    with pytest.raises(typer.Exit):
        result_path(tmp_path, name)
