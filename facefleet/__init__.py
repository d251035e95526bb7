"""facefleet: face recognition for bulk video. The user-facing CLI and SDK live here.

Importing this package never imports torch; the pipeline loads only when a command needs it.
"""

__version__ = "0.1.0"
