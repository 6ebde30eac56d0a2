"""Monitoring: the room for model metrics, whylogs profiles, drift checks and the retraining trigger.

Nothing lives here yet: a served model today exposes only BentoML's built-in Prometheus metrics at
`/metrics` (request counts and latencies per route). The model metrics, drift detection and alerting
are the next pieces of work.
"""
