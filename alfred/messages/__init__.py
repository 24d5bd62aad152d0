"""Persistence of messages: one tenant-scoped base query, the inbound rows, the outbound trail."""
