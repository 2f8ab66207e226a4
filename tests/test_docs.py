"""What the docs promise that a test can hold them to: every option and message ID is listed,
every option listed exists, and the plugin page's example is the file the suite runs."""

from __future__ import annotations

import re
from pathlib import Path

from analytics_mock.cli import build_parser
from analytics_mock.errors import CATALOGUE
from analytics_mock.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def serve_options() -> set[str]:
    """Every option string `analytics-mock serve` accepts."""
    parser = build_parser()
    [commands] = [a for a in parser._actions if a.dest == "command"]
    serve = commands.choices["serve"]  # type: ignore[index]
    return {flag for action in serve._actions for flag in action.option_strings}


def test_configuration_lists_every_option() -> None:
    text = page("configuration.md")
    for name in Settings.model_fields:
        assert f"`ANALYTICS_MOCK_{name.upper()}`" in text, name
        assert f"`--{name.replace('_', '-')}" in text, name


def test_configuration_lists_only_real_options() -> None:
    rows = [line for line in page("configuration.md").splitlines() if line.startswith("| `--")]
    listed = {flag for row in rows for flag in re.findall(r"`(--[a-z0-9-]+)", row.split("|")[1])}
    assert listed
    assert listed <= serve_options(), listed - serve_options()
    variables = {v for row in rows for v in re.findall(r"`ANALYTICS_MOCK_(\w+)`", row)}
    assert {v.lower() for v in variables} == set(Settings.model_fields)


def test_api_lists_every_message_id() -> None:
    text = page("api.md")
    for kind in CATALOGUE:
        assert f"`{kind.message_id}`" in text, kind.__name__


def test_plugin_example_on_the_plugin_page_is_the_file_the_suite_runs() -> None:
    example = (DOCS.parent / "tests" / "plugin_example" / "test_example.py").read_text(
        encoding="utf-8"
    )
    assert f"```python\n{example}```" in page("pytest-plugin.md")


def test_plugin_tour_on_the_plugin_page_is_the_file_the_suite_runs() -> None:
    tour = (DOCS.parent / "tests" / "plugin_example" / "test_plugin_tour.py").read_text(
        encoding="utf-8"
    )
    assert f"```python\n{tour}```" in page("pytest-plugin.md")
