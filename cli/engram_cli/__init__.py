"""The ``engram`` command line: the local stack, spaces, memories, replay, status,
export and import. The only package that imports the services."""
