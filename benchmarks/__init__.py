"""Benchmarks: cold start and per-invocation overhead against the official tools and the floor."""
