"""Outbound messages: validation, splitting, sending."""
