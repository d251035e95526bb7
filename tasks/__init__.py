"""Celery app and task definitions: thin adapters from messages to core/ and training/.

Filled in by the batch-system work; nothing here is imported by core/.
"""
