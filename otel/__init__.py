"""The daemon's telemetry layer: SDK set-up, instruments, propagation and redaction."""
