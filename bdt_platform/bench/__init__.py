"""Benchmarks that print figures: ratios against baselines measured in the same run."""
