"""
The HTTP/1.1 data plane: strict framing, server and client connections, body
streaming with back-pressure, and the upstream connection pool.

Modules:

  - L{headers}, L{message}: header lists and request/response heads;
  - L{parser}, L{framing}: the strict head parser and chunked decoder;
  - L{interfaces}, L{stream}: the body streaming contract and body sources;
  - L{server}, L{serverconn}, L{exchange}, L{tunnel}: the server connection;
  - L{client}, L{pool}: upstream connections and the pool;
  - L{errors}: exception types;
  - L{passthrough}: a demo handler forwarding to one origin.

See C{docs/http-framing.md}.
"""
