"""The chat demo: ``python -m examples.chat``, then open http://127.0.0.1:8000."""
