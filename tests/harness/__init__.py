"""Helpers that start real services for the tests: subprocesses on loopback ports."""
