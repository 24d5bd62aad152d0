"""The data lifecycle: personal data hot, then cold, then anonymised (docs/operations.md)."""
