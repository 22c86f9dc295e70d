"""Models, sessions, named queries and migrations."""
