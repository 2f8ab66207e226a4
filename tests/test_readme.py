"""The README's promises that a test can hold it to: the front page is short, its commands are
the ones CI runs, its links resolve, its pytest example is a file the suite runs, and its curl
examples, run in order against a real server, answer what they say."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import running_server
from tests.support.smtp_servers import start_smtp_server

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The README's text from the `## title` heading to the next one."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.DOTALL)


def test_readme_is_a_front_page() -> None:
    assert len(README.splitlines()) <= 200


def test_plugin_example_in_the_readme_is_the_file_the_suite_runs() -> None:
    example = (ROOT / "tests" / "plugin_example" / "test_quickstart.py").read_text(encoding="utf-8")
    assert f"```python\n{example}```" in README


def test_ci_runs_the_readme_test_command() -> None:
    [start, test] = shell_blocks(section("Two commands"))
    assert "analytics-mock serve" in start
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test.strip() in ci_lines


def slug(heading: str) -> str:
    """GitHub's (and MkDocs') anchor of a heading: lower case, words joined by hyphens."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def test_readme_links_resolve() -> None:
    links = re.findall(r"\]\(([^)]+)\)", README)
    assert links
    for link in links:
        assert not link.startswith(("http:", "https:")), link
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.MULTILINE)
            assert anchor in {slug(h) for h in headings}, link


# The vendor's time stamps: yyyy-mm-ddThh:mm:ss.mmm+hh:mm.
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")

# Each `curl` of the examples runs through this function: it numbers the call and keeps its
# status and body in $CALLS, and still prints the body, so pipes and $(...) work as written.
CURL_WRAPPER = r"""
set -euo pipefail
curl() {
  local n
  n=$(( $(cat "$CALLS/count") + 1 ))
  echo "$n" > "$CALLS/count"
  command curl -sS -w '%{stderr}%{http_code}' "$@" 2> "$CALLS/$n.status" | tee "$CALLS/$n.body"
}
"""


def expected_calls(script: str) -> list[tuple[int | None, str | None]]:
    """Per curl call in order: the status its `# NNN body` comment gives, and that body."""
    calls: list[list[object]] = []
    for line in script.splitlines():
        if line.startswith("#"):
            comment = re.match(r"# (\d{3})\b ?(.*)", line)
            if comment and calls:
                calls[-1][0] = int(comment[1])
                calls[-1][1] = comment[2]
            elif line.startswith("#  ") and calls and calls[-1][1] is not None:
                calls[-1][1] = f"{calls[-1][1]}{line[1:].strip()}"
            continue
        calls.extend([None, None] for _ in re.findall(r"(?:^|[\s(])curl\s", line))
    return [(status, body) for status, body in calls]  # type: ignore[misc]


@pytest.mark.live
def test_curl_examples_answer_what_they_say_in_order(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    script = "\n".join(shell_blocks(section("The API, with curl")))
    expected = expected_calls(script)
    calls = tmp_path / "calls"
    calls.mkdir()
    (calls / "count").write_text("0")
    with start_smtp_server() as smtp, running_server(tmp_path) as server:
        runnable = script.replace("127.0.0.1:22015", f"127.0.0.1:{server.port}")
        runnable = runnable.replace("1025", str(smtp.port))
        done = subprocess.run(
            ["bash", "-c", CURL_WRAPPER + runnable],
            # Nothing else from the environment: a proxy variable would take curl elsewhere.
            env={"PATH": os.environ["PATH"], "CALLS": str(calls)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert len(smtp.received) == 1
    count = int((calls / "count").read_text())
    assert count == len(expected)
    answers = []
    for n, (status, body) in enumerate(expected, start=1):
        got_status = int((calls / f"{n}.status").read_text()[-3:])
        got_body = (calls / f"{n}.body").read_text()
        answers.append((got_status, got_body))
        if status is None:
            assert 200 <= got_status < 300, (n, got_status, got_body)
            continue
        assert got_status == status, (n, got_body)
        assert body is not None
        if "…" in body:  # a shape with elided values: the values written out, times by form
            for name, value in re.findall(r'"(\w+)": "([^"…]*)"', body):
                got = re.search(rf'"{name}":"([^"]*)"', got_body)
                assert got is not None, (n, name)
                if TIME.fullmatch(value):
                    assert TIME.fullmatch(got[1]), (n, name, got[1])
                else:
                    assert got[1] == value, (n, name, got[1])
        else:
            assert json.loads(got_body) == json.loads(body), n
    # What the comments say beside the calls, checked on the answers.
    lists = [json.loads(b) for s, b in answers if b.startswith('{"data"')]
    assert lists[0]["data"][0]["hostname"] == "localhost"  # the fresh store
    assert lists[1]["count"] == 1  # the filter finds the object just updated
    invoked = [json.loads(b) for s, b in answers if '"state"' in b]
    assert [job["state"] for job in invoked] == ["success"]
