"""Who may open the page, press its buttons and hear its feed.

When the show sets `director.token`, every request needs it: as `?token=`
(the page's address an operator is given; the answer sets a session cookie
and drops the token from the address bar), as `Authorization: Bearer TOKEN`
(scripts), or as that cookie (the page's own requests and its websocket).
Without a token the director listens on loopback only (the show rules refuse
anything else), and only requests naming a loopback host are answered, so a
web site cannot reach the page through a DNS name pointed at 127.0.0.1.
Buttons and the websocket also refuse a foreign `Origin`: another site in
the operator's browser must not press them.

Wrong tokens are counted per host (pxcontrol/attempts.py): after a few, a host
that offers a token is answered 429 for a growing time, the right token too; a
browser that already holds the session cookie is not held up.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from urllib.parse import urlencode

from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from pxcontrol.attempts import Attempts

log = logging.getLogger("pxcontrol.web")

COOKIE = "pxcontrol_session"
POLICY_VIOLATION = 1008  # the websocket close code for "token required" / "wrong token"
LOOPBACK_NAMES = ("localhost", "localhost.")


@dataclass(frozen=True)
class Refusal:
    status: int  # 401 no token, 403 a wrong one or a foreign origin, 429 too many wrong ones
    message: str


class Access:
    def __init__(self, token: str | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.token = token or None
        self.attempts = Attempts("token", log, clock)
        self.session = (
            hmac.new(self.token.encode(), b"pxcontrol web session", hashlib.sha256).hexdigest()
            if self.token
            else None
        )

    def refusal(self, conn: HTTPConnection, changes_state: bool) -> Refusal | None:
        """Why this request or websocket may not go on, or None when it may."""
        if self.token is None:
            if not _loopback_host(conn.headers.get("host", "")):
                return Refusal(403, "this page answers only on a loopback address")
        else:
            host = conn.client.host if conn.client else ""
            offered = _offers_token(conn)
            if offered and (wait := self.attempts.refusal(host)) is not None:
                return Refusal(429, wait)  # not even looked at: guessing waits
            given = self._given(conn)
            if given is None:
                return Refusal(401, "token required")
            if not given:
                self.attempts.failed(host)
                return Refusal(403, "wrong token")
            if offered:
                self.attempts.succeeded(host)
        if changes_state and not _same_origin(conn):
            return Refusal(403, "a request from another site is refused")
        return None

    def _given(self, conn: HTTPConnection) -> bool | None:
        """True for the right token, False for a wrong one, None when none was offered."""
        assert self.token is not None and self.session is not None
        offered = False
        auth = conn.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            offered = True
            if _equal(auth[7:].strip(), self.token):
                return True
        if "token" in conn.query_params:
            offered = True
            if _equal(conn.query_params["token"], self.token):
                return True
        if COOKIE in conn.cookies:
            if _equal(conn.cookies[COOKIE], self.session):
                return True
            # A stale cookie (the token changed) counts as no token: the page asks again.
        return False if offered else None

    def keep(self, conn: HTTPConnection) -> Response | None:
        """The page opened with a right `?token=`: set the cookie and reload without the token.

        Only the page itself: a script's `GET /api/status?token=` gets its answer.
        """
        if self.session is None or "token" not in conn.query_params or conn.url.path != "/":
            return None
        if conn.scope.get("method") not in ("GET", "HEAD"):
            return None
        if not _equal(conn.query_params["token"], self.token or ""):
            return None
        rest = [(k, v) for k, v in conn.query_params.multi_items() if k != "token"]
        target = conn.url.path + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, self.session, httponly=True, samesite="strict", path="/")
        return response


class TokenGate:
    """ASGI middleware: every HTTP request and websocket passes `Access` or is refused."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        websocket = scope["type"] == "websocket"
        changes_state = websocket or scope["method"] not in ("GET", "HEAD")
        refusal = self.access.refusal(conn, changes_state)
        if refusal is None:
            kept = None if websocket else self.access.keep(conn)
            if kept is not None:
                await kept(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        elif websocket:
            # Accept, then close with a reason: a browser sees the code and the reason,
            # and the page can ask for the token instead of retrying for ever.
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send(
                {"type": "websocket.close", "code": POLICY_VIOLATION, "reason": refusal.message}
            )
        else:
            await _refused(conn, refusal)(scope, receive, send)


def _refused(conn: HTTPConnection, refusal: Refusal) -> Response:
    wants_page = conn.url.path == "/" and "text/html" in conn.headers.get("accept", "")
    if wants_page and (refusal.status == 401 or "token" in conn.query_params):
        return HTMLResponse(_ask_for_token(refusal.message), status_code=refusal.status)
    return JSONResponse({"ok": False, "message": refusal.message}, status_code=refusal.status)


def _ask_for_token(message: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pxcontrol · Live Systems</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ background:#0d1117; color:#d7dde5; font:15px system-ui, sans-serif; display:grid;
  place-items:center; min-height:100vh; margin:0 }}
form {{ background:#161b22; border:1px solid #2a313c; border-radius:8px; padding:28px; width:320px }}
h1 {{ font-size:17px; margin:0 0 4px }} p {{ color:#8b96a5; margin:0 0 18px }}
input, button {{ width:100%; box-sizing:border-box; padding:9px 10px; border-radius:5px;
  font:inherit; border:1px solid #2a313c; background:#0d1117; color:inherit }}
button {{ margin-top:10px; background:#1f6feb; border-color:#1f6feb; color:#fff;
  font-weight:600; cursor:pointer }}
</style></head>
<body><form method="get" action="/">
<h1>pxcontrol · Live Systems</h1><p id="refusal">{escape(message)}: enter the show's director.token</p>
<input name="token" type="password" autocomplete="current-password" autofocus
  placeholder="token" aria-label="token"><button type="submit">Open</button>
</form></body></html>"""


def _offers_token(conn: HTTPConnection) -> bool:
    """A token in the request itself (a guess, perhaps), not the session cookie."""
    return "token" in conn.query_params or conn.headers.get("authorization", "").lower().startswith(
        "bearer "
    )


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _same_origin(conn: HTTPConnection) -> bool:
    origin = conn.headers.get("origin")
    if origin is None:
        return True  # not a browser, or a same-origin GET: nothing cross-site about it
    scheme = conn.url.scheme.replace("ws", "http")  # ws → http, wss → https
    return origin.rstrip("/") == f"{scheme}://{conn.headers.get('host', '')}"
