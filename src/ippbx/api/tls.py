"""TLS for the API's HTTPS listener (`[api] https_listen`): its SSL context.

`[api] tls_cert` / `tls_key` when given, else a self-signed pair `ippbx-api.crt` /
`ippbx-api.key` made beside the store at the first start (see `ippbx.certs`).
"""

from __future__ import annotations

import ssl

from ippbx.certs import listener_context
from ippbx.config import Config

__all__ = ["API_CERT_STEM", "api_ssl_context"]

API_CERT_STEM = "ippbx-api"


def api_ssl_context(config: Config) -> ssl.SSLContext:
    """The HTTPS listener's SSL context: `[api] tls_cert`/`tls_key`, else self-signed."""
    api = config.api
    return listener_context(
        api.tls_cert, api.tls_key, store_path=config.store.path, stem=API_CERT_STEM,
        common_name=config.pbx.name, address=api.https_address, alpn=["http/1.1"],
        label="API",
    )
