"""Persistence: SQLAlchemy repositories (SQLite by default, PostgreSQL by URL) and the blob store."""
