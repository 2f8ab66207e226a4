"""Test helpers for clients of the emulator; the pytest plugin's fixtures are built from them.

Cheap to import: the server stack is imported only when an emulator is built.
"""

from analytics_mock.testing.controls import ControlAPIError, MaintenanceSwitch, MockControls
from analytics_mock.testing.emulators import (
    AnalyticsMock,
    AnalyticsMockServer,
    ServerThread,
    isolated_settings,
)

__all__ = [
    "AnalyticsMock",
    "AnalyticsMockServer",
    "ControlAPIError",
    "MaintenanceSwitch",
    "MockControls",
    "ServerThread",
    "isolated_settings",
]
