"""The job layer, between the pipeline (facefleet.core) and the Celery tasks: job and
gallery records, the object store, and the per-process model registry. Free of Celery; the
modules the client SDK imports (records, storage, job_store, galleries) are free of torch,
OpenCV, PyAV and numpy too."""
