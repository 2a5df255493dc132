"""Staged training of the event and image modules."""
