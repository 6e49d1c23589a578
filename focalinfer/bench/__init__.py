"""The benchmark: every stage against its baseline, inference per batch size, docs/benchmarks.md."""
