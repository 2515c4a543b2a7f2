"""The thin HTTP layer: parse, authenticate, call a service, render per dialect."""
