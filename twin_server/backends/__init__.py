"""twin_server.backends."""
