"""twin-server's OpenAI plugin (being built)."""
