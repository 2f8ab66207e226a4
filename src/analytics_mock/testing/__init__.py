"""Test helpers for clients of the emulator; the pytest plugin's fixtures are built from them.

Cheap to import: the server stack is imported only when an emulator is built.
"""

from analytics_mock.testing.controls import ControlAPIError, MaintenanceSwitch, MockControls
from analytics_mock.testing.emulators import (
    IN_PROCESS_URL,
    AnalyticsMock,
    AnalyticsMockServer,
    Emulator,
    ServerThread,
    isolated_settings,
)

__all__ = [
    "IN_PROCESS_URL",
    "AnalyticsMock",
    "AnalyticsMockServer",
    "ControlAPIError",
    "Emulator",
    "MaintenanceSwitch",
    "MockControls",
    "ServerThread",
    "isolated_settings",
]
