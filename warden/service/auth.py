"""Authentication of HTTP service callers: API keys and HS256 bearer tokens, mapped to principals.

A principal has a subject (the reviewer identity recorded with decisions), a
role and a tenant. Roles are ``customer`` (the channel that sends customer
messages), ``admin``, or a reviewer role named in ``Settings.review_roles``
(by default ``agent`` and ``supervisor``), which decides actions of the risk
tiers that list it. Key material comes only from settings and is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from warden.errors import ConfigurationError, WardenError

logger = logging.getLogger(__name__)

CUSTOMER_ROLE = "customer"
ADMIN_ROLE = "admin"
TOKEN_ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class AuthenticationError(WardenError):
    """The credential is missing, unknown, expired or malformed."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    subject: str
    role: str
    tenant: str

    @property
    def is_customer(self) -> bool:
        return self.role == CUSTOMER_ROLE

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN_ROLE

    @property
    def is_reviewer(self) -> bool:
        return not self.is_customer


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def build_principal(claims: Mapping[str, Any], roles: Iterable[str], *, source: str) -> Principal:
    """Validate ``subject``/``sub``, ``role`` and ``tenant`` claims and return the principal.

    Raises ``ValueError`` naming the invalid claim and ``source``, which is a
    key's position in ``WARDEN_API_KEYS`` or ``token``. Claims are not
    secret, so the message shows their values.
    """
    subject = claims.get("subject", claims.get("sub"))
    role = claims.get("role")
    tenant = claims.get("tenant")
    if not isinstance(subject, str) or not SUBJECT_PATTERN.match(subject):
        raise ValueError(f"{source}: subject {subject!r} must match {SUBJECT_PATTERN.pattern}")
    known = {CUSTOMER_ROLE, ADMIN_ROLE, *roles}
    if role not in known:
        raise ValueError(f"{source}: role {role!r} is unknown; use one of {sorted(known)}")
    if not isinstance(tenant, str) or not TENANT_PATTERN.match(tenant):
        raise ValueError(f"{source}: tenant {tenant!r} must match {TENANT_PATTERN.pattern}")
    return Principal(subject=subject, role=role, tenant=tenant)


class Authenticator:
    """Map a bearer credential to a principal: an API key first, then a signed token."""

    def __init__(
        self,
        api_keys: Mapping[str, Mapping[str, Any]],
        token_secret: str | None,
        reviewer_roles: Iterable[str],
    ) -> None:
        """Validate the configured keys and secret.

        Raises ``ConfigurationError`` when neither is set, when the secret is
        shorter than 32 bytes, or when a key's principal is invalid. The
        message names a key by its position in the mapping, never by its value.
        """
        self.reviewer_roles = frozenset(reviewer_roles)
        if not api_keys and not token_secret:
            raise ConfigurationError(
                "the HTTP service has no credentials configured; set WARDEN_API_KEYS "
                "or WARDEN_TOKEN_SECRET (see docs/service.md)"
            )
        if token_secret is not None and len(token_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"WARDEN_TOKEN_SECRET is {len(token_secret.encode())} bytes; use at least "
                f"{MIN_SECRET_BYTES} random bytes"
            )
        self._secret = token_secret
        self._keys: dict[str, Principal] = {}
        for position, (key, claims) in enumerate(api_keys.items(), start=1):
            if not isinstance(claims, Mapping):
                raise ConfigurationError(f"WARDEN_API_KEYS entry {position} must map to an object")
            if len(key) < 16:
                raise ConfigurationError(f"WARDEN_API_KEYS entry {position}: the key is shorter than 16 characters")
            try:
                principal = build_principal(claims, self.reviewer_roles, source=f"WARDEN_API_KEYS entry {position}")
            except ValueError as error:
                raise ConfigurationError(str(error)) from None
            self._keys[_key_digest(key)] = principal

    def authenticate(self, credential: str) -> Principal:
        """Return the principal of ``credential``; raise ``AuthenticationError`` if it is not valid."""
        digest = _key_digest(credential)
        for known, principal in self._keys.items():
            if hmac.compare_digest(known, digest):
                return principal
        if self._secret is None:
            raise AuthenticationError("unknown API key")
        try:
            claims = jwt.decode(
                credential,
                self._secret,
                algorithms=[TOKEN_ALGORITHM],
                options={"require": ["exp", "sub", "role", "tenant"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired") from None
        except jwt.InvalidTokenError as error:
            # The library's message names the failed check, never the token.
            raise AuthenticationError(f"invalid API key or token ({type(error).__name__})") from None
        try:
            return build_principal(claims, self.reviewer_roles, source="token")
        except ValueError as error:
            raise AuthenticationError(str(error)) from None


def issue_token(secret: str, *, subject: str, role: str, tenant: str, ttl_seconds: int = 3600) -> str:
    """Sign an HS256 bearer token for ``subject`` that expires after ``ttl_seconds``."""
    now = int(time.time())
    claims = {"sub": subject, "role": role, "tenant": tenant, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=TOKEN_ALGORITHM)
