"""Checks on the spec's untrusted text: names, ids, URLs and labels.

A StemeDBCluster is written by a tenant, and its text reaches Kubernetes request
paths (Secret and Pod names), StemeDB request URLs, Events, status and metric
labels. The CRD schema refuses all of this at admission; these checks repeat
the same rules so a spec that slipped past an older CRD is reported, not used
(docs/security.md). Each returns a sentence naming the problem, or None.

The regular expressions are the CRD's `pattern`s: hack/gen-crd.py writes them
into the CRD from the spec's declarations (controller/domain/spec_schema.py).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

# Kubernetes object names (Secrets, Pods): RFC 1123 subdomain, as apimachinery's
# IsDNS1123Subdomain.
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_SUBDOMAIN_MAX = 253
# Keys of a Secret's data, as apimachinery's IsConfigMapKey.
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
SECRET_KEY_MAX = 253
# Node and agent ids: they appear in metric labels, JSON bodies, Events and the
# operator's own metric labels. A label value's alphabet, without the empty string.
NODE_ID = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
NODE_ID_MAX = 63
# A URL's host: a DNS name whose last label starts with a letter (no TLD is
# numeric), a canonical dotted-quad IPv4 address, or a bracketed IPv6 address.
# Refuses the shorthands resolvers expand into addresses (127.1, 2130706433,
# 0x7f.1), which could otherwise be judged only once they resolve.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_HOST = (r"(\[[0-9A-Fa-f:.]+\]|(" + _OCTET + r"\.){3}" + _OCTET
         + r"|([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*\.?)")
# URLs: http(s), a host as above with an optional port, an optional path of
# RFC 3986 path characters; no userinfo, query, fragment, spaces or control
# characters. The port range is checked separately (CEL in the CRD). A pattern,
# not CEL: patterns have no cost budget, and this one runs on 64 replicas.
URL = r"^https?://" + _HOST + r"(:[0-9]+)?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$"
_URL_HOST = re.compile(_HOST)
URL_MAX = 2048
# Free text shown to humans (escalation contacts): no control or format
# characters (newlines, bidi overrides, zero-width characters).
CONTACT_MAX = 256

_DNS1123 = re.compile(DNS1123_SUBDOMAIN)
_SECRET_KEY = re.compile(SECRET_KEY)
_NODE_ID = re.compile(NODE_ID)
_URL = re.compile(URL)


def shown(value: str, limit: int = 60) -> str:
    """A value quoted for a message: escaped and cut, so a hostile value cannot
    forge lines or flood the condition it is reported in."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return ascii(text)


def object_name_problem(value: str) -> str | None:
    """Why `value` cannot be a Kubernetes object name in this namespace, or None."""
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"is {len(value)} characters long; a Kubernetes name has at most 253"
    if not _DNS1123.fullmatch(value):
        return (f"{shown(value)} is not a Kubernetes object name in this namespace "
                "(lowercase letters, digits, '-' and '.'; no '/')")
    return None


def secret_key_problem(value: str) -> str | None:
    if len(value) > SECRET_KEY_MAX:
        return f"is {len(value)} characters long; a Secret key has at most 253"
    if not _SECRET_KEY.fullmatch(value):
        return f"{shown(value)} is not a Secret key (letters, digits, '-', '_' and '.')"
    return None


def node_id_problem(value: str) -> str | None:
    if len(value) > NODE_ID_MAX:
        return f"is {len(value)} characters long; an id has at most 63"
    if not _NODE_ID.fullmatch(value):
        return (f"{shown(value)} is not a node or agent id (letters, digits, '.', '_' and "
                "'-', starting and ending with a letter or digit)")
    return None


def url_problem(value: str) -> str | None:
    """Why `value` cannot be a StemeDB or webhook URL, or None.

    Only http(s) with a host; credentials come from Secrets, never from the URL,
    and the operator appends its own paths, so a query or fragment is refused.
    """
    if len(value) > URL_MAX:
        return f"is {len(value)} characters long; a URL has at most {URL_MAX}"
    try:
        parts = urlsplit(value)
    except ValueError:
        return f"{shown(value)} is not a URL"
    if parts.scheme not in ("http", "https") or not value.startswith(parts.scheme + "://"):
        return f"{shown(value)} must be an http:// or https:// URL"
    if "@" in parts.netloc:
        return "must not carry a user or password (credentials come from spec.auth Secrets)"
    if parts.query or parts.fragment or "?" in value or "#" in value:
        return f"{shown(value)} must not have a query or fragment (the operator adds the paths)"
    try:
        port = parts.port
        host = parts.hostname
    except ValueError:
        return f"{shown(value)} has an invalid host or port"
    if not host:
        return f"{shown(value)} has no host"
    netloc_host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else (
        parts.netloc)
    if ":" not in host and not _URL_HOST.fullmatch(netloc_host):
        return (f"{shown(value)} has host {shown(host)}: use a DNS name, a dotted-quad "
                "IPv4 address or a bracketed IPv6 address (no numeric shorthands)")
    if not _URL.fullmatch(value):
        return (f"{shown(value)} is not a plain http(s) URL (no spaces, control or "
                "non-ASCII characters)")
    if port is not None and not 1 <= port <= 65535:
        return f"{shown(value)} has port {port}, outside 1-65535"
    if port is None and parts.netloc.endswith(":"):
        return f"{shown(value)} has an empty port"
    return None


def _unsafe_char(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")


def contact_problem(value: str) -> str | None:
    if len(value) > CONTACT_MAX:
        return f"is {len(value)} characters long; at most {CONTACT_MAX}"
    if not value.strip():
        return "must not be empty"
    bad = next((ch for ch in value if _unsafe_char(ch)), None)
    if bad is not None:
        return (f"contains the control or format character U+{ord(bad):04X}; "
                "it is shown to humans in Events and pages")
    return None


# The CRD's pattern for contacts: the same character classes as `_unsafe_char`
# for what Go's RE2 can express (C0/C1 controls, bidi controls, zero-width
# characters, line and paragraph separators, BOM).
CONTACT_PATTERN = (
    r"^[^\x00-\x1F\x7F-\x9F\x{00AD}\x{061C}\x{180E}\x{200B}-\x{200F}\x{2028}-\x{202E}"
    r"\x{2060}-\x{206F}\x{FEFF}\x{FFF9}-\x{FFFB}]*$"
)
