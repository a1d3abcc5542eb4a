"""Example apps instrumented with Headcount (see README.md)."""
