"""The shadow side, off the request path: the hand-off to the worker process, the worker,
the pipeline (sampling, batching, recheck), the sources (PostgreSQL, Mongo) and the
rebuild of the API document from their rows."""
