"""Clients generated from `/openapi.json`, used as they are, against a real server on loopback.

openapi-python-client builds a Python package, and openapi-typescript a type file that
`tsc --strict` compiles with a small program; both run the README's flow against
`analytics-mock serve --test-mail-mode capture`: list, partial update, update with a password,
prepare a test mail, invoke the prepared Action, a typed 400 and a 401, and a call with the HSSO
token the server handed back. The generated code lives in the test's temporary folder only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.openapi_tools import run_tool, unavailable
from tests.support.servers import running_server

pytestmark = [pytest.mark.live, pytest.mark.slow]

PYTHON_FLOW = """
import base64, sys
from analyzer_client import AuthenticatedClient, Client
from analyzer_client.api.email_server_settings import (
    invoke_send_test_mail,
    list_email_server_settings,
    prepare_send_test_mail,
    update_email_server_setting,
)
from analyzer_client.models import (
    EmailSetting,
    EmailSettingCollection,
    EmailSettingUpdate,
    Error,
    Job,
    SendTestMailAction,
    SendTestMailActionIn,
)

url = sys.argv[1]
client = Client(base_url=url, httpx_args={"auth": ("system", "manager")})

listing = list_email_server_settings.sync(client=client)
assert isinstance(listing, EmailSettingCollection), listing
setting_id = listing.data[0].instance_id

updated = update_email_server_setting.sync(
    setting_id, client=client, body=EmailSettingUpdate(port_number=587)
)
assert isinstance(updated, EmailSetting) and updated.port_number == 587, updated

secret = base64.b64encode(b"smtp-secret").decode()
body = EmailSettingUpdate(
    authentication_enabled=True, user_id="mailer", update_password=True, password=secret
)
updated = update_email_server_setting.sync(setting_id, client=client, body=body)
assert isinstance(updated, EmailSetting) and updated.user_id == "mailer", updated
assert "password" not in updated.to_dict()

action = prepare_send_test_mail.sync(client=client)
assert isinstance(action, SendTestMailAction), action
invoke = SendTestMailActionIn.from_dict(action.to_dict())
invoke.parameters[0].destination_addresses = ["ops@example.com"]
job = invoke_send_test_mail.sync(client=client, body=invoke)
assert isinstance(job, Job) and job.state == "success", job

bad = update_email_server_setting.sync_detailed(
    setting_id, client=client, body=EmailSettingUpdate(port_number=0)
)
assert bad.status_code == 400 and isinstance(bad.parsed, Error), bad
assert bad.parsed.message_id == "KNAQ20003-E", bad.parsed

stranger = Client(base_url=url, httpx_args={"auth": ("system", "wrong")})
refused = list_email_server_settings.sync_detailed(client=stranger)
assert refused.status_code == 401 and isinstance(refused.parsed, Error), refused
assert refused.headers["WWW-Authenticate"] == 'Basic realm="Analytics"'

token = list_email_server_settings.sync_detailed(client=client).headers["WWW-Authenticate"]
hsso = AuthenticatedClient(base_url=url, token=token.split(" ", 1)[1], prefix="HSSO")
assert isinstance(list_email_server_settings.sync(client=hsso), EmailSettingCollection)
print("python flow ok")
"""

TYPESCRIPT_FLOW = """
import type { components, paths } from "./analyzer";

declare const process: { argv: string[]; exitCode: number };

type Schemas = components["schemas"];
type Collection = Schemas["EmailSettingCollection"];
type Setting = Schemas["EmailSetting"];
type Update = Schemas["EmailSettingUpdate"];
type Action = Schemas["SendTestMailAction"];
type ActionIn = Schemas["SendTestMailActionIn"];
type Job = Schemas["Job"];
type Problem = Schemas[keyof Schemas & ("Error" | "ErrorBody")];
type Listed =
  paths["/Analytics/v1/objects/EmailServerSettings"]["get"]["responses"][200]["content"]["application/json"];

const url = process.argv[2];
const basic = "Basic " + btoa("system:manager");

async function call<T>(method: string, path: string, body?: unknown, auth = basic) {
  const response = await fetch(url + path, {
    method,
    headers: { Authorization: auth, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as T };
}

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(what);
}

async function main(): Promise<void> {
  const objects = "/Analytics/v1/objects/EmailServerSettings";
  const action = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail";
  const listing = await call<Listed & Collection>("GET", objects);
  const id = encodeURIComponent(listing.body.data[0].instanceID);

  const partial: Update = { portNumber: 587 };
  const updated = await call<Setting>("PUT", `${objects}/${id}`, partial);
  check(updated.body.portNumber === 587, "partial update");

  const withPassword: Update = {
    authenticationEnabled: true,
    userId: "mailer",
    updatePassword: true,
    password: btoa("smtp-secret"),
  };
  const secured = await call<Setting>("PUT", `${objects}/${id}`, withPassword);
  check(secured.body.userId === "mailer", "update with a password");

  const prepared = await call<Action>("GET", action);
  const invoke: ActionIn = {
    ...prepared.body,
    parameters: [{ ...prepared.body.parameters[0], destinationAddresses: ["ops@example.com"] }],
  };
  const job = await call<Job>("POST", `${action}/invoke`, invoke);
  check(job.status === 200 && job.body.state === "success", "invoke the prepared Action");

  const bad = await call<Problem>("PUT", `${objects}/${id}`, { portNumber: 0 } satisfies Update);
  check(bad.status === 400 && bad.body.messageID === "KNAQ20003-E", "typed 400");

  const refused = await call<Problem>("GET", objects, undefined, "Basic " + btoa("system:wrong"));
  check(refused.status === 401 && refused.body.application === "Analytics", "typed 401");

  const token = listing.headers.get("WWW-Authenticate") ?? "";
  const again = await call<Collection>("GET", objects, undefined, token);
  check(again.status === 200 && again.body.count === 1, "HSSO token");
  console.log("typescript flow ok");
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
"""

TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "target": "es2022",
        "module": "es2022",
        "moduleResolution": "bundler",
        "lib": ["es2022", "dom"],
        "noEmitOnError": True,
        "outDir": "out",
    },
    "files": ["flow.ts"],
}


@pytest.fixture
def server_url(tmp_path: Path) -> object:
    with running_server(tmp_path, "--test-mail-mode", "capture") as server:
        yield server.url


def fetch_document(url: str, path: Path) -> Path:
    path.write_text(httpx.get(url + "/openapi.json", timeout=30).text)
    return path


def test_generated_python_client_runs_the_readme_flow(server_url: str, tmp_path: Path) -> None:
    generator = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    if generator is None:
        unavailable("openapi-python-client is not installed (the test extra)")
    assert generator is not None
    document = fetch_document(server_url, tmp_path / "openapi.json")
    generated = subprocess.run(
        [
            generator,
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "analyzer_client"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    (tmp_path / "flow.py").write_text(PYTHON_FLOW)
    flow = subprocess.run(
        [sys.executable, str(tmp_path / "flow.py"), server_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert flow.returncode == 0, flow.stdout + flow.stderr
    assert "python flow ok" in flow.stdout


def test_typescript_types_compile_strict_and_run_the_readme_flow(
    server_url: str, tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    assert node is not None
    document = fetch_document(server_url, tmp_path / "openapi.json")
    types = run_tool("openapi-typescript", str(document), "-o", str(tmp_path / "analyzer.d.ts"))
    assert types.returncode == 0, types.stdout + types.stderr
    (tmp_path / "flow.ts").write_text(TYPESCRIPT_FLOW)
    (tmp_path / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    (tmp_path / "package.json").write_text(json.dumps({"type": "module"}))
    compiled = run_tool("tsc", "-p", str(tmp_path), cwd=tmp_path)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    flow = subprocess.run(
        [node, str(tmp_path / "out" / "flow.js"), server_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert flow.returncode == 0, flow.stdout + flow.stderr
    assert "typescript flow ok" in flow.stdout
