"""`shadow demo` and what it runs on: embedded servers, the marketplace reference domain
(its sample API, generator, backfill and planted drift) and the traffic generator."""
