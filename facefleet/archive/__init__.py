"""The archive of processed face tracks: PostgreSQL + pgvector."""
