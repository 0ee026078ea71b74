"""The only package that imports libmilter: the callbacks (adapter) and the process (runner)."""
