"""The chat turn and the system prompt it is built on."""
