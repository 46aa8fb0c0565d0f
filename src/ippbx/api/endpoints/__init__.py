"""One module per group of API endpoints; each decodes, calls pbx, and encodes."""
