"""Benchmarks that print figures (medians, ratios side by side); never pass/fail timing tests."""
