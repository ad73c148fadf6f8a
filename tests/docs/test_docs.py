"""The generated option docs (docs/reference/options.md, docs/coming-from.md, conf/h2gate.toml) and --help match
the options table."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from h2gate import options_doc
from h2gate.config import Config, fields, load_config, read_toml

ROOT = Path(__file__).resolve().parents[2]
OPTIONS_PAGE = ROOT / "docs" / "reference" / "options.md"
PEERS_PAGE = ROOT / "docs" / "coming-from.md"
CONF = ROOT / "conf" / "h2gate.toml"
SETTING_LINE = re.compile(r"^# ([a-z0-9_]+) = (.*)$")


def uncomment(text: str) -> str:
    """The example config file with every ``# key = value`` line turned on."""
    names = {f.name for f in fields()}
    out = []
    for line in text.splitlines():
        m = SETTING_LINE.match(line)
        out.append(line[2:] if m and m.group(1) in names else line)
    return "\n".join(out) + "\n"


def readme_rows() -> list[str]:
    text = OPTIONS_PAGE.read_text(encoding="utf-8")
    section = text[text.index(options_doc.README_START) : text.index(options_doc.README_END)]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Flag")]


def test_generated_docs_are_current() -> None:
    stale = options_doc.stale(ROOT)
    assert stale == [], f"{', '.join(stale)} out of date: run python -m h2gate.options_doc --write"


def test_options_page_has_one_row_per_option() -> None:
    rows = readme_rows()
    assert len(rows) == len(fields())
    for f in fields():
        env = f"`H2GATE_{f.name.upper()}`"
        matching = [row for row in rows if env in row]
        assert len(matching) == 1, f.name
        assert f.metadata["help"] in matching[0]
    app_row = next(row for row in rows if "`H2GATE_APP`" in row)
    assert app_row.startswith("| `APP` (argument) | `H2GATE_APP` | `app` |")
    bind_row = next(row for row in rows if "`H2GATE_BIND`" in row)
    assert bind_row.startswith("| `-b`, `--bind` | `H2GATE_BIND` | `bind` | `127.0.0.1:8000` |")
    streams_row = next(row for row in rows if "`H2GATE_MAX_CONCURRENT_STREAMS`" in row)
    assert "| `100` |" in streams_row and "1 to 2147483647" in streams_row


def test_generated_sections_keep_text_outside_the_markers() -> None:
    readme = "# Title\n\nintro\n\n## Options\n\n<!-- options:start -->\nold\n<!-- options:end -->\n\nafter\n"
    new = options_doc.replace_readme_section(readme, "TABLE")
    assert new == "# Title\n\nintro\n\n## Options\n\n<!-- options:start -->\nTABLE\n<!-- options:end -->\n\nafter\n"
    assert options_doc.replace_readme_section(new, "TABLE") == new
    with pytest.raises(ValueError, match="markers"):
        options_doc.replace_readme_section("# no markers\n", "TABLE")


def test_conf_file_is_valid_toml_and_all_commented_out() -> None:
    text = CONF.read_text(encoding="utf-8")
    assert tomllib.loads(text) == {}
    assert "defaults < this file < H2GATE_* environment" in text


def test_conf_file_uncommented_loads_with_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "h2gate.toml"
    path.write_text(uncomment(CONF.read_text(encoding="utf-8")))
    values = read_toml(str(path))  # raises on any unknown key or wrong type
    # Every option but --config itself has a line.
    assert set(values) == {f.name for f in fields()} - {"config"}
    defaults = Config()
    for f in fields():
        default = getattr(defaults, f.name)
        if f.name != "config" and default is not None:
            assert values[f.name] == default, f.name
            assert type(values[f.name]) is type(default), f.name
    # The whole file also passes load_config's cross-checks.
    config = load_config({"config": str(path)}, {})
    assert config.app == values["app"] and config.certfile == values["certfile"]


def test_conf_file_documents_each_option() -> None:
    text = CONF.read_text(encoding="utf-8")
    for f in fields():
        if f.name == "config":
            continue
        env = f"H2GATE_{f.name.upper()}"
        block = text[: text.index(f"\n# {f.name} = ")]
        block = block[block.rindex("\n\n") :]
        assert env in block, f.name
        assert " ".join(f.metadata["help"].split()) in " ".join(line.lstrip("# ") for line in block.splitlines())


def test_help_shows_every_option() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("H2GATE_")}
    env["COLUMNS"] = "200"
    result = subprocess.run(
        [sys.executable, "-m", "h2gate", "--help"], env=env, capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())
    assert help_text.startswith("Usage: h2gate [OPTIONS] [APP]")
    for f in fields():
        if f.name == "app":
            continue  # the positional APP, checked above
        for flag in options_doc.cli_flags(f):
            assert re.search(rf"(^|[\s,/]){re.escape(flag)}([\s,/]|$)", help_text), flag
        assert f"env: H2GATE_{f.name.upper()}" in help_text, f.name
        assert " ".join(f.metadata["help"].split()) in help_text, f.name


def test_check_and_write_commands(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "docs" / "reference").mkdir(parents=True)
    shutil.copy(CONF, tmp_path / "conf" / "h2gate.toml")
    shutil.copy(PEERS_PAGE, tmp_path / "docs" / "coming-from.md")
    options_page = tmp_path / "docs" / "reference" / "options.md"
    options_page.write_text(
        "# Options\n\nabove\n\n<!-- options:start -->\nstale table\n<!-- options:end -->\n\nbelow\n"
    )
    command = [sys.executable, "-m", "h2gate.options_doc", "--root", str(tmp_path)]

    check = subprocess.run([*command, "--check"], capture_output=True, text=True, timeout=20)
    assert check.returncode == 1
    assert "docs/reference/options.md is stale" in check.stderr
    assert "h2gate.toml" not in check.stderr and "coming-from" not in check.stderr

    (tmp_path / "conf" / "h2gate.toml").write_text("# hand-edited\n")
    check = subprocess.run([*command, "--check"], capture_output=True, text=True, timeout=20)
    assert check.returncode == 1
    assert "options.md is stale" in check.stderr and "conf/h2gate.toml is stale" in check.stderr

    write = subprocess.run([*command, "--write"], capture_output=True, text=True, timeout=20)
    assert write.returncode == 0, write.stderr
    assert (tmp_path / "conf" / "h2gate.toml").read_text() == CONF.read_text()
    page = options_page.read_text()
    assert page.startswith("# Options\n\nabove\n\n<!-- options:start -->\n")
    assert page.endswith("<!-- options:end -->\n\nbelow\n")
    assert "stale table" not in page and "`H2GATE_BACKLOG`" in page

    check = subprocess.run([*command, "--check"], capture_output=True, text=True, timeout=20)
    assert (check.returncode, check.stderr) == (0, "")


def test_check_without_markers_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "docs" / "reference").mkdir(parents=True)
    (tmp_path / "docs" / "reference" / "options.md").write_text("# Options\n")
    result = subprocess.run(
        [sys.executable, "-m", "h2gate.options_doc", "--root", str(tmp_path), "--check"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert "markers" in result.stderr
    assert not (tmp_path / "conf").exists()


def test_every_option_has_a_section() -> None:
    from h2gate.config import SECTIONS

    for f in fields():
        assert f.metadata["section"] in SECTIONS, f"{f.name}: give it section= (one of {SECTIONS})"


def test_help_is_in_the_table_sections_in_order() -> None:
    from h2gate.config import SECTIONS

    env = {k: v for k, v in os.environ.items() if not k.startswith("H2GATE_")}
    result = subprocess.run(
        [sys.executable, "-m", "h2gate", "--help"], env=env, capture_output=True, text=True, timeout=20
    )
    headings = [line[:-1] for line in result.stdout.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == list(SECTIONS)
    assert result.stdout.splitlines()[2].strip().startswith("Serve APP, an ASGI or WSGI application")
    # empty defaults are left out, not shown as "[default: ; ...]"
    assert "default: ;" not in result.stdout and "default: (none)" not in result.stdout
    flat = " ".join(result.stdout.split())
    assert "HOSTNAME=CERTFILE:KEYFILE; HOSTNAME may be *.example.com (one label). Other names get --certfile." in flat
    assert "SIGHUP. [env: H2GATE_CERT]" in flat
    # each option is listed under its own section
    sections = re.split(r"^(\S[^\n]*):$", result.stdout, flags=re.M)
    by_heading = dict(zip(sections[1::2], sections[2::2], strict=True))
    for f in fields():
        for flag in options_doc.cli_flags(f):
            if flag.startswith("--"):
                assert re.search(rf"(^|[\s,/]){re.escape(flag)}([\s,/]|$)", by_heading[f.metadata["section"]]), flag


def test_coming_from_page_names_every_recorded_spelling() -> None:
    page = PEERS_PAGE.read_text(encoding="utf-8")
    for f in fields():
        for server, text in f.metadata["peers"].items():
            for word in text.split():
                assert f"`{word.lstrip('~')}`" in page, (f.name, server, word)
    assert "| h2gate | Uvicorn | Gunicorn | Hypercorn | Granian | h2corn |" in page
    assert "**`--ssl-certfile`**" in page and "≈ `--ssl-cert-reqs`" in page
