"""End to end across every layer: the basic paths, and real HTTP/2 clients (curl, nghttp, h2load) against the server."""
