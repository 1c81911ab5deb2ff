"""twin_server.http."""
