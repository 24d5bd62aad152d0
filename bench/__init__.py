"""Benchmarks and the load test of the bridge: `make bench`, `make load` (docs/benchmarks.md)."""
