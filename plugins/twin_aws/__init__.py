"""twin-server's AWS plugin (being built)."""
