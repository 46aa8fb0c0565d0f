"""The HTTP API in the OpenVox v0.0.1 and Yeastar v1.1.0 dialects: a thin adapter over pbx."""
