"""rerankq's domain: configuration, storage, planning, the scoring engine and the Celery tasks."""
