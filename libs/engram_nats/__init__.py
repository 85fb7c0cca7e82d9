"""Engram's shared NATS layer: connections, the space registry, streams, the
snapshot bucket, and the application layer that publishes commands and asks
queries for the gateway and the SDK alike."""
