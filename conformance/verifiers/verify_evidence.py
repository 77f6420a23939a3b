#!/usr/bin/env python3
"""Independent CyclesEvidence verifier, written from the text of cycles-evidence-v0.2.yaml.

It shares no code with the TypeScript server (src/evidence/*): it is what an auditor
following the spec's recipe with their own tools would run.  Python 3.11 standard library
plus the `cryptography` package (Ed25519 only).

    python3 verify_evidence.py [--jwks FILE | --resolve] [--expected-signer DID] ENVELOPE...
    python3 verify_evidence.py --canonicalize FILE...      (RFC 8785 bytes of each document)

One JSON line per envelope: {"file", "disposition", "evidence_id", "reason", ...}.
Dispositions are the spec's five (CyclesEvidenceJwks, "Verification dispositions"):
authentic, binding_only, signer_authority_failed, signer_resolution_failed,
signature_invalid.  Exit 0 iff every envelope is authentic or binding_only (and matched the
pin, when one is given); 1 otherwise; 2 on usage errors.

Order of checks (the spec's "Verification" and "Key selection" steps, in that order):
  1. parse the bytes as I-JSON (RFC 7493: UTF-8, no duplicate member names, no lone
     surrogates; numbers are IEEE 754 doubles, RFC 8785 §3.2.2.3);
  2. the envelope's shape: what the spec's text and schema say a verifier MUST reject
     (schema_version, artifact_type <-> payload key, closed mirrors, the ErrorCode enum,
     the reserve/error cross-member rules);
  3. re-derive evidence_id (JCS of the envelope with evidence_id = signature = "") and
     compare it byte for byte;
  4. resolve the key: raw hex -> K directly (and, with a JWK Set, authority = exactly one
     valid window-covering JWK with the same key bytes); did:cycles -> DID/server_id hash
     binding, fetch/read the set, select by kid, window gate;
  5. Ed25519-verify the signature over JCS(envelope with signature = "") against K.
A failure in 1-3 is reported as signature_invalid (the spec names no other disposition for
an envelope that must be rejected: its bytes cannot be attested).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import sys
import urllib.request

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover - reported by the CLI
    Ed25519PublicKey = None  # type: ignore[assignment]

AUTHENTIC = "authentic"
BINDING_ONLY = "binding_only"
AUTHORITY_FAILED = "signer_authority_failed"
RESOLUTION_FAILED = "signer_resolution_failed"
SIGNATURE_INVALID = "signature_invalid"
VALID = (AUTHENTIC, BINDING_ONLY)

MAX_DOCUMENT_BYTES = 1 << 20  # a bound on what we read; envelopes are a few KB
FETCH_TIMEOUT_S = 10


class Reject(Exception):
    """An input the recipe rejects; `disposition` says how."""

    def __init__(self, disposition: str, reason: str):
        super().__init__(reason)
        self.disposition = disposition
        self.reason = reason


# ---------------------------------------------------------------------------------------
# I-JSON parsing (RFC 7493) — what RFC 8785 takes as input
# ---------------------------------------------------------------------------------------

class NotIJson(ValueError):
    pass


def _pairs(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise NotIJson(f"duplicate member name {k!r}")
        out[k] = v
    return out


def _number(text: str) -> float:
    v = float(text)  # the IEEE 754 double nearest to the literal
    if math.isinf(v):
        raise NotIJson(f"number {text} does not fit an IEEE 754 double")
    return v


def _constant(name: str):
    raise NotIJson(f"{name} is not JSON")


def _no_lone_surrogates(v, depth=0):
    if depth > 200:
        raise NotIJson("nested too deeply")
    if isinstance(v, str):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
            raise NotIJson("lone surrogate in a string")
    elif isinstance(v, dict):
        for k, x in v.items():
            _no_lone_surrogates(k, depth + 1)
            _no_lone_surrogates(x, depth + 1)
    elif isinstance(v, list):
        for x in v:
            _no_lone_surrogates(x, depth + 1)


def parse_ijson(data: bytes):
    """Parse UTF-8 JSON bytes; numbers become floats (doubles). Raises NotIJson."""
    try:
        text = data.decode("utf-8")  # strict: invalid UTF-8 is refused
    except UnicodeDecodeError as e:
        raise NotIJson(f"not UTF-8: {e}") from None
    if text.startswith("\ufeff"):
        raise NotIJson("byte order mark")
    try:
        v = json.loads(text, object_pairs_hook=_pairs, parse_float=_number,
                       parse_int=_number, parse_constant=_constant)
    except NotIJson:
        raise
    except (ValueError, RecursionError) as e:
        raise NotIJson(f"not JSON: {e}") from None
    _no_lone_surrogates(v)
    return v


# ---------------------------------------------------------------------------------------
# RFC 8785 JSON Canonicalization Scheme
# ---------------------------------------------------------------------------------------

class NotCanonicalizable(ValueError):
    pass


def es_number(v: float) -> str:
    """ECMAScript Number::toString(v) (ECMA-262 §6.1.6.1.20), as RFC 8785 §3.2.2.3 requires.

    Python's repr(float) yields the shortest digit string that round-trips (and the closest
    one among those), which is the digit string (s, k) ECMAScript specifies; only the layout
    differs, so the digits and exponent are taken from repr and laid out by the ES rules."""
    if math.isnan(v) or math.isinf(v):
        raise NotCanonicalizable("NaN and Infinity have no JSON form")
    if v == 0:
        return "0"  # also -0
    if v < 0:
        return "-" + es_number(-v)
    r = repr(v)
    mant, _, exp = r.partition("e")
    int_part, _, frac_part = mant.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    # value = 0.<int_part><frac_part> * 10^(len(int_part)) * 10^exp
    point = len(int_part) + (int(exp) if exp else 0)
    lead_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    n = point - lead_zeros  # value = 0.<digits> * 10^n
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{head}e{sign}{abs(e)}"


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                  "\f": "\\f", "\r": "\\r"}


def jcs_string(s: str) -> str:
    """RFC 8785 §3.2.2.2: escape only '"', '\\' and U+0000..U+001F (short forms where JSON
    has them, else \\u00xx in lowercase hex); everything else literal. Lone surrogates fail."""
    out = ['"']
    for c in s:
        o = ord(c)
        if c in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[c])
        elif o < 0x20:
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:
            raise NotCanonicalizable("lone surrogate")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _utf16_key(name: str) -> bytes:
    # RFC 8785 §3.2.3: members sorted by their names as arrays of UTF-16 code units;
    # comparing big-endian UTF-16 bytes is the same order.
    return name.encode("utf-16-be", "surrogatepass")


def jcs(v, depth=0) -> str:
    if depth > 200:
        raise NotCanonicalizable("nested too deeply")
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return es_number(float(v))
    if isinstance(v, str):
        return jcs_string(v)
    if isinstance(v, list):
        return "[" + ",".join(jcs(x, depth + 1) for x in v) + "]"
    if isinstance(v, dict):
        names = sorted(v.keys(), key=_utf16_key)
        return "{" + ",".join(jcs_string(k) + ":" + jcs(v[k], depth + 1) for k in names) + "}"
    raise NotCanonicalizable(f"not a JSON value: {type(v).__name__}")


def jcs_bytes(v) -> bytes:
    return jcs(v).encode("utf-8")


# ---------------------------------------------------------------------------------------
# The envelope's shape (what a verifier MUST reject, from the schema and its text)
# ---------------------------------------------------------------------------------------

HEX64 = re.compile(r"[0-9a-f]{64}")
HEX128 = re.compile(r"[0-9a-f]{128}")
HEX32 = re.compile(r"[0-9a-f]{32}")
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
UNITS = ("USD_MICROCENTS", "TOKENS", "CREDITS", "RISK_POINTS")
DECISIONS = ("ALLOW", "ALLOW_WITH_CAPS", "DENY")
ARTIFACT_TYPES = ("decide", "reserve", "commit", "release", "error")
ERROR_CODES = ("INVALID_REQUEST", "UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND", "BUDGET_EXCEEDED",
               "BUDGET_FROZEN", "BUDGET_CLOSED", "RESERVATION_EXPIRED",
               "RESERVATION_FINALIZED", "IDEMPOTENCY_MISMATCH", "UNIT_MISMATCH",
               "OVERDRAFT_LIMIT_EXCEEDED", "DEBT_OUTSTANDING", "MAX_EXTENSIONS_EXCEEDED",
               "LIMIT_EXCEEDED", "TENANT_CLOSED", "INTERNAL_ERROR")
EP_DECIDE = "POST /v1/decide"
EP_RESERVE = "POST /v1/reservations"
EP_COMMIT = "POST /v1/reservations/{reservation_id}/commit"
EP_RELEASE = "POST /v1/reservations/{reservation_id}/release"


class Bad(ValueError):
    pass


def is_int(v) -> bool:
    return isinstance(v, float) and not isinstance(v, bool) and v.is_integer()


def t_str(max_len=None, min_len=None, pattern=None, enum=None):
    def check(v, at):
        if not isinstance(v, str):
            raise Bad(f"{at}: not a string")
        if enum is not None and v not in enum:
            raise Bad(f"{at}: {v!r} is not one of {', '.join(enum)}")
        if max_len is not None and len(v) > max_len:
            raise Bad(f"{at}: longer than {max_len}")
        if min_len is not None and len(v) < min_len:
            raise Bad(f"{at}: shorter than {min_len}")
        if pattern is not None and not pattern.fullmatch(v):
            raise Bad(f"{at}: does not match {pattern.pattern}")
    return check


def t_int(minimum=None, maximum=None):
    def check(v, at):
        if not is_int(v):
            raise Bad(f"{at}: not an integer")
        if not INT64_MIN <= v <= INT64_MAX:
            raise Bad(f"{at}: outside int64")
        if minimum is not None and v < minimum:
            raise Bad(f"{at}: below {minimum}")
        if maximum is not None and v > maximum:
            raise Bad(f"{at}: above {maximum}")
    return check


def t_bool(v, at):
    if not isinstance(v, bool):
        raise Bad(f"{at}: not a boolean")


def t_free_object(v, at):
    if not isinstance(v, dict):
        raise Bad(f"{at}: not an object")


def t_array(items, max_items=None):
    def check(v, at):
        if not isinstance(v, list):
            raise Bad(f"{at}: not an array")
        if max_items is not None and len(v) > max_items:
            raise Bad(f"{at}: more than {max_items} items")
        for i, x in enumerate(v):
            items(x, f"{at}[{i}]")
    return check


def t_object(props, required=(), rule=None):
    """A closed object (additionalProperties: false): only `props`, all of `required`."""
    def check(v, at):
        if not isinstance(v, dict):
            raise Bad(f"{at}: not an object")
        for name in v:
            if name not in props:
                raise Bad(f"{at}: member {name!r} is not allowed (closed object)")
        for name in required:
            if name not in v:
                raise Bad(f"{at}: member {name!r} is required")
        for name, x in v.items():
            props[name](x, f"{at}.{name}")
        if rule is not None:
            rule(v, at)
    return check


def _subject_rule(v, at):
    if not any(k in v for k in ("tenant", "workspace", "app", "workflow", "agent", "toolset")):
        raise Bad(f"{at}: needs at least one of tenant, workspace, app, workflow, agent, toolset")


def _dimensions(v, at):
    t_free_object(v, at)
    if len(v) > 16:
        raise Bad(f"{at}: more than 16 dimensions")
    for k, x in v.items():
        t_str(max_len=256)(x, f"{at}.{k}")


def _caps_iff_allow_with_caps(v, at):
    if (v.get("decision") == "ALLOW_WITH_CAPS") != ("caps" in v):
        raise Bad(f"{at}: caps must be present iff decision is ALLOW_WITH_CAPS")


SUBJECT = t_object({**{k: t_str(max_len=128) for k in
                       ("tenant", "workspace", "app", "workflow", "agent", "toolset")},
                    "dimensions": _dimensions}, rule=_subject_rule)
ACTION = t_object({"kind": t_str(max_len=64), "name": t_str(max_len=256),
                   "tags": t_array(t_str(max_len=64), max_items=10)}, ("kind", "name"))
AMOUNT = t_object({"unit": t_str(enum=UNITS), "amount": t_int(minimum=0)}, ("unit", "amount"))
SIGNED_AMOUNT = t_object({"unit": t_str(enum=UNITS), "amount": t_int()}, ("unit", "amount"))
BALANCE = t_object({"scope": t_str(), "scope_path": t_str(), "remaining": SIGNED_AMOUNT,
                    "reserved": AMOUNT, "spent": AMOUNT, "allocated": AMOUNT, "debt": AMOUNT,
                    "overdraft_limit": AMOUNT, "is_over_limit": t_bool},
                   ("scope", "scope_path", "remaining"))
CAPS = t_object({"max_tokens": t_int(minimum=0), "max_steps_remaining": t_int(minimum=0),
                 "tool_allowlist": t_array(t_str(max_len=256)),
                 "tool_denylist": t_array(t_str(max_len=256)), "cooldown_ms": t_int(minimum=0)})
METRICS = t_object({"tokens_input": t_int(minimum=0), "tokens_output": t_int(minimum=0),
                    "latency_ms": t_int(minimum=0), "model_version": t_str(max_len=128),
                    "custom": t_free_object})
IDEMPOTENCY_KEY = t_str(min_len=1, max_len=256)
BALANCES = t_array(BALANCE)

DECISION_REQUEST = t_object({"idempotency_key": IDEMPOTENCY_KEY, "subject": SUBJECT,
                             "action": ACTION, "estimate": AMOUNT, "metadata": t_free_object},
                            ("idempotency_key", "subject", "action", "estimate"))
DECISION_RESPONSE = t_object({"decision": t_str(enum=DECISIONS), "caps": CAPS,
                              "reason_code": t_str(max_len=128),
                              "retry_after_ms": t_int(minimum=0),
                              "affected_scopes": t_array(t_str())},
                             ("decision",), rule=_caps_iff_allow_with_caps)
RESERVE_REQUEST = t_object({"idempotency_key": IDEMPOTENCY_KEY, "subject": SUBJECT,
                            "action": ACTION, "estimate": AMOUNT,
                            "ttl_ms": t_int(minimum=1000, maximum=86400000),
                            "grace_period_ms": t_int(minimum=0, maximum=60000),
                            "overage_policy": t_str(enum=("REJECT", "ALLOW_IF_AVAILABLE",
                                                          "ALLOW_WITH_OVERDRAFT")),
                            "dry_run": t_bool, "metadata": t_free_object},
                           ("idempotency_key", "subject", "action", "estimate"))
RESERVE_RESPONSE = t_object({"decision": t_str(enum=DECISIONS),
                             "affected_scopes": t_array(t_str()), "reservation_id": t_str(),
                             "reserved": AMOUNT, "caps": CAPS,
                             "reason_code": t_str(max_len=128),
                             "retry_after_ms": t_int(minimum=0),
                             "expires_at_ms": t_int(minimum=0), "scope_path": t_str(),
                             "balances": BALANCES},
                            ("decision", "affected_scopes"), rule=_caps_iff_allow_with_caps)
COMMIT_REQUEST = t_object({"idempotency_key": IDEMPOTENCY_KEY, "actual": AMOUNT,
                           "metrics": METRICS, "metadata": t_free_object},
                          ("idempotency_key", "actual"))
COMMIT_RESPONSE = t_object({"status": t_str(enum=("COMMITTED",)), "charged": AMOUNT,
                            "released": AMOUNT, "balances": BALANCES}, ("status", "charged"))
RELEASE_REQUEST = t_object({"idempotency_key": IDEMPOTENCY_KEY, "reason": t_str(max_len=256)},
                           ("idempotency_key",))
RELEASE_RESPONSE = t_object({"status": t_str(enum=("RELEASED",)), "released": AMOUNT,
                             "balances": BALANCES}, ("status", "released"))
ERROR_RESPONSE = t_object({"error": t_str(enum=ERROR_CODES), "message": t_str(),
                           "request_id": t_str(), "trace_id": t_str(pattern=HEX32),
                           "details": t_free_object}, ("error", "message", "request_id"))


def _reserve_rules(v, at):
    dry = v["request"].get("dry_run") is True
    resp = v["response"]
    if resp.get("decision") == "DENY" and not dry:
        raise Bad(f"{at}: decision DENY on a reserve that is not a dry run (must be a 409 error)")
    if dry and ("reservation_id" in resp or "expires_at_ms" in resp):
        raise Bad(f"{at}: a dry run has no reservation_id / expires_at_ms")
    if not dry and "reservation_id" not in resp:
        raise Bad(f"{at}: a live reserve needs response.reservation_id")


ERROR_REQUEST_BY_ENDPOINT = {EP_DECIDE: DECISION_REQUEST, EP_RESERVE: RESERVE_REQUEST,
                             EP_COMMIT: COMMIT_REQUEST, EP_RELEASE: RELEASE_REQUEST}


def _error_rules(v, at):
    ep = v["endpoint"]
    if "request" in v:
        ERROR_REQUEST_BY_ENDPOINT[ep](v["request"], f"{at}.request")
    if ep in (EP_COMMIT, EP_RELEASE) and "reservation_id" not in v:
        raise Bad(f"{at}: reservation_id is required for {ep}")
    if ep in (EP_DECIDE, EP_RESERVE) and "reservation_id" in v:
        raise Bad(f"{at}: reservation_id must be absent for {ep}")


PAYLOADS = {
    "decide": t_object({"request": DECISION_REQUEST, "response": DECISION_RESPONSE},
                       ("request", "response")),
    "reserve": t_object({"request": RESERVE_REQUEST, "response": RESERVE_RESPONSE},
                        ("request", "response"), rule=_reserve_rules),
    "commit": t_object({"reservation_id": t_str(), "request": COMMIT_REQUEST,
                        "response": COMMIT_RESPONSE}, ("reservation_id", "request", "response")),
    "release": t_object({"reservation_id": t_str(), "request": RELEASE_REQUEST,
                         "response": RELEASE_RESPONSE},
                        ("reservation_id", "request", "response")),
    "error": t_object({"endpoint": t_str(enum=tuple(ERROR_REQUEST_BY_ENDPOINT)),
                       "http_status": t_int(minimum=400, maximum=599),
                       "reservation_id": t_str(), "request": t_free_object,
                       "response": ERROR_RESPONSE},
                      ("endpoint", "http_status", "response"), rule=_error_rules),
}

URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")


def _payload(v, at):
    if not isinstance(v, dict):
        raise Bad(f"{at}: not an object")
    if len(v) != 1:
        raise Bad(f"{at}: must have exactly one member (has {len(v)})")


ENVELOPE_REQUIRED = ("schema_version", "artifact_type", "server_id", "signer_did",
                     "issued_at_ms", "payload", "evidence_id", "signature")
ENVELOPE = t_object({"schema_version": t_str(enum=("cycles-evidence/v0.1",)),
                     "artifact_type": t_str(enum=ARTIFACT_TYPES),
                     "server_id": t_str(pattern=URI),
                     "signer_did": t_str(),
                     "issued_at_ms": t_int(minimum=0),
                     "trace_id": t_str(pattern=HEX32),
                     "payload": _payload,
                     "evidence_id": t_str(pattern=HEX64),
                     "signature": t_str(pattern=HEX128)}, ENVELOPE_REQUIRED)


def check_shape(env) -> None:
    ENVELOPE(env, "$")
    kind = env["artifact_type"]
    if kind not in env["payload"]:
        raise Bad(f"$.payload: artifact_type {kind!r} requires payload.{kind} "
                  f"(has {', '.join(env['payload'])})")
    PAYLOADS[kind](env["payload"][kind], f"$.payload.{kind}")


# ---------------------------------------------------------------------------------------
# evidence_id and signing input
# ---------------------------------------------------------------------------------------

def evidence_id_of(env: dict) -> str:
    """Hash derivation: sha256 of JCS(envelope with evidence_id = "" and signature = "")."""
    return hashlib.sha256(jcs_bytes({**env, "evidence_id": "", "signature": ""})).hexdigest()


def signing_input_of(env: dict) -> bytes:
    """Signature derivation: JCS(envelope with its evidence_id and signature = "")."""
    return jcs_bytes({**env, "signature": ""})


# ---------------------------------------------------------------------------------------
# JWK Set and key selection (CyclesEvidenceJwks)
# ---------------------------------------------------------------------------------------

B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_key(x) -> bytes | None:
    """The 32 raw key bytes of an unpadded base64url `x` (RFC 7515 §2), or None."""
    if not isinstance(x, str) or len(x) != 43 or not B64URL.fullmatch(x):
        return None
    raw = base64.urlsafe_b64decode(x + "=")
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != x:
        return None  # non-zero unused bits: not the encoding of these bytes
    return raw


def valid_jwk(k):
    """(kid, key bytes, nbf, exp|None) of a JWK that may be a candidate, else None."""
    if not isinstance(k, dict):
        return None
    if k.get("kty") != "OKP" or k.get("crv") != "Ed25519":
        return None
    if "alg" in k and k["alg"] != "EdDSA":
        return None
    if not isinstance(k.get("kid"), str):
        return None
    key = b64url_key(k.get("x"))
    if key is None:
        return None
    nbf = k.get("cycles_nbf_ms")
    if not is_int(nbf):
        return None
    exp = k.get("cycles_exp_ms")
    if exp is not None and not is_int(exp):
        return None
    return k["kid"], key, nbf, exp


def covers(nbf, exp, issued_at_ms) -> bool:
    return nbf <= issued_at_ms and (exp is None or issued_at_ms < exp)


def jwks_keys(jwks) -> list:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise Reject(RESOLUTION_FAILED, "the JWK Set has no `keys` array")
    return jwks["keys"]


def select_key(keys: list, issued_at_ms: float, *, kid: str | None = None,
               key: bytes | None = None) -> tuple[str, bytes]:
    """Deterministic selection: exactly one valid, window-covering candidate, else
    signer_authority_failed."""
    kids = [k.get("kid") for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)]
    dup = sorted({x for x in kids if kids.count(x) > 1})
    if dup:
        raise Reject(AUTHORITY_FAILED, f"duplicate kid in the JWK Set: {', '.join(dup)}")
    if kid is not None:
        named = [k for k in keys if isinstance(k, dict) and k.get("kid") == kid]
        if not named:
            raise Reject(AUTHORITY_FAILED, f"no JWK with kid {kid!r}")
        pool = named
    else:
        pool = keys
    candidates = []
    for k in pool:
        j = valid_jwk(k)
        if j is None:
            continue
        if key is not None and j[1] != key:
            continue
        if covers(j[2], j[3], issued_at_ms):
            candidates.append(j)
    if len(candidates) != 1:
        what = f"kid {kid!r}" if kid is not None else "the signer_did key bytes"
        raise Reject(AUTHORITY_FAILED, f"{len(candidates)} valid JWKs for {what} cover "
                                       f"issued_at_ms {es_number(issued_at_ms)} (need exactly one)")
    return candidates[0][0], candidates[0][1]


class JwksSource:
    """Where the set comes from: a file (--jwks), the envelope's server_id (--resolve), or
    nowhere (then raw hex is binding_only and did:cycles cannot be resolved)."""

    def __init__(self, file: str | None = None, resolve: bool = False):
        self.file = file
        self.resolve = resolve
        self._file_set = None

    @property
    def requested(self) -> bool:
        return self.file is not None or self.resolve

    def get(self, server_id: str):
        try:
            if self.file is not None:
                if self._file_set is None:
                    with open(self.file, "rb") as f:
                        data = f.read(MAX_DOCUMENT_BYTES + 1)
                    if len(data) > MAX_DOCUMENT_BYTES:
                        raise Reject(RESOLUTION_FAILED, "JWK Set file too large")
                    self._file_set = parse_ijson(data)
                return self._file_set
            if self.resolve:
                # the verbatim server_id + the suffix, collapsing only a doubled '/'
                suffix = "/.well-known/cycles-jwks.json"
                url = server_id + (suffix[1:] if server_id.endswith("/") else suffix)
                with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as r:
                    data = r.read(MAX_DOCUMENT_BYTES + 1)
                if len(data) > MAX_DOCUMENT_BYTES:
                    raise Reject(RESOLUTION_FAILED, "JWK Set too large")
                return parse_ijson(data)
        except Reject:
            raise
        except NotIJson as e:
            raise Reject(RESOLUTION_FAILED, f"the JWK Set is not parseable: {e}") from None
        except Exception as e:  # network, 404, missing file
            raise Reject(RESOLUTION_FAILED, f"the JWK Set could not be obtained: {e}") from None
        raise Reject(RESOLUTION_FAILED, "no JWK Set (give --jwks FILE or --resolve)")


DID_CYCLES = re.compile(r"did:cycles:([0-9a-f]{64})#(.+)", re.S)


def ed25519_ok(key: bytes, signature_hex: str, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(bytes.fromhex(signature_hex), message)
        return True
    except (InvalidSignature, ValueError):
        return False


# ---------------------------------------------------------------------------------------
# verify one envelope
# ---------------------------------------------------------------------------------------

def verify(data: bytes, jwks: JwksSource, expected_signer: str | None = None) -> dict:
    out: dict = {"disposition": None, "evidence_id": None}
    try:
        try:
            env = parse_ijson(data)
        except NotIJson as e:
            raise Reject(SIGNATURE_INVALID, f"unparseable envelope: {e}") from None
        if isinstance(env, dict) and isinstance(env.get("evidence_id"), str):
            out["evidence_id"] = env["evidence_id"]
        try:
            check_shape(env)
        except Bad as e:
            raise Reject(SIGNATURE_INVALID, f"malformed envelope: {e}") from None
        try:
            computed = evidence_id_of(env)
            message = signing_input_of(env)
        except NotCanonicalizable as e:
            raise Reject(SIGNATURE_INVALID, f"cannot canonicalize: {e}") from None
        if computed != env["evidence_id"]:
            out["computed_evidence_id"] = computed
            raise Reject(SIGNATURE_INVALID, "evidence_id does not match the recomputed hash")

        did, server_id, issued = env["signer_did"], env["server_id"], env["issued_at_ms"]
        authenticated_kid = None
        if HEX64.fullmatch(did):
            key = bytes.fromhex(did)
            if jwks.requested:
                authenticated_kid, _ = select_key(jwks_keys(jwks.get(server_id)), issued, key=key)
        else:
            m = DID_CYCLES.fullmatch(did)
            if m is None:
                raise Reject(RESOLUTION_FAILED, "signer_did is neither 64 lowercase hex nor "
                                                "did:cycles:<sha256(server_id)>#<kid>")
            want = hashlib.sha256(server_id.encode("utf-8")).hexdigest()
            if m.group(1) != want:
                raise Reject(AUTHORITY_FAILED, "did:cycles hash is not sha256(server_id)")
            authenticated_kid, key = select_key(jwks_keys(jwks.get(server_id)), issued,
                                                kid=m.group(2))
        if not ed25519_ok(key, env["signature"], message):
            raise Reject(SIGNATURE_INVALID, "the Ed25519 signature does not verify")
        if expected_signer is not None:
            out["signer_pin_matched"] = expected_signer == did
        if authenticated_kid is not None:
            out["kid"] = authenticated_kid
            out["disposition"], out["reason"] = AUTHENTIC, "signature valid; authority established"
        else:
            out["disposition"], out["reason"] = BINDING_ONLY, "signature valid; no JWK Set consulted"
    except Reject as r:
        out["disposition"], out["reason"] = r.disposition, r.reason
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Verify CyclesEvidence envelopes (spec recipe).")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--jwks", metavar="FILE", help="JWK Set file used for signer authority")
    g.add_argument("--resolve", action="store_true",
                   help="fetch {server_id}/.well-known/cycles-jwks.json for each envelope")
    p.add_argument("--expected-signer", metavar="DID", help="pin: the signer_did you expect")
    p.add_argument("--canonicalize", action="store_true",
                   help="print the RFC 8785 bytes of each input (one per line) instead")
    p.add_argument("files", nargs="+", metavar="ENVELOPE_FILE")
    a = p.parse_args(argv)
    if Ed25519PublicKey is None and not a.canonicalize:
        print("the `cryptography` package is required (pip install cryptography)", file=sys.stderr)
        return 2

    if a.canonicalize:
        rc = 0
        for name in a.files:
            try:
                with open(name, "rb") as f:
                    sys.stdout.buffer.write(jcs_bytes(parse_ijson(f.read())) + b"\n")
            except (OSError, NotIJson, NotCanonicalizable) as e:
                print(f"{name}: {e}", file=sys.stderr)
                rc = 1
        return rc

    source = JwksSource(a.jwks, a.resolve)
    ok = True
    for name in a.files:
        try:
            with open(name, "rb") as f:
                data = f.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as e:
            data = None
            r = {"disposition": SIGNATURE_INVALID, "evidence_id": None, "reason": f"unreadable: {e}"}
        if data is not None:
            if len(data) > MAX_DOCUMENT_BYTES:
                r = {"disposition": SIGNATURE_INVALID, "evidence_id": None, "reason": "too large"}
            else:
                r = verify(data, source, a.expected_signer)
        ok = ok and r["disposition"] in VALID and r.get("signer_pin_matched", True)
        print(json.dumps({"file": name, **r}, ensure_ascii=False, separators=(",", ":")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
