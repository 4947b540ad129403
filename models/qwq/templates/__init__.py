"""Chat templates shipped with the runtime (data files)."""
