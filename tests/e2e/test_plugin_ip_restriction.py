"""The bundled ip-restriction plugin (issue 5): Kong's config (allow, deny, status, message) with
IPv4/IPv6 addresses and CIDR ranges, deny winning over allow, the client address taken from
X-Forwarded-For only when the peer is one of weir.trusted_ips, and malformed entries refused when
the config is stored. Every test drives the real binary and the echo backend over sockets; the
matching is checked against Python's ipaddress module as an independent oracle."""

import ipaddress
import random
import socket

from harness import (Conn, Skip, assert_eq, base_config, check, echo, free_port, gateway, http,
                     route, service)
from test_admin_write import STORE, Admin, _schema_error
from test_plugin_runtime import handler, plugin_tree

DEFAULT_MESSAGE = {"message": "Your IP address is not allowed"}


def ipr_gateway(configs, trusted=("127.0.0.1", "::1"), listen=None):
    """One route per entry of `configs` ({"/path": ip-restriction config})."""
    def make(port):
        routes, plugins = [], []
        for i, (path, conf) in enumerate(configs.items()):
            routes.append(route("r%d" % i, [path]))
            plugins.append({"name": "ip-restriction", "route": "r%d" % i, "config": conf})
        cfg = base_config(None, services=[service("echo", port, routes=routes)],
                          trusted_ips=list(trusted))
        if listen:
            cfg["weir"]["proxy_listen"] = listen
        cfg["plugins"] = plugins
        return cfg
    return gateway(make)


def as_client(port, path, ip, host="127.0.0.1"):
    """A request that the trusted peer (the test) forwards for `ip`."""
    return http("GET", port, path, headers={"X-Forwarded-For": ip}, host=host)


def assert_allowed(r, what):
    assert_eq(r.status, 200, what + ": let through", r)
    echo(r)


def assert_refused(r, what, status=403, body=None):
    assert_eq(r.status, status, what + ": refused", r)
    assert_eq(r.json(), body or DEFAULT_MESSAGE, what + ": body", r)
    check(r.header("Content-Type").startswith("application/json"), what + ": JSON", r)


# What the lists match, one route (and plugin instance) per group: (group, route, config, cases),
# a case being (X-Forwarded-For from the trusted peer, let through?, what).
MATCHING = [
    ("allow", "/allow", {"allow": ["203.0.113.7", "198.51.100.0/24"]}, [
        ("203.0.113.7", True, "a listed address"),
        ("198.51.100.0", True, "first of a range"),
        ("198.51.100.255", True, "last of a range"),
        ("203.0.113.8", False, "the next address"),
        ("198.51.101.0", False, "just past the range"),
        ("198.51.99.255", False, "just before the range"),
        ("2001:db8::1", False, "an IPv6 client"),
    ]),
    ("deny", "/deny", {"deny": ["192.0.2.0/25", "2001:db8:bad::/48"]}, [
        ("192.0.2.1", False, "in the range"),
        ("192.0.2.127", False, "last of the range"),
        ("192.0.2.128", True, "past the /25"),
        ("2001:db8:bad:ffff::1", False, "in the IPv6 range"),
        ("2001:db8:bae::1", True, "past the IPv6 range"),
        ("10.0.0.1", True, "anyone else"),
    ]),
    ("deny wins over allow", "/precedence",
     {"allow": ["10.0.0.0/8", "2001:db8::/32"],
      "deny": ["10.1.0.0/16", "10.2.3.4", "2001:db8:1::/48"]}, [
        ("10.0.0.1", True, "allowed, not denied"),
        ("10.1.200.3", False, "allowed and denied (range)"),
        ("10.2.3.4", False, "allowed and denied (address)"),
        ("10.2.3.5", True, "its neighbour"),
        ("11.0.0.1", False, "neither: not allowed"),
        ("2001:db8:2::1", True, "IPv6 allowed"),
        ("2001:db8:1:2::1", False, "IPv6 allowed and denied"),
    ]),
    ("deny wins over allow", "/same", {"allow": ["10.0.0.5"], "deny": ["10.0.0.5"]}, [
        ("10.0.0.5", False, "the same address in both lists"),
    ]),
    ("prefix length 0", "/v4all", {"allow": ["0.0.0.0/0"]}, [
        ("0.0.0.0", True, "/0 holds 0.0.0.0"),
        ("255.255.255.255", True, "/0 holds 255.255.255.255"),
        ("8.8.8.8", True, "/0 holds 8.8.8.8"),
        ("2001:db8::1", False, "an IPv4 /0 holds no IPv6"),
    ]),
    ("full prefix length", "/v4one", {"allow": ["192.0.2.9/32"]}, [
        ("192.0.2.9", True, "/32 holds its address"),
        ("192.0.2.8", False, "/32 holds nothing else"),
    ]),
    ("prefix length 0", "/v6all", {"allow": ["::/0"]}, [
        ("::1", True, "::/0 holds ::1"),
        ("2001:db8::1", True, "::/0 holds 2001:db8::1"),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", True, "::/0 holds the last address"),
        ("10.0.0.1", False, "::/0 holds no IPv4 client"),
    ]),
    ("full prefix length", "/v6one", {"allow": ["2001:db8::9/128"]}, [
        ("2001:db8::9", True, "/128 holds its address"),
        ("2001:0db8:0:0:0:0:0:0009", True, "/128, the address written in full"),
        ("2001:db8::8", False, "/128 holds nothing else"),
    ]),
    ("prefix length 0", "/everyone-denied", {"deny": ["0.0.0.0/0", "::/0"]}, [
        ("1.2.3.4", False, "deny everything: 1.2.3.4"),
        ("2001:db8::1", False, "deny everything: 2001:db8::1"),
    ]),
    ("IPv6 forms and IPv4-mapped addresses", "/mapped",
     {"allow": ["2001:DB8:0:0:1::/80", "::ffff:198.51.100.0/120", "fe80::1:2:3:4",
                "::ffff:0:0/96"], "deny": ["::ffff:203.0.113.9"]}, [
        ("2001:db8::1:0:0:5", True, "compressed, in an upper-case entry"),
        ("2001:db8:0:0:1:ffff:1:2", True, "full form, in range"),
        ("2001:db8::2:0:0:5", False, "outside the /80"),
        ("fe80:0:0:0:1:2:3:4", True, "an address entry"),
        ("198.51.100.77", True, "an IPv4 client in an IPv4-mapped entry"),
        ("9.9.9.9", True, "::ffff:0:0/96 is all of IPv4"),
        ("203.0.113.9", False, "a mapped deny entry"),
    ]),
    ("IPv6 forms and IPv4-mapped addresses", "/ipv4", {"allow": ["198.51.100.0/24"]}, [
        ("::ffff:198.51.100.1", True, "an IPv4-mapped client in an IPv4 entry"),
        ("::ffff:198.51.101.1", False, "mapped, outside"),
    ]),
]


def test_allow_and_deny_match_addresses_ranges_prefix_lengths_and_ipv6_forms():
    with ipr_gateway({path: conf for _, path, conf, _ in MATCHING}) as (w, b):
        before, let_through = b.stats()["requests"], 0
        for group, path, conf, cases in MATCHING:
            for ip, allowed, what in cases:
                name = "%s, %s (%s from %s, %r)" % (group, what, path, ip, conf)
                r = as_client(w.port, path, ip)
                if allowed:
                    assert_allowed(r, name)
                    let_through += 1
                else:
                    assert_refused(r, name)
        assert_eq(b.stats()["requests"] - before, let_through,
                  "refused requests never reach the upstream")


def test_an_untrusted_peer_cannot_choose_its_address_with_x_forwarded_for():
    with ipr_gateway({"/a": {"allow": ["203.0.113.7"]}, "/d": {"deny": ["127.0.0.1"]}},
                     trusted=()) as (w, b):
        assert_refused(as_client(w.port, "/a", "203.0.113.7"),
                       "an untrusted peer's X-Forwarded-For is ignored")
        assert_refused(as_client(w.port, "/d", "203.0.113.7"), "the peer's own address counts")
        assert_refused(http("GET", w.port, "/d"), "without the header")


def test_a_trusted_chain_yields_the_rightmost_untrusted_hop():
    with ipr_gateway({"/a": {"allow": ["203.0.113.7"]}},
                     trusted=("127.0.0.1", "10.0.0.0/8")) as (w, b):
        assert_allowed(as_client(w.port, "/a", "198.51.100.1, 203.0.113.7, 10.0.0.2"),
                       "trusted hops skipped from the right")
        assert_refused(as_client(w.port, "/a", "203.0.113.7, 198.51.100.1"),
                       "a spoofed leftmost entry does not count")
        seen = echo(as_client(w.port, "/a", "198.51.100.1, 203.0.113.7, 10.0.0.2"))
        assert_eq(seen.header("X-Real-IP"), "203.0.113.7", "the address the upstream is told")


def test_an_ipv6_peer_is_matched_by_its_own_address():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        raise Skip("no IPv6 loopback here")
    port = free_port()
    listen = ["[::1]:%d" % port, "127.0.0.1:%d" % free_port()]
    with ipr_gateway({"/6": {"allow": ["::1/128"]}, "/d": {"deny": ["::/0"]}},
                     trusted=(), listen=listen) as (w, b):
        assert_allowed(http("GET", port, "/6", host="::1"), "::1 over IPv6")
        assert_refused(http("GET", port, "/d", host="::1"), "::/0 denies an IPv6 peer")
        v4 = int(listen[1].rsplit(":", 1)[1])
        assert_refused(http("GET", v4, "/6"), "127.0.0.1 is not ::1")
        assert_allowed(http("GET", v4, "/d"), "::/0 does not deny an IPv4 peer")


def test_custom_status_and_message_and_kong_nulls():
    configs = {"/c": {"deny": ["127.0.0.1"], "status": 401, "message": "go away"},
               "/n": {"deny": ["127.0.0.1"], "allow": None, "status": None, "message": None}}
    with ipr_gateway(configs, trusted=()) as (w, b):
        assert_refused(http("GET", w.port, "/c"), "custom", 401, {"message": "go away"})
        assert_refused(http("GET", w.port, "/n"), "nulls mean Kong's defaults")


def test_matching_agrees_with_pythons_ipaddress_for_random_ranges():
    rnd = random.Random(5)
    entries, nets = [], []
    for i in range(40):
        if i % 2:
            bits = rnd.choice([8, 12, 16, 20, 24, 27, 31, 32])
            text = "%s/%d" % (ipaddress.IPv4Address(rnd.getrandbits(32)), bits)  # host bits set
            net = ipaddress.ip_network(text, strict=False)
        else:
            bits = rnd.choice([16, 32, 47, 48, 63, 64, 65, 96, 100, 127, 128])
            text = "%s/%d" % (ipaddress.IPv6Address(rnd.getrandbits(128)).compressed, bits)
            net = ipaddress.ip_network(text, strict=False)
        entries.append(text)
        nets.append(net)
    allow, deny = entries[:30], entries[30:]
    # clients: inside, at the edges of and just outside each range, and random ones
    clients = []
    for net in nets:
        for addr in (net.network_address, net.broadcast_address,
                     net.network_address + (net.num_addresses // 3)):
            clients.append(addr)
        if int(net.broadcast_address) < (2 ** net.max_prefixlen - 1):
            clients.append(net.broadcast_address + 1)
        if int(net.network_address) > 0:
            clients.append(net.network_address - 1)
    for _ in range(60):
        clients.append(ipaddress.IPv4Address(rnd.getrandbits(32)))
        clients.append(ipaddress.IPv6Address(rnd.getrandbits(128)))

    def expected(addr):
        if any(addr in n for n in nets[30:] if n.version == addr.version):
            return 403
        return 200 if any(addr in n for n in nets[:30] if n.version == addr.version) else 403

    with ipr_gateway({"/r": {"allow": allow, "deny": deny}}) as (w, b):
        with Conn(w.port) as c:
            wrong = []
            for addr in clients:
                r = c.request("GET", "/r", headers={"X-Forwarded-For": str(addr)})
                if r.status != expected(addr):
                    wrong.append((str(addr), r.status, expected(addr)))
        assert_eq(wrong, [], "clients the plugin judged differently from ipaddress "
                             "(of %d; allow %r deny %r)" % (len(clients), allow, deny))
        check(200 in {expected(a) for a in clients} and 403 in {expected(a) for a in clients},
              "the sample has clients of both kinds")


def test_malformed_entries_are_refused_when_the_config_is_stored():
    with gateway(store=STORE) as (w, b):
        api = Admin(w)
        bad = ["10.0.0.0/33", "256.1.1.1", "10.0.0", "01.2.3.4", "2001:db8::/129",
               "2001:db8:::1", "1:2:3:4:5:6:7:8:9", "::ffff:1.2.3", "example.com", "",
               "10.0.0.1/", "10.0.0.1/08", "fe80::1%eth0", "10.0.0.1\n"]
        doc = _schema_error(api.post("/plugins", {"name": "ip-restriction", "config": {
            "allow": ["10.0.0.1"] + bad, "deny": ["2001:db8::/32", "::ffff:10.0.0.0/104"]}}))
        fields = doc["fields"]
        for i, entry in enumerate(bad, start=1):
            key = "config.allow[%d]" % i
            check(key in fields and "IPv4 or IPv6 address or CIDR range" in fields[key],
                  "%r is refused with a clear message: %r" % (entry, doc))
        check("config.allow[0]" not in fields and not any(k.startswith("config.deny") for k in fields),
              "good entries are not refused: %r" % doc)
        doc = _schema_error(api.post("/plugins", {"name": "ip-restriction", "config": {}}))
        check("at least one of allow or deny" in str(doc), "neither list: %r" % doc)
        doc = _schema_error(api.post("/plugins", {"name": "ip-restriction", "config": {
            "allow": None, "deny": None}}))
        check("at least one of allow or deny" in str(doc), "both null: %r" % doc)
        doc = _schema_error(api.post("/plugins", {"name": "ip-restriction", "config": {
            "deny": ["10.0.0.1"], "status": 99}}))
        check("config.status" in doc["fields"], "a status that is no final status: %r" % doc)
        assert_eq(api.ok("GET", "/plugins")["data"], [], "nothing stored")
        p = api.ok("POST", "/plugins", {"name": "ip-restriction",
                                        "config": {"deny": ["192.0.2.1"]}})
        assert_eq((p["config"]["status"], p["config"]["message"]),
                  (403, "Your IP address is not allowed"), "Kong's defaults filled in")


def test_a_consumer_scoped_instance_applies_to_that_consumer_only():
    root = plugin_tree({"who": handler(1500, """
function P:access(conf)
  local name = weir.request.get_header("X-User")
  if not name then return end
  local consumer = weir.client.load_consumer(name, true)
  if consumer then weir.client.authenticate(consumer, nil) end
end
""")})

    def make(port):
        cfg = base_config(port, plugins=["bundled", "who"], plugin_paths=[root],
                          trusted_ips=["127.0.0.1"])
        cfg["consumers"] = [{"username": "alice"}, {"username": "bob"}]
        cfg["plugins"] = [{"name": "who"},
                          {"name": "ip-restriction", "config": {"deny": ["192.0.2.0/24"]}},
                          {"name": "ip-restriction", "consumer": "alice",
                           "config": {"allow": ["198.51.100.0/24", "192.0.2.5"],
                                      "message": "alice: office only"}}]
        return cfg
    with gateway(make) as (w, b):
        def call(user, ip):
            hs = {"X-Forwarded-For": ip}
            if user:
                hs["X-User"] = user
            return http("GET", w.port, "/", headers=hs)
        assert_allowed(call("alice", "198.51.100.9"), "alice from the office")
        assert_refused(call("alice", "203.0.113.1"), "alice elsewhere", 403,
                       {"message": "alice: office only"})
        assert_allowed(call("alice", "192.0.2.5"),
                       "alice's own instance replaces the global one (precedence)")
        assert_allowed(call("bob", "203.0.113.1"), "bob: the global instance")
        assert_refused(call("bob", "192.0.2.5"), "bob, denied globally")
        assert_refused(call(None, "192.0.2.5"), "anonymous, denied globally")


def test_a_changed_config_applies_from_the_next_request():
    with gateway(store=STORE, trusted_ips=["127.0.0.1"]) as (w, b):
        api = Admin(w)
        p = api.ok("POST", "/plugins", {"name": "ip-restriction",
                                        "config": {"allow": ["192.0.2.1"]}})
        with Conn(w.port) as c:
            def status(ip):
                return c.request("GET", "/", headers={"X-Forwarded-For": ip}).status
            assert_eq((status("192.0.2.1"), status("192.0.2.2")), (200, 403), "first lists")
            api.ok("PATCH", "/plugins/" + p["id"], {"config": {"allow": ["192.0.2.2"]}})
            assert_eq((status("192.0.2.1"), status("192.0.2.2")), (403, 200),
                      "the lists parsed for the old config are not reused")
