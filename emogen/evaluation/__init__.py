"""Evaluation (docs/method.md "Metrics"): the evaluators stage, the five metrics and Table 1."""
