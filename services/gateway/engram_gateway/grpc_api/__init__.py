"""The gateway's gRPC API (``engram.v1.MemoryService``, issue 17): see server.py."""
