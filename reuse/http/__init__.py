"""HTTP: the KServe v2 REST protocol and the read-only web dashboard, served by aiohttp on the gRPC
server's event loop (``reuse serve --http-port``) or alone (``reuse ui``). See docs/http-api.md."""
