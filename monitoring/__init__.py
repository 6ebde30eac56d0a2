"""Monitoring: the room for metrics, whylogs profiles, drift checks and the retraining trigger.

Today it holds the request metrics every route reports at `/metrics` (`http_metrics.py`: requests by
route and status, latency by route, summed over every worker). Model metrics, drift detection and
alerting are the next pieces of work.
"""
