"""The pure core: space state fold, vector index, recall. No NATS, no HTTP."""
