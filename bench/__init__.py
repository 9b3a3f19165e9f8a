"""Benchmarks. Run them all with ``python -m bench`` (writes ``bench/RESULTS.md``)."""
