"""A storage URL's password, kept out of what is printed or saved (standard library only)."""

from __future__ import annotations

import re


def normalize(url: str) -> str:
    """``postgresql://`` as SQLAlchemy's psycopg 3 URL (its bare ``postgresql://`` means psycopg2, not installed here)."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare):]
    return url


def redact(text: str | None) -> str:
    """``text`` with the password of any URL in it replaced by ``***`` (what may be printed or saved)."""
    return re.sub(r"(\w[\w+.-]*://[^:/@\s]*):[^@\s]*@", r"\1:***@", text or "")


def without_password(url: str) -> str:
    """``url`` with its password (if any) removed: what tells whether two URLs name the same place."""
    return re.sub(r"^(\w[\w+.-]*://[^:/@\s]*):[^@\s]*@", r"\1@", normalize(url))
