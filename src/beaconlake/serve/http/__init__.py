"""beaconlake's HTTP/1.1 server: asyncio + uvloop + httptools, N worker processes on one socket.

Why our own: the collector must stay up whatever its clients do. A connection that sends
nothing, trickles its headers or stalls its body is closed on a deadline; when a worker is at
its connection cap it sheds its oldest idle connection before it refuses a new one; a body over
the limit is answered 413 and drained so the client reads the answer instead of a reset. The
hot path (``POST /v1/events``) skips ASGI: a route handler gets the parsed ``Request`` and
returns (status, headers, body).

Modules: ``request`` (one request and its body), ``rules`` (what a request head must meet),
``protocol`` (one connection), ``server`` (every connection of a worker: deadlines, cap,
shedding), ``balance`` (the workers' shares of the socket), ``response`` (the bytes of an
answer), ``asgi`` (the bridge to the Starlette routes), ``worker`` (one process),
``supervisor`` (the processes and the socket).
"""
