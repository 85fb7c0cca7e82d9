"""Engram's shared contract: space ids, subjects, messages, settings, embedders,
errors."""

__version__ = "0.1.0"
