"""Engram's shared contract: space ids, subjects, messages, settings, embedders."""

__version__ = "0.1.0"
