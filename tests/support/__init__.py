"""Helpers shared by the tests: clients, real servers, SMTP servers, the runner's gates.

- `helpers`: in-process clients and small request helpers;
- `servers`: real `analytics-mock serve` processes on loopback (`--workers` ones too), and
  PostgreSQL schemas;
- `smtp_servers`: aiosmtpd servers with STARTTLS, TLS and AUTH;
- `db`: holding the database runner's threads on gates;
- `reliability`: backends, load and crash helpers of `tests/reliability/`;
- `openapi_tools`: the Node tools (Redocly, openapi-typescript) the contract tests install;
- `edge_guard`: the edge guard around a stand-in app, and checks of its refusals;
- `plugin_runs`: pytester sessions of the pytest plugin;
- `browser`: screenshots of the dashboard tests in `tests/ui/`.

What a test module or conftest.py shares with another lives here: they never import from each
other (`tests/test_layers.py` checks it).
"""
