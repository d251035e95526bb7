"""Worker entry points: model loading and warm-up per process, device choice."""
