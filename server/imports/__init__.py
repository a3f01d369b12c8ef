"""Bulk import of leads: durable uploads, a Celery worker that parses them as a stream and
writes them in batches, each committed together with the job's checkpoint."""
