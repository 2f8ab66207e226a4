"""Helpers shared by the tests: clients, real servers, SMTP servers, the runner's gates.

- `helpers`: in-process clients and small request helpers;
- `servers`: real `analytics-mock serve` processes on loopback, and PostgreSQL schemas;
- `smtp_servers`: aiosmtpd servers with STARTTLS, TLS and AUTH;
- `db`: holding the database runner's threads on gates;
- `reliability`: load and crash helpers of `tests/reliability/`;
- `openapi_tools`: the Node tools (Redocly, openapi-typescript) the contract tests install.
"""
