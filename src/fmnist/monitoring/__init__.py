"""Monitoring: Prometheus metrics, the prediction/feedback store, drift against the training reference."""
