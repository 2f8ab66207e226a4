"""The README's promises that a test can hold it to."""

from __future__ import annotations

from pathlib import Path

from analytics_mock.errors import CATALOGUE
from analytics_mock.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_plugin_example_in_the_readme_is_the_file_the_suite_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = (ROOT / "tests" / "plugin_example" / "test_example.py").read_text(encoding="utf-8")
    assert f"```python\n{example}```" in readme


def test_readme_lists_every_option() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    readme = "".join(page.read_text(encoding="utf-8") for page in pages)
    for name in Settings.model_fields:
        assert f"`ANALYTICS_MOCK_{name.upper()}`" in readme, name


def test_readme_lists_every_message_id() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for kind in CATALOGUE:
        assert f"`{kind.message_id}`" in readme, kind.__name__
