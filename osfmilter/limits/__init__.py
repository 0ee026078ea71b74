"""Shared, exact counters: 5-minute rate windows and monthly volume."""
