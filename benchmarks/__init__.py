"""Benchmarks of the related-stories service: run from the repository root as
``python -m benchmarks.<name> ...`` (see docs/benchmarks.md). Not installed with the package."""
