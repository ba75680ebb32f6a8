"""Benchmarks: each starts its own broker and Redis, prints a table and writes bench/results/*.json."""
