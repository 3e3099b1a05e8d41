"""Console sessions: who signed in, held in a signed cookie, and the token every form
carries against cross-site requests.

The cookie is HttpOnly, SameSite=Strict and signed with the console's secret; it names the
key (or the admin) and a random nonce, never the key itself. The form token is an HMAC of
that nonce, so a page of another site can neither read nor forge it. Before sign-in, the
sign-in form is held to a random cookie of its own (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from batchway.config import ConsoleConfig

__all__ = ["ADMIN_SUBJECT", "LOGIN_COOKIE", "SESSION_COOKIE", "Session", "Sessions"]

SESSION_COOKIE = "batchway_console"
LOGIN_COOKIE = "batchway_console_login"
ADMIN_SUBJECT = "admin"  # the subject of a session signed in with the admin key


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in person: the admin, or the id of the gateway key they signed in with."""

    subject: str
    nonce: str

    @property
    def is_admin(self) -> bool:
        return self.subject == ADMIN_SUBJECT


def _secret(config: ConsoleConfig, admin_key: str | None) -> bytes:
    if config.session_secret is not None:
        return config.session_secret.encode()
    if admin_key is not None:
        return hmac.new(admin_key.encode(), b"batchway console sessions", hashlib.sha256).digest()
    return secrets.token_bytes(32)


class Sessions:
    """Issues and reads session cookies, and the forms' tokens."""

    def __init__(self, config: ConsoleConfig, admin_key: str | None) -> None:
        self._secret = _secret(config, admin_key)
        self._signer = URLSafeTimedSerializer(self._secret, salt="batchway-console")
        self.max_age = int(config.session_hours * 3600)

    def issue(self, subject: str) -> str:
        """The cookie value of a new session."""
        return self._signer.dumps({"s": subject, "n": secrets.token_urlsafe(16)})

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie holds; None when it is missing, forged or too old."""
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        subject, nonce = data.get("s"), data.get("n")
        if not isinstance(subject, str) or not isinstance(nonce, str):
            return None
        return Session(subject=subject, nonce=nonce)

    def form_token(self, session: Session) -> str:
        """The token a signed-in session's forms carry."""
        return hmac.new(self._secret, session.nonce.encode(), hashlib.sha256).hexdigest()

    def form_token_ok(self, session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.form_token(session), token)

    @staticmethod
    def login_token() -> str:
        """A fresh token for the sign-in form and its cookie."""
        return secrets.token_urlsafe(24)
