"""The raw ASGI baseline of api_query.py: answers every request with a small JSON body.

Served the way ippbx serves its API: uvicorn, httptools, uvloop, one worker, access log
off. api_query.py starts it as
`uvicorn asgi_hello:app --app-dir bench --http httptools --loop uvloop --workers 1`.
It reads (and drops) the request body, as a real endpoint must.
"""

BODY = b'{"status":"Success","outbound":[]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):  # noqa: ANN001, ANN201 - the bare ASGI signature
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
