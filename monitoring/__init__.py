"""Monitoring: what the server tells its operator about traffic, the model and drift.

`http_metrics.py` (requests by route and status, latency), `model_metrics.py` (predictions per class,
confidence, input sizes, batching, tokenise and inference time, model info, drift gauges), `profiler.py`
(each served text's derived features into whylogs profiles, off the request path, and the server's own
periodic drift check), `profiles.py` (profile files), `drift.py` (the statistical check), `report.py`
(its HTML report), `dashboard.py` (the Grafana dashboard as code); `prometheus/`, `alertmanager/` and
`grafana/` hold the rules, routing and provisioning that use them.
"""
