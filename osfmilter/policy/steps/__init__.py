"""One module per rule of docs/rules.rst; policy/pipeline.py puts them in order."""
