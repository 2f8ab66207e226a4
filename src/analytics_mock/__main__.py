"""`python -m analytics_mock` is the `analytics-mock` command."""

from analytics_mock.cli import main

raise SystemExit(main())
