#!/usr/bin/env python3
"""gen_schemas.py: writes schemas/*.json (Weir's entity schemas, JSON Schema draft 2020-12).

The JSON files in schemas/ are what Weir's validator reads; this script writes them, so that the
long patterns (IPv6, host names, ports) and the $defs shared by several files are written once.
Edit here and re-run (`python3 tests/schemas/gen_schemas.py`; `--out DIR` writes elsewhere).
Editing only the JSON is not enough: check_schemas.py runs this script into a temporary directory
and fails when a file it writes differs from the checked-in one.

Every rule mirrors gateway/config/config.c and config_fields.c (see docs/configuration.md).
Patterns are PCRE2- and ECMA-262-compatible, unanchored by the spec, so each is anchored here.
"""
import argparse
import copy
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "schemas")
BASE = "https://weir.dev/schemas/"

# ---- patterns (pieces are unanchored; whole patterns are anchored) ----
H16 = "[0-9A-Fa-f]{1,4}"
OCT = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"  # inet_pton: no leading zeros
IPV4 = f"{OCT}(?:\\.{OCT}){{3}}"
LS32 = f"(?:{H16}:{H16}|{IPV4})"
IPV6 = "(?:" + "|".join([  # RFC 3986 IPv6address, as glibc inet_pton accepts it
    f"(?:{H16}:){{6}}{LS32}",
    f"::(?:{H16}:){{5}}{LS32}",
    f"(?:{H16})?::(?:{H16}:){{4}}{LS32}",
    f"(?:(?:{H16}:){{0,1}}{H16})?::(?:{H16}:){{3}}{LS32}",
    f"(?:(?:{H16}:){{0,2}}{H16})?::(?:{H16}:){{2}}{LS32}",
    f"(?:(?:{H16}:){{0,3}}{H16})?::{H16}:{LS32}",
    f"(?:(?:{H16}:){{0,4}}{H16})?::{LS32}",
    f"(?:(?:{H16}:){{0,5}}{H16})?::{H16}",
    f"(?:(?:{H16}:){{0,6}}{H16})?::",
]) + ")"
LABEL = "[A-Za-z0-9_-]{1,63}"
# field_hostname_valid: 1..253 characters, dot-separated labels of 1..63 [A-Za-z0-9_-]
HOSTNAME = f"(?=[A-Za-z0-9_.-]{{1,253}}(?![A-Za-z0-9_.-])){LABEL}(?:\\.{LABEL})*"
# parse_port: 1..5 digits (leading zeros allowed), value 1..65535
PORT = ("(?:0{0,4}[1-9]|0{0,3}[1-9][0-9]|0{0,2}[1-9][0-9]{2}|0?[1-9][0-9]{3}|[1-5][0-9]{4}"
        "|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])")
PATH = "/(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*"  # field_url_path_check
CTRL = "\\x00-\\x1f\\x7f"
TOKEN = "[A-Za-z0-9!#$%&'*+.^_`|~-]+"  # RFC 9110 token (field_token_valid)

P = {
    "uuid": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    "name": "^[A-Za-z0-9._~-]+$",
    "tag": f"^[^,/{CTRL}]+$",
    "service_host": f"^(?:{HOSTNAME}|{IPV6}|\\[{IPV6}\\])$",
    "url": (f"^(?:[Hh][Tt][Tt][Pp][Ss]?|[Tt][Cc][Pp])://(?:\\[{IPV6}\\]|{HOSTNAME})(?::{PORT})?"
            f"(?:{PATH})?$"),
    "path": f"^{PATH}$",
    "route_path": f"^(?:{PATH}|~[^{CTRL}]+)$",
    "route_host": f"^(?:\\*\\.)?{HOSTNAME}$",
    "method": f"^{TOKEN}$",
    "header_name": f"^{TOKEN}$",
    "header_value": f"^(?!~\\*)[^{CTRL}]*$",
    "hostname": f"^{HOSTNAME}$",
    "ipv4": f"^{IPV4}$",
    "target": f"^(?:\\[{IPV6}\\](?::{PORT})?|{IPV6}|{HOSTNAME}(?::{PORT})?)$",
    "listen": f"^(?:{IPV4}|\\[{IPV6}\\]):{PORT}[ \\t]*$",
    "proxy_listen": f"^(?:{IPV4}|\\[{IPV6}\\]):{PORT}(?:[ \\t]+ssl)?[ \\t]*$",
    "cidr": (f"^(?:{IPV4}(?:/0*(?:3[0-2]|[12]?[0-9]))?"
             f"|{IPV6}(?:/0*(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$"),
    "sni": f"^(?:\\*\\.)?{HOSTNAME}$",
}

NULL_NOTE = " `null` means not set (the default applies)."

# errorMessage (Weir's validator extension, see gateway/config/schema.h): what an operator reads
# instead of a long pattern or "does not match any of the allowed alternatives". Worded as the
# loader words them (gateway/config/config.c, config_fields.c), each saying what is expected.
NOT_SUPPORTED = "not supported yet (only null or [] is accepted)"
PLUGINS_NESTED_ONLY = ("nested plugins are accepted in a declarative file only; create them at "
                       "/plugins or /{services,routes,consumers}/{id}/plugins")
MSG = {
    "uuid": "must be a UUID",
    "name": "must contain only letters, digits, \"-\", \".\", \"_\" and \"~\"",
    "tag": "must be a non-empty string without \",\", \"/\" or control characters",
    "service_host": "must be a host name or an IP address, without a port",
    "url": ("must be a URL such as \"https://host:port/path\" or \"tcp://host:port\" (http, "
            "https or tcp; no user info, query or fragment)"),
    "path": ("must be a path starting with \"/\" (RFC 3986 characters, others percent-encoded, "
             "no query or fragment)"),
    "route_path": ("must be a path starting with \"/\" (RFC 3986 characters, others "
                   "percent-encoded, no query or fragment) or a regex starting with \"~\""),
    "route_host": ("must be a host name, or \"*.\" followed by a domain (ports, IPv6 addresses "
                   "and trailing wildcards such as \"example.*\" are not supported yet)"),
    "method": "must be an HTTP method such as \"GET\"",
    "header_name": ("must be an HTTP header name other than \"host\" (use hosts to match the "
                    "Host header)"),
    "header_value": ("must not contain control characters or start with \"~*\" (regular "
                     "expressions in header values are not supported yet)"),
    "route_service": "must be a service name or id, or {\"id\": ...} or {\"name\": ...}",
    "upstream_name": "must be a host name (not an IP address)",
    "target": ("must be a host name or an IP address, optionally with a port (1 to 65535), such "
               "as \"10.0.0.1:8080\", \"example.com\" or \"[::1]:8080\""),
    "listen": ("must be \"ip:port\" with a numeric IP address, such as \"127.0.0.1:8000\" or "
               "\"[::1]:8000\" (listener options such as \"ssl\" are not supported yet)"),
    "stream_listen": ("must be \"ip:port\" with a numeric IP address, such as \"0.0.0.0:9443\" "
                      "or \"[::1]:9443\" (listener options such as \"ssl\" are not supported)"),
    "proxy_listen": ("must be \"ip:port\" or \"ip:port ssl\" with a numeric IP address, such as "
                     "\"127.0.0.1:8000\", \"[::1]:8000\" or \"0.0.0.0:8443 ssl\" (other "
                     "listener options such as \"http2\" or \"reuseport\" are not supported "
                     "yet)"),
    "cidr": "must be an IP address or a CIDR range, such as \"10.0.0.0/8\" or \"::1\"",
    "sni": "must be a host name, or \"*.\" followed by a domain",
    "pem_cert": "must be a PEM-encoded certificate (\"-----BEGIN CERTIFICATE-----\" ...)",
    "pem_key": "must be a PEM-encoded private key (\"-----BEGIN PRIVATE KEY-----\" ...)",
}


def d(text, **kw):
    kw["description"] = text
    return kw


def nullable(t):
    return [t, "null"]


# ---- shared definitions ----
DEFS = {
    "uuid": d("A UUID, 8-4-4-4-12 hexadecimal digits in either case (stored lower case).",
              type="string", pattern=P["uuid"], errorMessage=MSG["uuid"]),
    "name": d("A name: letters, digits, \"-\", \".\", \"_\" and \"~\"; unique per entity type."
              + NULL_NOTE, type=nullable("string"), pattern=P["name"], errorMessage=MSG["name"]),
    "tags": d("Tags: strings, each non-empty, without \",\", \"/\" or control characters."
              + NULL_NOTE, type=nullable("array"),
              items=d("A tag.", type="string", pattern=P["tag"], errorMessage=MSG["tag"])),
    "timestamp": d("Unix time in seconds. Kept when given (a Kong export, GET /config or the store "
                   "loads back unchanged); otherwise the time of the load or the admin change.", type=nullable("integer")),
    "inert": d("A Kong field Weir does not support yet: only `null` or `[]` (which configure "
               "nothing) are accepted, so a Kong file never loads with something silently "
               "ignored.", enum=[None, []], errorMessage=NOT_SUPPORTED),
    "id_ref": d("A reference to another entity by id.", type="object",
                properties={"id": {"$ref": "#/$defs/uuid"}}, required=["id"],
                additionalProperties=False),
    "kong_protocols": d("A Kong protocol name.", type="string",
                        enum=["grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough",
                              "udp", "ws", "wss"]),
}


def ref(name):
    return {"$ref": "#/$defs/" + name}


def with_desc(name, text):
    """A $ref with a field-specific description (2020-12 allows siblings of $ref)."""
    return {"$ref": "#/$defs/" + name, "description": text}


def common(entity):
    return {
        "id": with_desc("uuid", f"The {entity}'s id, a UUID (stored lower case). Optional: "
                        "without one Weir derives a deterministic UUIDv5 (see "
                        "docs/configuration.md). Unique per entity type." if entity in
                        ("service", "route", "upstream", "target") else
                        f"The {entity}'s id, a UUID. Optional; unique per entity type."),
        "created_at": ref("timestamp"),
        "updated_at": ref("timestamp"),
    }


def inert(text, message=None):
    out = with_desc("inert", text + " Not supported yet: only `null` or `[]` is accepted.")
    if message:
        out["errorMessage"] = message  # the referring object's message wins over the $def's
    return out


# ---- entities ----
def route_schema():
    props = common("route")
    props.update({
        "name": with_desc("name", "The route's name: letters, digits, \"-\", \".\", \"_\", "
                          "\"~\"; unique across nested and top-level routes. Optional."),
        "service": d(
            "The route's service: a service name or id as a string, or {\"id\": ...} or "
            "{\"name\": ...}. Required for a top-level route; a nested route may omit it or must "
            "name its enclosing service." + NULL_NOTE,
            errorMessage=MSG["route_service"],
            anyOf=[
                {"type": "null"},
                d("A service name or id.", type="string", pattern=P["name"]),
                d("{\"id\": ...} or {\"name\": ...}, exactly one of them.", type="object",
                  properties={"id": {"anyOf": [ref("uuid"), {"type": "null"}],
                                     "description": "The service's id."},
                              "name": {"anyOf": [ref("name"), {"type": "null"}],
                                       "description": "The service's name."}},
                  additionalProperties=False,
                  oneOf=[{"required": ["id"], "properties": {"id": {"type": "string"}}},
                         {"required": ["name"], "properties": {"name": {"type": "string"}}}]),
            ]),
        "paths": d("Path prefixes starting with \"/\" (RFC 3986 characters, others "
                   "percent-encoded, no query), or regexes starting with \"~\" (PCRE2, anchored "
                   "at the start of the path)." + NULL_NOTE, type=nullable("array"),
                   items=d("A path prefix or a \"~\" regex.", type="string",
                           pattern=P["route_path"], errorMessage=MSG["route_path"])),
        "hosts": d("Host names, or a leading wildcard \"*.example.com\"; lower-cased. Ports, "
                   "IPv6 literals and trailing wildcards (\"example.*\") are not supported yet."
                   + NULL_NOTE, type=nullable("array"),
                   items=d("A host name or \"*.\" followed by a domain.", type="string",
                           pattern=P["route_host"], errorMessage=MSG["route_host"])),
        "methods": d("HTTP method tokens; upper-cased (\"get\" becomes \"GET\")." + NULL_NOTE,
                     type=nullable("array"),
                     items=d("An HTTP method token.", type="string", pattern=P["method"],
                             errorMessage=MSG["method"])),
        "headers": d(
            "Headers the request must carry, each with one of the listed values "
            "(case-insensitive): {\"x-version\": [\"v1\", \"v2\"]}. Names are lower-cased and "
            "must be unique case-insensitively; \"host\" is refused (use hosts). Values starting "
            "with \"~*\" (Kong's regex match) are not supported yet." + NULL_NOTE,
            type=nullable("object"),
            propertyNames=d("A header name (an HTTP token), not \"host\".",
                            pattern=P["header_name"], errorMessage=MSG["header_name"],
                            **{"not": {"pattern": "^[Hh][Oo][Ss][Tt]$"}}),
            additionalProperties=d("The accepted values, at least one.", type="array",
                                   minItems=1,
                                   items=d("A value, without control characters, not starting "
                                           "with \"~*\".", type="string",
                                           pattern=P["header_value"],
                                           errorMessage=MSG["header_value"]))),
        "strip_path": d("Remove the matched prefix before joining with the service path."
                        + NULL_NOTE, type=nullable("boolean"), default=True),
        "preserve_host": d("Send the client's Host header upstream." + NULL_NOTE,
                           type=nullable("boolean"), default=False),
        "regex_priority": d("Regex routes are tried by this, highest first, then in file order."
                            + NULL_NOTE, type=nullable("integer"), minimum=-2147483648,
                            maximum=2147483647, default=0),
        "protocols": d("Protocols the route accepts: \"http\" and/or \"https\", or "
                       "\"tls_passthrough\" alone (TLS connections on weir.stream_listen routed "
                       "by their SNI to a \"tcp\" service without being decrypted: docs/tls.md); "
                       "not empty. grpc, grpcs, tcp, tls, udp, ws, wss are not supported yet."
                       + NULL_NOTE, type=nullable("array"), minItems=1,
                       items=d("\"http\", \"https\" or \"tls_passthrough\".", type="string",
                               enum=["http", "https", "tls_passthrough"],
                               errorMessage="must be \"http\", \"https\" or \"tls_passthrough\" "
                                            "(other protocols are not supported yet)"),
                       default=["http", "https"]),
        "https_redirect_status_code": d(
            "Status of the redirect to HTTPS: 426, 301, 302, 307 or 308." + NULL_NOTE,
            type=nullable("integer"), enum=[426, 301, 302, 307, 308, None], default=426),
        "path_handling": d("Only \"v0\" (Kong 3's default); \"v1\" is not supported yet."
                           + NULL_NOTE, enum=["v0", None], default="v0",
                           errorMessage="must be \"v0\" (\"v1\" is not supported yet)"),
        "request_buffering": d("Only true (Kong's default) is accepted; false is not supported "
                               "yet. Weir streams bodies with back-pressure either way."
                               + NULL_NOTE, enum=[True, None], default=True,
                               errorMessage="must be true (false is not supported yet)"),
        "response_buffering": d("Only true (Kong's default) is accepted; false is not supported "
                                "yet." + NULL_NOTE, enum=[True, None], default=True,
                                errorMessage="must be true (false is not supported yet)"),
        "tags": ref("tags"),
        "plugins": inert("Plugins of this route: declarative files only (nested plugins).",
                         PLUGINS_NESTED_ONLY),
        "snis": d("Server names (SNI) a \"tls_passthrough\" route takes: host names, or a "
                  "leading wildcard \"*.example.com\" (one label, as for certificates); "
                  "lower-cased. Required (at least one) with protocols [\"tls_passthrough\"], "
                  "refused otherwise (SNI matching of http/https routes is not supported yet). A "
                  "name may belong to one tls_passthrough route only." + NULL_NOTE,
                  type=nullable("array"),
                  items=d("A server name or \"*.\" followed by a domain.", type="string",
                          pattern=P["sni"], errorMessage=MSG["sni"])),
        "sources": inert("Kong's stream source matching."),
        "destinations": inert("Kong's stream destination matching."),
        "expression": inert("Kong's expressions router."),
        "priority": inert("Kong's expressions router priority."),
    })
    cond = [{"required": [k], "properties": {k: s}} for k, s in (
        ("paths", {"type": "array", "minItems": 1}), ("hosts", {"type": "array", "minItems": 1}),
        ("methods", {"type": "array", "minItems": 1}),
        ("headers", {"type": "object", "minProperties": 1}))]

    def empty(kind, size, message):
        return {"anyOf": [{"type": "null"}, {"type": kind, size: 0}], "errorMessage": message}

    by_snis_only = "must be empty for a tls_passthrough route (it is routed by snis only)"
    passthrough = {"required": ["snis"], "properties": {
        "protocols": {"maxItems": 1,
                      "errorMessage": "\"tls_passthrough\" cannot be combined with other "
                                      "protocols"},
        "snis": {"type": "array", "minItems": 1,
                 "errorMessage": "required (at least one) for a tls_passthrough route"},
        "paths": empty("array", "maxItems", by_snis_only),
        "hosts": empty("array", "maxItems", by_snis_only),
        "methods": empty("array", "maxItems", by_snis_only),
        "headers": empty("object", "maxProperties", by_snis_only)}}
    http = {"allOf": [
        {"anyOf": cond, "errorMessage": "must have at least one of paths, hosts, methods, headers"},
        {"properties": {"snis": empty("array", "maxItems",
                                      "only for protocols [\"tls_passthrough\"] (SNI matching of "
                                      "http and https routes is not supported yet)")}}]}
    return {
        "title": "Route",
        "description": "A route: which requests go to a service (Kong's route entity). An "
                       "http/https route must have at least one non-empty paths, hosts, methods "
                       "or headers; a tls_passthrough route has snis instead.",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
        "allOf": [{"if": {"required": ["protocols"],
                          "properties": {"protocols": {"type": "array",
                                                       "contains": {"const": "tls_passthrough"}}}},
                   "then": passthrough,
                   "else": http}],
    }


def service_schema():
    props = common("service")
    props.update({
        "name": with_desc("name", "The service's name: letters, digits, \"-\", \".\", \"_\", "
                          "\"~\"; unique. Optional."),
        "url": d("Shorthand for protocol, host, port and path: \"http://host[:port][/path]\", "
                 "\"https://...\" or \"tcp://host:port\" (no path) (IPv6 in brackets; the port "
                 "defaults to 80 for http and 443 for https). No user info, query or fragment. "
                 "Cannot be combined with protocol, host, port or path." + NULL_NOTE,
                 type=nullable("string"), pattern=P["url"], errorMessage=MSG["url"]),
        "protocol": d("Protocol to the upstream: \"http\", \"https\" for TLS to the upstream "
                      "(docs/tls.md, verified by default), or \"tcp\" for the service of "
                      "tls_passthrough routes (bytes relayed as they are; no path). grpc, grpcs, "
                      "tls, tls_passthrough, udp, ws, wss are not supported yet." + NULL_NOTE,
                      enum=["http", "https", "tcp", None], default="http",
                      errorMessage="must be \"http\", \"https\" or \"tcp\" (other protocols are "
                                   "not supported yet)"),
        "host": d("Host name or IP address of the upstream (lower-cased; IPv6 optionally in "
                  "brackets, no port), or an upstream's name to balance over its targets. "
                  "Required unless url is given. Resolved at load time.",
                  type=nullable("string"), pattern=P["service_host"],
                  errorMessage=MSG["service_host"]),
        "port": d("Upstream port. As in Kong, 80 whatever the protocol." + NULL_NOTE,
                  type=nullable("integer"), minimum=1, maximum=65535, default=80),
        "path": d("Path prefix of upstream requests: starts with \"/\", RFC 3986 characters "
                  "(others percent-encoded), no query." + NULL_NOTE + " Not allowed with "
                  "protocol \"tcp\".",
                  type=nullable("string"), pattern=P["path"], errorMessage=MSG["path"]),
        "connect_timeout": d("Milliseconds to connect to the upstream." + NULL_NOTE,
                             type=nullable("integer"), minimum=1, maximum=2147483646,
                             default=60000),
        "read_timeout": d("Milliseconds between two reads from the upstream (504 before the "
                          "response head)." + NULL_NOTE, type=nullable("integer"), minimum=1,
                          maximum=2147483646, default=60000),
        "write_timeout": d("Milliseconds between two writes to the upstream." + NULL_NOTE,
                           type=nullable("integer"), minimum=1, maximum=2147483646,
                           default=60000),
        "retries": d("Times a failed request may be retried on another target." + NULL_NOTE,
                     type=nullable("integer"), minimum=0, maximum=32767, default=5),
        "enabled": d("Whether the service is enabled." + NULL_NOTE, type=nullable("boolean"),
                     default=True),
        "tags": ref("tags"),
        "plugins": inert("Plugins of this service: declarative files only (nested plugins).",
                         PLUGINS_NESTED_ONLY),
        "tls_verify": d("Whether an https upstream's certificate is verified (its chain to "
                        "ca_certificates or the system bundle, and its name). `null` means not "
                        "set: verified (Weir's default; Kong's is not to verify).",
                        type=nullable("boolean"), errorMessage="must be true or false"),
        "tls_verify_depth": d("Longest certificate chain accepted from an https upstream "
                              "(intermediate certificates). `null`: OpenSSL's default (100).",
                              type=nullable("integer"), minimum=0, maximum=64),
        "ca_certificates": d("Ids of ca_certificates entities an https upstream's certificate "
                             "must chain to, instead of the system bundle. `null` or `[]`: the "
                             "system bundle.", type=nullable("array"), items=ref("uuid")),
        "client_certificate": d("{\"id\": certificates entity id}: the certificate and key Weir "
                                "presents to an https upstream that asks for one (mutual TLS). "
                                "`null`: none.", type=nullable("object"),
                                properties={"id": with_desc("uuid", "The id of the certificates "
                                                                    "entity.")},
                                required=["id"], additionalProperties=False),
    })
    parts = ["protocol", "host", "port", "path"]
    return {
        "title": "Service",
        "description": "A service: an upstream API that routes send requests to (Kong's service "
                       "entity). Give either url or protocol/host/port/path.",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
        "if": {"required": ["url"], "properties": {"url": {"not": {"type": "null"}}}},
        "then": {"properties": {p: {"type": "null",
                                    "errorMessage": "cannot be given together with url"}
                                for p in parts}},
        "else": {"required": ["host"],
                 "properties": {"host": {"type": "string",
                                         "errorMessage": "required (or give url)"}}},
    }


def target_schema():
    props = common("target")
    props.update({
        "target": d("\"host:port\", \"host\" (port 8000, as in Kong), \"[ipv6]:port\" or a bare "
                    "IPv6 address; the host is a host name or an IP address, resolved at load "
                    "time. Unique (as host and port) within its upstream. Required.",
                    type="string", pattern=P["target"], errorMessage=MSG["target"]),
        "weight": d("Share of the traffic; 0 disables the target." + NULL_NOTE,
                    type=nullable("integer"), minimum=0, maximum=65535, default=100),
        "tags": ref("tags"),
    })
    return {"title": "Target",
            "description": "A target: one address of an upstream's pool (Kong's target entity).",
            "type": "object", "properties": props, "required": ["target"],
            "additionalProperties": False}


def healthchecks():
    """Kong's healthchecks object (kong/db/schema/entities/upstreams.lua), its defaults included."""
    def obj(text, props):
        return d(text + NULL_NOTE, type=nullable("object"), properties=props,
                 additionalProperties=False)

    def count(text):
        return d(text + " 0 (the default) disables this counter." + NULL_NOTE,
                 type=nullable("integer"), minimum=0, maximum=255, default=0)

    def interval(text):
        return d(text + " Seconds (fractions allowed); 0 (the default) means never." + NULL_NOTE,
                 type=nullable("number"), minimum=0, maximum=65535, default=0)

    def statuses(text, default):
        return d(text + NULL_NOTE, type=nullable("array"), default=default,
                 items={"type": "integer", "minimum": 100, "maximum": 999})

    def check_type(text):
        return d(text + " \"grpc\" and \"grpcs\" are not supported yet." + NULL_NOTE,
                 enum=["http", "https", "tcp", None], default="http",
                 errorMessage="must be \"http\", \"https\" or \"tcp\" (grpc and grpcs are not "
                              "supported yet)")

    active = obj("Active checks: Weir probes each target on its own.", {
        "type": check_type("How targets are probed: \"http\" or \"https\" (a GET of http_path), "
                           "\"tcp\" (a connection)."),
        "http_path": d("Path of the probe's GET (RFC 3986 characters, percent-encoded; at most "
                       "1024)." + NULL_NOTE, type=nullable("string"), pattern=P["path"],
                       maxLength=1024, default="/",
                       errorMessage=MSG["path"][:-1] + "; at most 1024 characters)"),
        "timeout": d("Seconds a probe may take (connect, then each wait for the response)." +
                     NULL_NOTE, type=nullable("number"), minimum=0, maximum=65535, default=1),
        "concurrency": d("Probes of this upstream's targets in flight at once." + NULL_NOTE,
                         type=nullable("integer"), minimum=1, maximum=2147483648, default=10),
        "https_verify_certificate": d("Whether https probes verify the target's certificate "
                                      "(chain and name)." + NULL_NOTE,
                                      type=nullable("boolean"), default=True),
        "https_sni": d("Server name https probes send and verify; null: the target's host when it "
                       "is a name.", type=nullable("string"), pattern=P["hostname"],
                       errorMessage=MSG["upstream_name"].replace(" (not an IP address)", "")),
        "headers": d("Extra header fields of http and https probes: a name maps to its values." +
                     NULL_NOTE, type=nullable("object"),
                     propertyNames={"pattern": P["header_name"]},
                     additionalProperties={"type": "array", "items": {
                         "type": "string", "pattern": f"^[^{CTRL}]*$"}}),
        "healthy": obj("What makes a probed target healthy.", {
            "interval": interval("Probe a healthy target every this many seconds."),
            "http_statuses": statuses("Probe statuses counted as successes.", [200, 302]),
            "successes": count("Successes in a row that make an unhealthy target healthy."),
        }),
        "unhealthy": obj("What makes a probed target unhealthy.", {
            "interval": interval("Probe an unhealthy target every this many seconds."),
            "http_statuses": statuses("Probe statuses counted as HTTP failures.",
                                      [429, 404, 500, 501, 502, 503, 504, 505]),
            "tcp_failures": count("Failed connections that make a target unhealthy."),
            "timeouts": count("Timed-out probes that make a target unhealthy."),
            "http_failures": count("Probe HTTP failures that make a target unhealthy."),
        }),
    })
    passive = obj("Passive checks (circuit breaker): counted from proxied traffic.", {
        "type": check_type("\"tcp\": statuses are not looked at."),
        "healthy": obj("What proxied traffic counts as successes.", {
            "http_statuses": statuses("Upstream statuses counted as successes.",
                                      [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300,
                                       301, 302, 303, 304, 305, 306, 307, 308]),
            "successes": count("Successes in a row that make an unhealthy target healthy."),
        }),
        "unhealthy": obj("What proxied traffic counts as failures.", {
            "http_statuses": statuses("Upstream statuses counted as HTTP failures.",
                                      [429, 500, 503]),
            "tcp_failures": count("Failed connections that make a target unhealthy."),
            "timeouts": count("Timeouts (connect or response) that make a target unhealthy."),
            "http_failures": count("HTTP failures that make a target unhealthy."),
        }),
    })
    return d(
        "Kong's health checks (docs/configuration.md). Checks are off unless an active interval "
        "or a passive failure threshold is set; unhealthy targets are skipped by the balancer. "
        "null or [] is Kong's default.",
        type=["object", "null", "array"], maxItems=0,
        properties={
            "active": active,
            "passive": passive,
            "threshold": d("Kong's upstream health threshold (percent). Not supported yet: only "
                           "0 or null.", enum=[0, None],
                           errorMessage="not supported yet (only 0 or null, Kong's default)"),
        },
        additionalProperties=False)


def upstream_schema():
    props = common("upstream")
    props.update({
        "name": d("A host name (not an IP address), lower-cased, unique; services whose host "
                  "equals it balance over this upstream. Required.", type="string",
                  pattern=P["hostname"], errorMessage=MSG["upstream_name"],
                  **{"not": {"pattern": P["ipv4"]}}),
        "algorithm": d("Balancing algorithm. Only \"round-robin\" for now; least-connections, "
                       "consistent-hashing and latency are not supported yet." + NULL_NOTE,
                       enum=["round-robin", None], default="round-robin",
                       errorMessage="must be \"round-robin\" (least-connections, "
                                    "consistent-hashing and latency are not supported yet)"),
        "tags": ref("tags"),
        "healthchecks": healthchecks(),
        "hash_on": d("Kong's hashing input. Not supported yet: only null, [] or \"none\" (Kong's "
                     "default).", enum=[None, [], "none"],
                     errorMessage="not supported yet (only null, [] or \"none\", Kong's default)"),
        "hash_fallback": d("Kong's hashing fallback. Not supported yet: only null, [] or "
                           "\"none\" (Kong's default).", enum=[None, [], "none"],
                           errorMessage="not supported yet (only null, [] or \"none\", Kong's "
                                        "default)"),
        "hash_on_header": inert("Kong's hashing header."),
        "hash_fallback_header": inert("Kong's fallback hashing header."),
        "hash_on_cookie": inert("Kong's hashing cookie."),
        "hash_on_cookie_path": d("Kong's hashing cookie path. Not supported yet: only null, [] "
                                 "or \"/\" (Kong's default).", enum=[None, [], "/"],
                                 errorMessage="not supported yet (only null, [] or \"/\", Kong's "
                                              "default)"),
        "hash_on_query_arg": inert("Kong's hashing query argument."),
        "hash_fallback_query_arg": inert("Kong's fallback hashing query argument."),
        "hash_on_uri_capture": inert("Kong's hashing URI capture."),
        "hash_fallback_uri_capture": inert("Kong's fallback hashing URI capture."),
        "slots": d("Size of Kong's consistent-hashing ring. Not supported yet: accepted as null, "
                   "[] or 10..65536 (Kong's range, which configures nothing in Weir).",
                   errorMessage="not supported yet (only null, [] or 10 to 65536, Kong's range)",
                   anyOf=[{"enum": [None, []]},
                          {"type": "integer", "minimum": 10, "maximum": 65536}]),
        "host_header": inert("Kong's Host header override."),
        "client_certificate": inert("Client certificate presented to the targets."),
        "use_srv_name": d("Kong's SRV name as Host. Not supported yet: only null, [] or false "
                          "(Kong's default).", enum=[None, [], False],
                          errorMessage="not supported yet (only null, [] or false, Kong's "
                                       "default)"),
    })
    return {"title": "Upstream",
            "description": "An upstream: a load-balanced pool of targets (Kong's upstream "
                           "entity), balanced by smooth weighted round-robin.",
            "type": "object", "properties": props, "required": ["name"],
            "additionalProperties": False}


def consumer_schema():
    props = common("consumer")
    props.update({
        "username": d("Unique user name. At least one of username and custom_id is required.",
                      type=nullable("string"), minLength=1),
        "custom_id": d("Unique id in another system. At least one of username and custom_id is "
                       "required.", type=nullable("string"), minLength=1),
        "tags": ref("tags"),
    })
    return {"title": "Consumer",
            "description": "A consumer: a user or application of the APIs (Kong's consumer "
                           "entity). Its credentials are jwt_secrets and keyauth_credentials.",
            "type": "object", "properties": props, "additionalProperties": False,
            "allOf": [{"anyOf": [{"required": ["username"],
                                  "properties": {"username": {"type": "string"}}},
                                 {"required": ["custom_id"],
                                  "properties": {"custom_id": {"type": "string"}}}],
                       "errorMessage": "must have a username or a custom_id"}]}


CREDENTIAL_KEY = ("^[\\x21-\\x7e]{1,1024}$")


def jwt_secret_schema():
    props = common("jwt_secret")
    props.update({
        "key": d("What identifies the credential in a token: the value of its key claim (`iss` "
                 "by default) or `kid`. Printable ASCII without spaces, 1..1024 characters; "
                 "unique. Generated (32 hex characters) when absent.", type="string",
                 pattern=CREDENTIAL_KEY,
                 errorMessage="must be 1 to 1024 printable ASCII characters without spaces"),
        "secret": d("The HMAC secret of HS256/384/512 tokens. Generated (32 hex characters) when "
                    "absent." + NULL_NOTE, type=nullable("string"), minLength=1),
        "rsa_public_key": d("PEM public key (\"-----BEGIN PUBLIC KEY-----\") that verifies "
                            "RS256/384/512 and ES256/384/512 tokens; required for those "
                            "algorithms." + NULL_NOTE, type=nullable("string"),
                            pattern="^[ \\t\\r\\n]*-----BEGIN PUBLIC KEY-----",
                            errorMessage="must be a PEM public key "
                                         "(\"-----BEGIN PUBLIC KEY-----\" ...)"),
        "algorithm": d("The algorithm tokens of this credential must use." + NULL_NOTE,
                       enum=["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256",
                             "ES384", "ES512", None], default="HS256",
                       errorMessage="must be one of HS256, HS384, HS512, RS256, RS384, RS512, "
                                    "ES256, ES384, ES512"),
        "tags": ref("tags"),
    })
    return {"title": "JWT credential",
            "description": "A consumer's JWT credential (Kong's jwt_secrets entity), used by the "
                           "jwt plugin. Created at /consumers/{c}/jwt or nested in a consumer "
                           "of the declarative file.",
            "type": "object", "properties": props, "additionalProperties": False,
            "allOf": [{"if": {"properties": {"algorithm": {"type": "string",
                                                           "pattern": "^(RS|ES)"}},
                              "required": ["algorithm"]},
                       "then": {"required": ["rsa_public_key"],
                                "properties": {"rsa_public_key": {"type": "string"}}},
                       "errorMessage": "rsa_public_key is required for RS* and ES* algorithms"}]}


def keyauth_credential_schema():
    props = common("keyauth_credential")
    props.update({
        "key": d("The API key clients send. Printable ASCII without spaces, 1..1024 characters; "
                 "unique. Generated (32 hex characters) when absent.", type="string",
                 pattern=CREDENTIAL_KEY,
                 errorMessage="must be 1 to 1024 printable ASCII characters without spaces"),
        "ttl": inert("Kong's key expiry."),
        "tags": ref("tags"),
    })
    return {"title": "Key-auth credential",
            "description": "A consumer's API key (Kong's keyauth_credentials entity), used by the "
                           "key-auth plugin. Created at /consumers/{c}/key-auth or nested in a "
                           "consumer of the declarative file.",
            "type": "object", "properties": props, "additionalProperties": False}


def plugin_schema():
    props = common("plugin")
    props.update({
        "name": d("The plugin's name; its config is checked by schemas/plugins/<name>.json.",
                  type="string", minLength=1),
        "config": d("The plugin's configuration (its own schema in schemas/plugins/)."
                    + NULL_NOTE, type=nullable("object")),
        "enabled": d("Whether the plugin runs." + NULL_NOTE, type=nullable("boolean"),
                     default=True),
        "service": d("Service the plugin is scoped to, or null for all.",
                     anyOf=[ref("id_ref"), {"type": "null"}], default=None),
        "route": d("Route the plugin is scoped to, or null for all.",
                   anyOf=[ref("id_ref"), {"type": "null"}], default=None),
        "consumer": d("Consumer the plugin is scoped to, or null for all.",
                      anyOf=[ref("id_ref"), {"type": "null"}], default=None),
        "protocols": d("Protocols the plugin runs on (Kong's default)." + NULL_NOTE,
                       type=nullable("array"), minItems=1, items=ref("kong_protocols"),
                       default=["grpc", "grpcs", "http", "https"]),
        "tags": ref("tags"),
    })
    return {"title": "Plugin",
            "description": "A plugin instance (Kong's plugin entity), global or scoped to a "
                           "service, route or consumer. Its `config` is checked against "
                           "schemas/plugins/<name>.json (defaults filled) when the plugin is "
                           "enabled in weir.plugins; the pair (name, scope) is unique.",
            "type": "object", "properties": props, "required": ["name"],
            "additionalProperties": False}


PEM_CERT = "^[ \\t\\r\\n]*-----BEGIN CERTIFICATE-----"
PEM_KEY = "^[ \\t\\r\\n]*-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"


def certificate_schema():
    props = common("certificate")
    props.update({
        "cert": d("PEM-encoded certificate (chain). Required.", type="string",
                  pattern=PEM_CERT, errorMessage=MSG["pem_cert"]),
        "key": d("PEM-encoded private key of cert (unencrypted). Required; must match cert.",
                 type="string", pattern=PEM_KEY, errorMessage=MSG["pem_key"]),
        "cert_alt": d("Alternate PEM certificate of the other key type (ECDSA next to RSA, or "
                      "RSA next to ECDSA); needs key_alt.",
                      type=nullable("string"), pattern=PEM_CERT, errorMessage=MSG["pem_cert"]),
        "key_alt": d("PEM private key of cert_alt; needs cert_alt.", type=nullable("string"),
                     pattern=PEM_KEY, errorMessage=MSG["pem_key"]),
        "ocsp_response_file": d(
            "A DER-encoded OCSP response for cert (what `openssl ocsp -respout` writes; "
            "nginx's ssl_stapling_file), stapled to the handshakes of clients that ask "
            "(status_request). A path, relative to the configuration file's directory; read "
            "when the configuration is built (start, SIGHUP, every admin change). A file that "
            "cannot be read, is not an OCSP response, is not successful or is not for this "
            "certificate is an error; an expired response is not stapled (docs/tls.md)."
            + NULL_NOTE, type=nullable("string"), minLength=1),
        "ocsp_response_file_alt": d(
            "The OCSP response for cert_alt, as ocsp_response_file; needs cert_alt."
            + NULL_NOTE, type=nullable("string"), minLength=1),
        "snis": d("Server names served with this certificate: creates (or, on PUT and PATCH, "
                  "replaces) its sni entities; returned as the list of their names."
                  + NULL_NOTE, type=nullable("array"),
                  items=d("A host name or \"*.\" wildcard.", type="string", pattern=P["sni"],
                          errorMessage=MSG["sni"])),
        "tags": ref("tags"),
    })
    return {"title": "Certificate",
            "description": "A TLS certificate and key (Kong's certificate entity), checked with "
                           "OpenSSL when stored (parses, key matches). TLS listeners serve it to "
                           "clients whose SNI matches one of its snis (docs/tls.md).",
            "type": "object", "properties": props, "required": ["cert", "key"],
            "additionalProperties": False,
            "dependentRequired": {"cert_alt": ["key_alt"], "key_alt": ["cert_alt"],
                                  "ocsp_response_file_alt": ["cert_alt"]}}


def sni_schema():
    props = common("sni")
    props.update({
        "name": d("The server name: a host name or a leading wildcard \"*.example.com\". "
                  "Required, unique.", type="string", pattern=P["sni"],
                  errorMessage=MSG["sni"]),
        "certificate": with_desc("id_ref", "The certificate served for this name. Required, "
                                 "except nested in a certificate or posted to "
                                 "/certificates/{c}/snis, where that certificate is meant."),
        "tags": ref("tags"),
    })
    return {"title": "SNI",
            "description": "A server name bound to a certificate (Kong's sni entity).",
            "type": "object", "properties": props, "required": ["name"],
            "additionalProperties": False}


def ca_certificate_schema():
    props = common("ca_certificate")
    props.update({
        "cert": d("PEM-encoded CA certificate (basic constraints CA:TRUE). Required.",
                  type="string", pattern=PEM_CERT, errorMessage=MSG["pem_cert"]),
        "cert_digest": d("SHA-256 of the certificate's DER form, lower-case hex; computed (a given "
                         "value must match). Unique.",
                         type=nullable("string"), pattern="^[0-9a-f]{64}$"),
        "tags": ref("tags"),
    })
    return {"title": "CA certificate",
            "description": "A trusted CA certificate (Kong's ca_certificate entity), for "
                           "verifying upstreams once re-encryption lands (TLS issue); client "
                           "certificates are verified against weir.ssl_client_ca.",
            "type": "object", "properties": props, "required": ["cert"],
            "additionalProperties": False}


LIMITS = [  # name, min, max, default, description (config_fields.c limit_fields)
    ("max_header_bytes", 1024, 1048576, 32768,
     "Largest request head in bytes (larger: 431); an upstream response head larger: 502."),
    ("max_headers", 1, 1000, 100, "Most request header fields (more: 431)."),
    ("max_body_bytes", 0, 2 ** 53, 10485760,
     "Largest request body in bytes (larger: 413); 0 = unlimited."),
    ("header_timeout", 1, 3600000, 10000,
     "Milliseconds for the request head to arrive (else 408)."),
    ("keepalive_timeout", 0, 3600000, 60000,
     "Milliseconds an idle client keep-alive connection is kept; 0 = close after each response."),
    ("max_connections", 1, 1000000, 10000,
     "Client connections per process, TLS passthrough connections included."),
    ("shutdown_timeout", 0, 3600000, 10000,
     "Milliseconds in-flight requests get to finish on SIGTERM."),
    ("upstream_keepalive_pool", 0, 10000, 64,
     "Idle upstream connections kept per target per worker; 0 = no reuse."),
    ("upstream_keepalive_timeout", 1, 3600000, 4000,
     "Milliseconds an idle upstream connection is kept (below Node.js's 5 s)."),
]


DEFAULT_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                   "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                   "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")


def weir_schema():
    listen_item = d("\"ip:port\" or \"[ipv6]:port\": a numeric address and a port. Host names "
                    "and Kong's listener flags (ssl, http2, reuseport, ...) are not supported.",
                    type="string", pattern=P["listen"], errorMessage=MSG["listen"])
    proxy_listen_item = d("\"ip:port\" or \"[ipv6]:port\": a numeric address and a port, "
                          "optionally followed by Kong's \"ssl\" flag (a TLS listener: see "
                          "docs/tls.md). Host names and Kong's other listener flags (http2, "
                          "reuseport, ...) are not supported.",
                          type="string", pattern=P["proxy_listen"], errorMessage=MSG["proxy_listen"])
    limits = {n: d(text + NULL_NOTE, type=nullable("integer"), minimum=lo, maximum=hi,
                   default=dflt) for n, lo, hi, dflt, text in LIMITS}
    return {
        "title": "Weir server settings",
        "description": "The top-level `weir` object of the declarative file: listeners, workers, "
                       "logs and limits. Absent or null: all defaults.",
        "type": nullable("object"),
        "properties": {
            "proxy_listen": d("Proxy listeners, at least one. Two listeners (proxy or admin) "
                              "must not overlap." + NULL_NOTE, type=nullable("array"),
                              minItems=1, items=proxy_listen_item,
                              default=["127.0.0.1:8000"]),
            "admin_listen": d("Admin API listeners; [] turns the admin API off." + NULL_NOTE,
                              type=nullable("array"), items=listen_item,
                              default=["127.0.0.1:8001"]),
            "stream_listen": d("Listeners for TLS passthrough (Kong's stream_listen): \"ip:port\" "
                               "or \"[ipv6]:port\". Each connection's ClientHello is read (at "
                               "most 16 KiB, within ssl_handshake_timeout), its SNI picks a "
                               "tls_passthrough route, and the bytes are relayed to the route's "
                               "service untouched (docs/tls.md). Must not overlap proxy or admin "
                               "listeners. Kong's \"ssl\" flag and other options are not "
                               "supported. `null` or `[]`: none.", type=nullable("array"),
                               items=d("\"ip:port\" or \"[ipv6]:port\": a numeric address and a "
                                       "port.", type="string", pattern=P["listen"],
                                       errorMessage=MSG["stream_listen"]),
                               default=[]),
            "workers": d("Worker threads. Default: the number of online CPUs, capped at 256."
                         + NULL_NOTE, type=nullable("integer"), minimum=1, maximum=256),
            "trusted_ips": d("Proxies whose X-Forwarded-For is appended to rather than "
                             "replaced: bare addresses or CIDR ranges; [] trusts nobody."
                             + NULL_NOTE, type=nullable("array"),
                             items=d("An IPv4/IPv6 address or CIDR range (\"10.0.0.0/8\", "
                                     "\"::1\").", type="string", pattern=P["cidr"],
                                     errorMessage=MSG["cidr"]),
                             default=[]),
            "access_log": d("Access log: a file path (relative to the configuration file's "
                            "directory), \"-\" = stdout, \"off\" = none." + NULL_NOTE,
                            type=nullable("string"), minLength=1, default="-"),
            "error_log": d("Error log: a file path (relative to the configuration file's "
                           "directory) or \"-\" = stderr; cannot be turned off." + NULL_NOTE,
                           type=nullable("string"), default="-",
                           allOf=[{"minLength": 1, "not": {"const": "off"},
                                   "errorMessage": "cannot be turned off; use \"-\" for stderr "
                                                   "or a file path"}]),
            "log_level": d("Error log level." + NULL_NOTE,
                           enum=["debug", "info", "notice", "warn", "error", None],
                           default="info",
                           errorMessage="must be one of debug, info, notice, warn, error"),
            "limits": d("Request and connection limits." + NULL_NOTE, type=nullable("object"),
                        properties=limits, additionalProperties=False),
            "plugins": d("The plugins this node runs, as in Kong: \"bundled\" (every plugin in "
                         "the data directory's plugins/) and names of plugins found there or in "
                         "plugin_paths. Each must have plugins/<name>/handler.lua and "
                         "schemas/plugins/<name>.json." + NULL_NOTE, type=nullable("array"),
                         items={"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$",
                                "errorMessage": "must be \"bundled\" or a plugin name (lower-case "
                                                "letters, digits, \"-\", \"_\")"},
                         default=["bundled"]),
            "plugin_paths": d("More plugin roots, each laid out like the project root: "
                              "<dir>/plugins/<name>/handler.lua and "
                              "<dir>/schemas/plugins/<name>.json. Relative paths resolve against "
                              "the configuration file's directory." + NULL_NOTE,
                              type=nullable("array"), items={"type": "string", "minLength": 1},
                              default=[]),
            "shared_dicts": d("Dictionaries every worker shares, for plugins "
                              "(weir.shared.<name>): name -> capacity in bytes (at least 8192). "
                              "Read at start; a reload that changes them keeps the running ones "
                              "and logs that a restart is needed." + NULL_NOTE,
                              type=nullable("object"),
                              propertyNames={"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$",
                                             "errorMessage": "must be a Lua identifier of at "
                                                             "most 64 characters"},
                              additionalProperties={"type": "integer", "minimum": 8192,
                                                    "maximum": 17179869184,
                                                    "errorMessage": "must be a size in bytes "
                                                                    "from 8192 to 16 GiB"},
                              default={}),
            "lua": d("The Lua plugin runtime (one LuaJIT VM per worker)." + NULL_NOTE,
                     type=nullable("object"), additionalProperties=False, default={},
                     properties={
                         "instruction_budget": d(
                             "Lua VM instructions one plugin phase call may run before it is "
                             "stopped with a 500 (runaway loops), counted once the call has run "
                             "10 to 20 ms without waiting. With a budget, plugins from "
                             "weir.plugin_paths and code loaded at run time run interpreted (the "
                             "budget needs the interpreter) and Weir's own Lua (runtime, bundled "
                             "plugins) runs compiled; 0 turns the budget off and lets LuaJIT "
                             "compile all plugin code." + NULL_NOTE, type=nullable("integer"),
                             minimum=0, maximum=1000000000000, default=10000000),
                         "memory_limit": d(
                             "Bytes each worker's Lua VM may allocate; an allocation beyond it "
                             "fails the plugin call that made it (a 500) and the gateway goes on."
                             + NULL_NOTE, type=nullable("integer"), minimum=8388608,
                             maximum=1099511627776, default=268435456),
                         "response_buffer_limit": d(
                             "Largest upstream body buffered for a plugin that declares "
                             "BUFFER_RESPONSE = true; a larger body is a 502." + NULL_NOTE,
                             type=nullable("integer"), minimum=1024, maximum=1073741824,
                             default=10485760),
                     }),
            "ssl_cert": d("The default TLS certificate for ssl listeners: a PEM file (the "
                          "certificate, then any intermediate certificates), relative to the "
                          "configuration file's directory. Served when no certificate's snis "
                          "match the client's SNI. Required (with ssl_cert_key) when a "
                          "proxy_listen entry has \"ssl\". Read again by every configuration "
                          "change." + NULL_NOTE, type=nullable("string"), minLength=1),
            "ssl_cert_key": d("The private key of ssl_cert: a PEM file, relative to the "
                              "configuration file's directory." + NULL_NOTE,
                              type=nullable("string"), minLength=1),
            "ssl_ocsp_response_file": d(
                "A DER-encoded OCSP response for ssl_cert (nginx's ssl_stapling_file), stapled "
                "to the handshakes of clients that ask (status_request); relative to the "
                "configuration file's directory, read again by every configuration change. "
                "A file that cannot be read, is not an OCSP response, is not successful or is "
                "not for ssl_cert is an error; an expired response is not stapled (docs/tls.md)."
                + NULL_NOTE, type=nullable("string"), minLength=1),
            "ssl_ciphers": d("TLS 1.2 cipher suites, in OpenSSL's cipher list format, in the "
                             "server's order of preference (TLS 1.3 suites are OpenSSL's "
                             "defaults). The default is Mozilla's intermediate list (ECDHE with "
                             "AES-GCM or ChaCha20-Poly1305)." + NULL_NOTE,
                             type=nullable("string"), minLength=1,
                             default=DEFAULT_CIPHERS),
            "ssl_reject_unknown_sni": d("Refuse a TLS handshake whose SNI names no certificate "
                                        "(an unrecognized_name alert) instead of serving the "
                                        "default certificate. A client that sends no SNI still "
                                        "gets the default certificate." + NULL_NOTE,
                                        type=nullable("boolean"), default=False),
            "ssl_handshake_timeout": d("Milliseconds a client on an ssl listener has to complete "
                                       "the TLS handshake, counted from the accept; then the "
                                       "connection is closed. On a stream_listen (TLS "
                                       "passthrough) listener, the time a client has to send its "
                                       "whole ClientHello." + NULL_NOTE,
                                       type=nullable("integer"), minimum=1, maximum=3600000,
                                       default=10000),
            "ssl_client_ca": d("CA certificates (a PEM file, relative to the configuration "
                               "file's directory) that client certificates must chain to, and "
                               "whose names are sent in the certificate request. Required when "
                               "ssl_verify_client is not \"off\"." + NULL_NOTE,
                               type=nullable("string"), minLength=1),
            "ssl_verify_client": d("Client certificates on ssl listeners: \"off\" (none asked "
                                   "for), \"optional\" (asked for; one that is sent must verify "
                                   "against ssl_client_ca or the handshake fails) or "
                                   "\"required\" (a handshake without a valid one fails)."
                                   + NULL_NOTE, enum=["off", "optional", "required", None],
                                   default="off",
                                   errorMessage="must be \"off\", \"optional\" or \"required\""),
            "ssl_client_cert_headers": d("Send the verified client certificate's subject "
                                         "(X-Client-Cert-Subject, RFC 2253) and SHA-256 "
                                         "fingerprint (X-Client-Cert-Fingerprint, hex) upstream; "
                                         "those headers from the client are always removed then."
                                         + NULL_NOTE, type=nullable("boolean"), default=False),
            "ssl_session_ticket_key_rotation": d(
                "Milliseconds between two rotations of the TLS session ticket keys (shared by "
                "every worker). The previous key still resumes sessions, so a ticket is valid "
                "for one to two periods." + NULL_NOTE, type=nullable("integer"), minimum=1000,
                maximum=604800000, default=3600000),
            "admin_token": d("Bearer token every admin API request must present "
                             "(`Authorization: Bearer <token>`); required before admin_listen "
                             "may leave loopback. At least 16 characters." + NULL_NOTE,
                             type=nullable("string"), minLength=16,
                             errorMessage="must be a string of at least 16 characters"),
            "admin_compile_priority": d(
                "CPU priority of the thread that compiles admin API changes and reloads. "
                "\"idle\" (the default): Linux's SCHED_IDLE, so a change uses only CPU the "
                "workers leave and never delays a request, but on cores the workers keep fully "
                "busy it waits for a gap (hundreds of milliseconds or more). \"low\": nice 10, "
                "like the rest of the control thread: changes compile promptly, at the cost of "
                "time slices taken from workers on a busy core. Needs a restart."
                + NULL_NOTE, type=nullable("string"), enum=["idle", "low", None],
                default="idle", errorMessage="must be \"idle\" or \"low\""),
            "store": d("Where admin API changes persist. {\"type\": \"file\", \"path\": ...} "
                       "(relative to the configuration file's directory): every accepted change is "
                       "written there before it is answered, and on start a non-empty store "
                       "replaces the file's entities. null (the default for a file): no store, "
                       "entities come from the file and the admin API accepts only POST /config "
                       "(Kong's DB-less mode).", type=nullable("object"),
                       properties={"type": d("The backend; only \"file\" for now.",
                                             const="file",
                                             errorMessage="must be \"file\" (the only store "
                                                          "type for now)"),
                                   "path": d("The state file.", type="string", minLength=1)},
                       required=["type", "path"], additionalProperties=False),
        },
        "additionalProperties": False,
    }


# ---- assembly ----
def used_defs(node, defs, acc):
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str) and r.startswith("#/$defs/"):
            n = r[len("#/$defs/"):]
            if n not in acc:
                acc[n] = defs[n]
                used_defs(defs[n], defs, acc)
        for v in node.values():
            used_defs(v, defs, acc)
    elif isinstance(node, list):
        for v in node:
            used_defs(v, defs, acc)
    return acc


def document(file, body):
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": BASE + file}
    doc["title"] = body.pop("title")
    doc["description"] = body.pop("description")
    doc.update(body)
    defs = used_defs(doc, DEFS, {})
    if defs:
        doc["$defs"] = {k: defs[k] for k in sorted(defs)}
    return doc


ENTITIES = {
    "service.json": service_schema, "route.json": route_schema, "upstream.json": upstream_schema,
    "target.json": target_schema, "consumer.json": consumer_schema,
    "plugin.json": plugin_schema, "certificate.json": certificate_schema,
    "sni.json": sni_schema, "ca_certificate.json": ca_certificate_schema,
    "jwt_secret.json": jwt_secret_schema,
    "keyauth_credential.json": keyauth_credential_schema,
    "weir.json": weir_schema,
}


def entity_body(fn):
    """An entity schema without $schema/$id/title/$defs: what declarative.json embeds."""
    return fn()


def declarative_schema():
    defs = dict(DEFS)
    for file, fn in ENTITIES.items():
        body = fn()
        defs[file[:-5]] = body
    # declarative-only shapes: nested routes and targets, required top-level service
    svc = copy.deepcopy(defs["service"])
    svc["title"] = "Service (declarative)"
    svc["description"] = "A service as in the declarative file, with its routes nested."
    svc["properties"]["routes"] = d(
        "Routes of this service; such a route's service must be absent or name this service."
        + NULL_NOTE, type=nullable("array"), items=ref("route"))
    svc["properties"]["routes"]["items"] = ref("route_nested")
    svc["properties"]["plugins"] = d(
        "Plugins scoped to this service; their `service` must be absent or name this service."
        + NULL_NOTE, type=nullable("array"), items=ref("plugin"))
    defs["service_nested"] = svc
    rte = copy.deepcopy(defs["route"])
    rte["title"] = "Route (declarative)"
    rte["description"] = "A route as in the declarative file, with its plugins nested."
    rte["properties"]["plugins"] = d(
        "Plugins scoped to this route; their `route` must be absent or name this route."
        + NULL_NOTE, type=nullable("array"), items=ref("plugin"))
    defs["route_nested"] = rte
    ups = copy.deepcopy(defs["upstream"])
    ups["title"] = "Upstream (declarative)"
    ups["description"] = "An upstream as in the declarative file, with its targets nested."
    ups["properties"]["targets"] = d(
        "The pool; with no usable target the proxy answers 503. Default []." + NULL_NOTE,
        type=nullable("array"), items=ref("target"), default=[])
    defs["upstream_nested"] = ups
    con = copy.deepcopy(defs["consumer"])
    con["title"] = "Consumer (declarative)"
    con["description"] = "A consumer as in the declarative file, with its credentials nested."
    con["properties"]["jwt_secrets"] = d("JWT credentials of this consumer." + NULL_NOTE,
                                         type=nullable("array"), items=ref("jwt_secret"))
    con["properties"]["keyauth_credentials"] = d("API keys of this consumer." + NULL_NOTE,
                                                 type=nullable("array"),
                                                 items=ref("keyauth_credential"))
    con["properties"]["plugins"] = d(
        "Plugins scoped to this consumer; their `consumer` must be absent or name this consumer."
        + NULL_NOTE, type=nullable("array"), items=ref("plugin"))
    defs["consumer_nested"] = con
    crt = copy.deepcopy(defs["certificate"])
    crt["title"] = "Certificate (declarative)"
    crt["description"] = "A certificate as in the declarative file, with its snis nested."
    crt["properties"]["snis"] = d(
        "Server names of this certificate: names, or sni objects as GET /config exports them."
        + NULL_NOTE, type=nullable("array"),
        items={"anyOf": [{"type": "string", "pattern": P["sni"]}, ref("sni")],
               "errorMessage": "must be a server name (a host name or \"*.\" followed by a "
                               "domain) or an sni object"})
    defs["certificate_nested"] = crt
    sni_top = {"title": "SNI (top level)",
               "description": "A top-level sni: its certificate is required.",
               "allOf": [ref("sni")], "required": ["certificate"]}
    defs["sni_top"] = sni_top
    top_route = {"title": "Route (top level)",
                 "description": "A top-level route: a route whose service is required.",
                 "allOf": [ref("route_nested")], "required": ["service"],
                 "properties": {"service": d("Required for a top-level route: a service name or id, "
                                             "or {\"id\": ...} or {\"name\": ...}.",
                                             errorMessage="required for a top-level route",
                                             **{"not": {"type": "null"}})}}
    defs["route_top"] = top_route
    plugin_top = copy.deepcopy(defs["plugin"])
    plugin_top["title"] = "Plugin (top level)"
    plugin_top["description"] = ("A top-level plugin: its scopes may name their entity by name "
                                 "or id.")
    for f, what in (("service", "Service"), ("route", "Route"), ("consumer", "Consumer")):
        plugin_top["properties"][f] = d(
            what + " the plugin is scoped to (a name or id, or {\"id\": ...} or "
            "{\"name\": ...}), or null for all.",
            anyOf=[{"type": "string", "minLength": 1}, ref("id_ref"),
                   {"type": "object", "properties": {"name": {"type": "string", "minLength": 1}},
                    "required": ["name"], "additionalProperties": False},
                   {"type": "null"}],
            errorMessage="must be a name or an id, or {\"id\": ...} or {\"name\": ...}")
    defs["plugin_top"] = plugin_top
    def later(entity, text):
        return d(text + " Not supported yet: only null or [] is accepted today; the items "
                 "would follow this entity's schema.", type=nullable("array"), maxItems=0,
                 items=ref(entity), errorMessage=NOT_SUPPORTED)

    body = {
        "title": "Weir declarative configuration",
        "description": "The whole declarative file: Kong's declarative format 3.0 in JSON plus a "
                       "top-level `weir` object for the server's own settings. Unknown keys are "
                       "errors. Cross-entity rules (unique names and ids, route-to-service "
                       "references, overlapping listeners, duplicate targets) are checked by the "
                       "loader, not by this schema.",
        "type": "object",
        "properties": {
            "_format_version": d("Format version; must be \"3.0\". Required.", type="string",
                                 const="3.0", errorMessage="must be \"3.0\""),
            "_transform": d("Accepted and ignored (Kong uses it for credential hashing)."
                            + NULL_NOTE, type=nullable("boolean")),
            "_comment": d("Free text, ignored." + NULL_NOTE, type=nullable("string")),
            "weir": ref("weir"),
            "services": d("Services, with their routes nested." + NULL_NOTE,
                          type=nullable("array"), items=ref("service_nested")),
            "routes": d("Top-level routes, each naming its service." + NULL_NOTE,
                        type=nullable("array"), items=ref("route_top")),
            "upstreams": d("Load-balanced pools of targets." + NULL_NOTE,
                           type=nullable("array"), items=ref("upstream_nested")),
            "plugins": d("Plugin instances: global, or naming the service, route and consumer "
                         "they are scoped to (by name or id, or {\"id\": ...} / "
                         "{\"name\": ...})." + NULL_NOTE,
                         type=nullable("array"), items=ref("plugin_top")),
            "consumers": d("Consumers, with their credentials nested." + NULL_NOTE,
                           type=nullable("array"), items=ref("consumer_nested")),
            "certificates": d("TLS certificates, with their snis nested." + NULL_NOTE,
                              type=nullable("array"), items=ref("certificate_nested")),
            "snis": d("Server names naming their certificate (Kong also accepts them at the "
                      "top level)." + NULL_NOTE, type=nullable("array"), items=ref("sni_top")),
            "ca_certificates": d("Trusted CA certificates." + NULL_NOTE, type=nullable("array"),
                                 items=ref("ca_certificate")),
            "vaults": inert("Kong's secret vaults."),
            "_workspace": inert("Kong Enterprise workspace."),
        },
        "required": ["_format_version"],
        "additionalProperties": False,
    }
    # the route's "plugins" in a declarative file: same rule as the entity (inert)
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema",
           "$id": BASE + "declarative.json"}
    doc["title"] = body.pop("title")
    doc["description"] = body.pop("description")
    doc.update(body)
    doc["$defs"] = {k: defs[k] for k in sorted(defs)}
    return doc


def fill_descriptions(node, defs):
    """Gives each property that is a bare $ref the description of what it refers to."""
    if isinstance(node, dict):
        for v in (node.get("properties") or {}).values():
            if isinstance(v, dict) and "$ref" in v and "description" not in v:
                v["description"] = defs[v["$ref"][len("#/$defs/"):]]["description"]
        for v in node.values():
            fill_descriptions(v, defs)
    elif isinstance(node, list):
        for v in node:
            fill_descriptions(v, defs)
    return node


def generate():
    """Every schema file this script writes: {file name: its exact text}."""
    docs = {f: document(f, fn()) for f, fn in ENTITIES.items()}
    docs["declarative.json"] = declarative_schema()
    for doc in docs.values():
        fill_descriptions(doc, doc.get("$defs", {}))
    return {f: json.dumps(doc, indent=2, ensure_ascii=False) + "\n" for f, doc in docs.items()}


def main():
    ap = argparse.ArgumentParser(description="Writes Weir's entity schemas.")
    ap.add_argument("--out", default=OUT, metavar="DIR",
                    help="directory to write the files to (default: schemas/ of this tree; "
                         "check_schemas.py writes to a temporary one and compares)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    texts = generate()
    for f, text in texts.items():
        with open(os.path.join(args.out, f), "w", encoding="utf-8") as fh:
            fh.write(text)
    print("wrote", ", ".join(sorted(texts)), "to", args.out)


if __name__ == "__main__":
    sys.exit(main())
