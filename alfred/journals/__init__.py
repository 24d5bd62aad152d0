"""Journals: work kept in Redis until done, and the sweeper that re-drives what stalled."""
