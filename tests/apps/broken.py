"""An app module whose own code fails at import: h2gate must show this traceback, not hide it."""

raise RuntimeError("tests/apps/broken.py fails at import on purpose")
