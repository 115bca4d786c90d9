"""`shadow verify`: every key, not only the keys someone reads. Three layers per entity —
counts (rows, child rows, references, dangling refs), sums and sets (exact decimal sums,
unique-set digests), docs (both stores streamed in legacy-id order, each document rebuilt
and compared through the same rules as the proxy) — over one ObjectId-range partition.

Modules: model (results), scope (partition, filters), counts, sums, reconcile (docs),
buckets (digests, resume file), progress, report (text, JSON, Pushgateway), cli.
"""
