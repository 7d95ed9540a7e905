"""The operator's surface: pre-flight check, status, cutover, the migrate chain, and (reading durable state or
doing plain arithmetic, never moving data) the runbook and transfer calculator, the status document, dashboard
and metrics."""
