"""The servers under test: each serves the benchmark's ``/echo``, ``/broadcast`` and ``/flood``."""
