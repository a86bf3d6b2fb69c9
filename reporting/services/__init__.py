"""Writes of the read side, one module per feature. Everything here is derived from events
alone."""
