"""The dashboard in a real browser: it shows what a client sent and acts on the server."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.browser import screenshot
from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH
from tests.support.servers import ServerProcess, running_server

pytestmark = [pytest.mark.live, pytest.mark.browser]

ACTION = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail"
LIVE = 2_000  # ms: the journal shows a call this soon


def open_dashboard(tab: Any, server: ServerProcess) -> None:
    tab.goto(server.url + "/_mock/")
    assert tab.url == server.url + "/_mock/ui"
    expect(tab.locator("#live")).to_contain_text("Live", timeout=LIVE)


def set_hidden(tab: Any, hidden: bool) -> None:
    """Make the page hidden or shown, as switching tabs does (headless Chromium never hides)."""
    state = "hidden" if hidden else "visible"
    tab.evaluate(
        """([hidden, state]) => {
            for (const [key, value] of [["hidden", hidden], ["visibilityState", state]]) {
                Object.defineProperty(document, key, { value, configurable: true });
            }
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        [hidden, state],
    )


def one_poll(tab: Any) -> None:
    """Move the page's clock one period on; return once the poll it made was answered."""
    with contextlib.ExitStack() as answered:
        for name in ("requests", "test-mails", "faults", "state"):
            answered.enter_context(tab.expect_response(re.compile(rf"/_mock/{name}(\?|$)")))
        tab.clock.run_for(1_000)


def test_a_hidden_page_polls_nothing_and_catches_up_when_shown(
    page: Any, server: ServerProcess
) -> None:
    page.clock.install()  # the page's timers run only when the test moves this clock
    open_dashboard(page, server)
    one_poll(page)  # shown, every period asks again
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    set_hidden(page, True)
    page.clock.run_for(60_000)
    # The page's own later request: every request it made before has been reported by then.
    with page.expect_request(re.compile(r"/healthz$")):
        page.evaluate("fetch('/healthz')")
    assert [url for url in asked if "/_mock/" in url] == []
    with page.expect_request(re.compile(r"/_mock/requests")):
        set_hidden(page, False)  # shown again: it refreshes at once, not a period later


def test_a_put_made_with_curl_appears_in_the_journal_without_its_password(
    page: Any, server: ServerProcess
) -> None:
    open_dashboard(page, server)
    body = {"portNumber": 2525, "userId": "mailer", "password": "c2VjcmV0LXNlbmRlcg=="}
    result = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            "system:manager",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "--data",
            json.dumps(body),
            server.url + OBJECT_PATH,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout == "200"
    entry = page.locator("#journal > li").filter(has_text="PUT")
    expect(entry).to_have_count(1, timeout=LIVE)
    entry.locator("summary").click()
    shown = entry.locator("pre.body")
    expect(shown).to_contain_text('"portNumber": 2525')
    expect(shown).to_contain_text('"password": "***"')
    assert "c2VjcmV0" not in page.content()
    expect(entry.locator(".kv")).to_contain_text("Basic")
    screenshot(page, "dashboard-journal", page.locator("#journal").locator(".."))


def test_a_test_mail_appears_rendered(page: Any, server: ServerProcess) -> None:
    open_dashboard(page, server)
    invoke = {
        "name": "sendTestMail",
        "method": "POST",
        "type": "application/json",
        "parameters": [{"destinationAddresses": ["ops@example.com", "oncall@example.com"]}],
    }
    with server.client() as http:
        answer = http.post(ACTION + "/invoke", json=invoke, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    mail = page.locator("#mails > li")
    expect(mail).to_have_count(1, timeout=LIVE)
    expect(mail).to_contain_text("ops@example.com, oncall@example.com")
    expect(mail).to_contain_text("delivered")
    expect(mail.locator("h3")).not_to_contain_text("(no subject)")
    expect(mail.locator("pre.body")).not_to_be_empty()
    mail.locator("summary").click()
    expect(mail.locator("details .kv")).to_contain_text("To")
    screenshot(page, "dashboard")
    screenshot(page, "dashboard-test-mail", page.locator("#mails").locator(".."))


def test_a_fault_added_in_the_page_fails_the_next_call_in_the_envelope(
    page: Any, server: ServerProcess
) -> None:
    open_dashboard(page, server)
    form = page.locator("#fault-form")
    form.get_by_label("method", exact=True).select_option("GET")
    form.get_by_label("path (required)").fill("/Analytics/v1/objects/*")
    form.get_by_label("status", exact=True).fill("500")
    form.get_by_label("times", exact=True).fill("1")
    form.get_by_role("button", name="Add fault").click()
    expect(page.locator("#faults tbody tr")).to_have_count(1, timeout=LIVE)
    screenshot(page, "dashboard-faults", page.locator("#faults").locator(".."))
    with server.client() as http:
        failed = http.get(SETTINGS_PATH, headers=ADMIN)
        assert failed.status_code == 500, failed.text
        assert set(failed.json()) == {"errorSource", "message", "messageID", "application"}
        assert http.get(SETTINGS_PATH, headers=ADMIN).status_code == 200
    # The rule was used up: the page shows it gone.
    expect(page.locator("#faults tbody tr")).to_have_count(0, timeout=LIVE)


def test_every_kind_of_the_fault_schema_has_a_field(page: Any, server: ServerProcess) -> None:
    open_dashboard(page, server)
    with server.client() as http:
        schema = http.get("/_mock/fault-schema").json()
    for name in schema["properties"]:
        expect(page.locator(f"#fault-{name}")).to_have_count(1)


def test_flipping_maintenance_makes_the_next_call_answer_412(
    page: Any, server: ServerProcess
) -> None:
    open_dashboard(page, server)
    page.get_by_label(re.compile("Maintenance")).check()
    with server.client() as http:
        for _ in range(100):  # the page's request is in flight; wait on the switch itself
            if http.get("/_mock/maintenance").json()["enabled"]:
                break
            page.wait_for_timeout(20)
        answer = http.get(SETTINGS_PATH, headers=ADMIN)
    assert answer.status_code == 412, answer.text
    assert answer.json()["messageID"] == "KNAQ21201-E"


def test_a_script_in_a_journalled_body_renders_as_text(page: Any, server: ServerProcess) -> None:
    open_dashboard(page, server)
    hostile = '{"hostname": "<script>alert(1)</script><img src=x onerror=alert(2)>"}'
    with server.client() as http:
        http.put(
            OBJECT_PATH,
            content=hostile,
            headers={**ADMIN, "Content-Type": "application/json", "X-Note": "<b>bold</b>"},
        )
    entry = page.locator("#journal > li").filter(has_text="PUT")
    expect(entry).to_have_count(1, timeout=LIVE)
    entry.locator("summary").click()
    expect(entry.locator("pre.body")).to_contain_text("<script>alert(1)</script>")
    assert page.locator("#journal script, #journal img, #journal b").count() == 0
    # The `page` fixture fails the test if a dialog opened.


def test_the_page_has_a_strict_content_security_policy(server: ServerProcess) -> None:
    with server.client() as http:
        for path in ("/_mock/ui", "/_mock/ui/app.js", "/_mock/ui/app.css"):
            answer = http.get(path)
            assert answer.status_code == 200
            policy = answer.headers["content-security-policy"]
            assert "default-src 'self'" in policy
            assert "unsafe-inline" not in policy
            assert "frame-ancestors 'none'" in policy
        page_html = http.get("/_mock/ui").text
    assert "<style" not in page_html
    assert not re.search(r"<script(?![^>]*\bsrc=)", page_html)
    assert " style=" not in page_html


def test_an_axe_scan_finds_no_serious_violation(
    page: Any, server: ServerProcess, axe_source: str
) -> None:
    with server.client() as http:
        http.put(OBJECT_PATH, json={"portNumber": 2525}, headers=ADMIN)
        http.post("/_mock/faults", json={"path": "/x", "status": 503})
    open_dashboard(page, server)
    expect(page.locator("#journal > li")).to_have_count(1, timeout=LIVE)
    page.locator("#journal summary").first.click()
    # Evaluated through the DevTools protocol: the page's own policy allows no inline script.
    page.evaluate(axe_source + "\n;0")
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == []


def test_with_a_control_token_the_page_asks_for_it_and_then_works(
    browser: Any, tmp_path: Path
) -> None:
    token = "ui-test-token-3c1f"
    url = f"sqlite:///{tmp_path / 't.db'}"
    with running_server(tmp_path, "--database-url", url, "--control-token", token) as server:
        context = browser.new_context()
        tab = context.new_page()
        tab.goto(server.url + "/_mock/ui")
        form = tab.locator("#token-form")
        expect(form).to_be_visible(timeout=LIVE)
        tab.get_by_label("Token").fill("wrong")
        tab.get_by_role("button", name="Use token").click()
        expect(form).to_be_visible(timeout=LIVE)
        tab.get_by_label("Token").fill(token)
        tab.get_by_role("button", name="Use token").click()
        expect(tab.locator("#live")).to_contain_text("Live", timeout=LIVE)
        expect(form).to_be_hidden()
        tab.get_by_label(re.compile("Maintenance")).check()
        with server.client() as http:
            bearer = {"Authorization": f"Bearer {token}"}
            for _ in range(100):
                if http.get("/_mock/maintenance", headers=bearer).json()["enabled"]:
                    break
                tab.wait_for_timeout(20)
            assert http.get(SETTINGS_PATH, headers=ADMIN).status_code == 412
        assert token not in tab.url
        stored = tab.evaluate("sessionStorage.getItem('analytics-mock-control-token')")
        assert stored == token
        context.close()


def test_unlock_clear_filter_download_and_upload(
    page: Any, server: ServerProcess, tmp_path: Path
) -> None:
    with server.client() as http:
        state = http.get("/_mock/state").json()
        state["users"].append({"name": "<b>eve</b>", "password": "eve-password", "locked": True})
        assert http.put("/_mock/state", json=state).status_code == 200
        http.put(OBJECT_PATH, json={"portNumber": 2626}, headers=ADMIN)
        http.get(SETTINGS_PATH, headers=ADMIN)
    open_dashboard(page, server)
    journal = page.locator("#journal > li")
    expect(journal).to_have_count(2, timeout=LIVE)
    page.get_by_label("Method filter").select_option("PUT")
    expect(journal).to_have_count(1, timeout=LIVE)
    page.get_by_label("Method filter").select_option("")
    page.get_by_label("Status filter").fill("200")
    page.get_by_label("Path contains").fill("Setting#0")
    expect(journal).to_have_count(1, timeout=LIVE)
    expect(journal).to_contain_text("PUT")

    row = page.locator("#users tbody tr").filter(has_text="<b>eve</b>")
    expect(row).to_contain_text("locked")
    row.get_by_role("button", name="Unlock <b>eve</b>").click()
    expect(row).to_contain_text("unlocked", timeout=LIVE)

    with page.expect_download() as download:
        page.get_by_role("button", name="Download state").click()
    saved = tmp_path / "state.json"
    download.value.save_as(saved)
    exported = json.loads(saved.read_text())
    assert [u["locked"] for u in exported["users"] if u["name"] == "<b>eve</b>"] == [False]
    exported["maintenance"] = True
    saved.write_text(json.dumps(exported))
    page.get_by_label("Upload state").set_input_files(str(saved))
    expect(page.get_by_label(re.compile("Maintenance"))).to_be_checked(timeout=LIVE)
    with server.client() as http:
        assert http.get("/_mock/maintenance").json() == {"enabled": True}

    page.get_by_role("button", name="Clear journal").click()
    expect(journal).to_have_count(0, timeout=LIVE)
    page.get_by_role("button", name="Reset to the seed").click()
    expect(page.get_by_label(re.compile("Maintenance"))).not_to_be_checked(timeout=LIVE)
    expect(page.locator("#users tbody tr").filter(has_text="eve")).to_have_count(0)


def test_the_controls_work_from_the_keyboard(page: Any, server: ServerProcess) -> None:
    open_dashboard(page, server)
    expect(page.locator("#fault-status")).to_have_count(1, timeout=LIVE)
    reached: list[str] = []
    for _ in range(60):  # Tab through the page until the maintenance switch has the focus
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
        if reached[-1] == "maintenance":
            break
    assert reached[-1] == "maintenance", reached
    page.keyboard.press("Space")
    expect(page.locator("#maintenance")).to_be_checked()
    page.locator("#fault-status").focus()
    page.keyboard.type("503")
    page.keyboard.press("Enter")  # submits the fault form
    expect(page.locator("#faults tbody tr")).to_have_count(1, timeout=LIVE)
    with server.client() as http:
        assert http.get("/_mock/maintenance").json() == {"enabled": True}
        assert [f["status"] for f in http.get("/_mock/faults").json()["faults"]] == [503]


def test_a_fault_with_headers_from_the_schema_driven_form(page: Any, server: ServerProcess) -> None:
    open_dashboard(page, server)
    form = page.locator("#fault-form")
    expect(form.locator("#fault-headers")).to_have_count(1, timeout=LIVE)
    form.locator("#fault-path").fill("/Analytics/*")
    form.locator("#fault-status").fill("503")
    form.locator("#fault-headers").fill('{"Retry-After": "7"}')
    form.get_by_role("button", name="Add fault").click()
    expect(page.locator("#error")).to_have_text("")
    expect(page.locator("#faults tbody tr")).to_contain_text("Retry-After", timeout=LIVE)
    with server.client() as http:
        answer = http.get(SETTINGS_PATH, headers=ADMIN)
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "7"
    assert answer.json()["application"] == "Analytics"
