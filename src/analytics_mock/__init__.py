"""analytics-mock: an emulator of the Hitachi Ops Center Analyzer email server settings API."""

__version__ = "0.1.0"
