"""Engram gateway: the HTTP API in front of the spaces' WALs and workers."""
