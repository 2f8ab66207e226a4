"""The test suite; shared helpers live in `tests/support/`."""

import pytest

# The shared helpers assert too: their failures should say as much as a test's own.
pytest.register_assert_rewrite("tests.support")
