"""Metrics, the comparison report and the explain pictures."""
