"""twin_server.quotas."""
