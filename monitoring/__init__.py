"""Monitoring: Prometheus metrics, whylogs profiles, drift checks and the retraining trigger."""
