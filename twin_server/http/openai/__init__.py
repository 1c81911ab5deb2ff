"""twin_server.http.openai."""
