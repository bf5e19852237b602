"""One-off requests, each on a connection of its own as httpx's module functions
(httpx.get, httpx.post, ...) make them, but through one client per process. Each of
those functions builds a client, and with it a TLS context that loads the CA bundle, on
every call: some 30 ms of CPU here, for a plain-HTTP request to a local server. The
suite's readiness polls and one-off requests spent half of its pytest workers' CPU so.
"""

from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

# Nothing kept between requests, as with httpx.get: no connection (every request opens
# one, so none lands on a connection to a server a test has since stopped, and a test
# that asks on fresh connections gets them), and no cookie (a session one server set
# would go with the next request to any port of the same host).
_CLIENT = httpx.Client(
    limits=httpx.Limits(max_keepalive_connections=0),
    cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
)

get = _CLIENT.get
post = _CLIENT.post
patch = _CLIENT.patch
request = _CLIENT.request
