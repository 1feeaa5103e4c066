"""Channels: the outbox every message waits in, sender identities, and one module per channel (email over SMTP)."""
