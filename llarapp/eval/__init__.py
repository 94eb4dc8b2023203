"""Evaluation: metrics and the evaluate stage."""
