"""The web console: pages and a JSON/SSE interface at `/console/` (see `server`)."""
