"""bridge: turns polled HTTP endpoints into push streams."""

__version__ = "0.1.0"
