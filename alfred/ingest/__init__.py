"""Ingest: turn Meta deliveries into «alfred-ingest» events, exactly once each."""
