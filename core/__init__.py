"""facefleet core: the face pipeline as a pure library (no Celery, no CLI)."""
