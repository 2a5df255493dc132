"""Tracks: track table, asynchronous fusion engine, seeding, observation sources."""
