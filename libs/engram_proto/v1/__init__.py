"""Generated from proto/engram/v1 by `make proto`; do not edit."""
