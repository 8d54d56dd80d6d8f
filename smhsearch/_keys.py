"""Short content keys: a value's JSON text hashed, so equal values (dict key order aside) share a file name.

The speed cache, the teachers' folders and a study's fingerprint are keyed this way, and
keys already on disk must stay what they are: the text is ``json.dumps(value,
sort_keys=True, default=str)`` and the key the first ``n`` hex digits of its SHA-1 (a name,
not a security measure).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def json_key(value: Any, n: int = 16) -> str:
    """The first ``n`` hex digits of the SHA-1 of ``value``'s JSON text (keys sorted; other objects as ``str``).

    >>> json_key({"b": 1, "a": [2, 3]}) == json_key({"a": [2, 3], "b": 1})
    True
    >>> len(json_key(["resnet8", (3, 32, 32)], n=20))
    20
    """
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:n]
