"""twin_server.telemetry."""
