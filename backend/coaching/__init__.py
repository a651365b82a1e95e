"""Server side of the coach app: rules, flags, alerts, triage rows, labs."""
