"""Hostile and real-world mail for the end-to-end tests (see generate.py)."""
