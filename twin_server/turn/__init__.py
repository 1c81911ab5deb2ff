"""twin_server.turn."""
