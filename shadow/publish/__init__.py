"""Publishing: the one sink (metrics, traces, mismatch log, recent ring), the metric
declarations, redaction, and the admin server."""
