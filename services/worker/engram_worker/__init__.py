"""Engram worker: hosts memory spaces, folds their WALs, answers queries."""
