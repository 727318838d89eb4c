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


def test_allow_lets_listed_addresses_and_ranges_in_and_refuses_the_rest():
    with ipr_gateway({"/a": {"allow": ["203.0.113.7", "198.51.100.0/24"]}}) as (w, b):
        before = b.stats()["requests"]
        assert_allowed(as_client(w.port, "/a", "203.0.113.7"), "a listed address")
        assert_allowed(as_client(w.port, "/a", "198.51.100.0"), "first of a range")
        assert_allowed(as_client(w.port, "/a", "198.51.100.255"), "last of a range")
        assert_refused(as_client(w.port, "/a", "203.0.113.8"), "the next address")
        assert_refused(as_client(w.port, "/a", "198.51.101.0"), "just past the range")
        assert_refused(as_client(w.port, "/a", "198.51.99.255"), "just before the range")
        assert_refused(as_client(w.port, "/a", "2001:db8::1"), "an IPv6 client")
        assert_eq(b.stats()["requests"] - before, 3, "refused requests never reach the upstream")


def test_deny_refuses_listed_addresses_and_lets_the_rest_in():
    with ipr_gateway({"/d": {"deny": ["192.0.2.0/25", "2001:db8:bad::/48"]}}) as (w, b):
        assert_refused(as_client(w.port, "/d", "192.0.2.1"), "in the range")
        assert_refused(as_client(w.port, "/d", "192.0.2.127"), "last of the range")
        assert_allowed(as_client(w.port, "/d", "192.0.2.128"), "past the /25")
        assert_refused(as_client(w.port, "/d", "2001:db8:bad:ffff::1"), "in the IPv6 range")
        assert_allowed(as_client(w.port, "/d", "2001:db8:bae::1"), "past the IPv6 range")
        assert_allowed(as_client(w.port, "/d", "10.0.0.1"), "anyone else")


def test_deny_wins_over_allow():
    conf = {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.1.0.0/16", "10.2.3.4",
                                                                "2001:db8:1::/48"]}
    with ipr_gateway({"/b": conf}) as (w, b):
        assert_allowed(as_client(w.port, "/b", "10.0.0.1"), "allowed, not denied")
        assert_refused(as_client(w.port, "/b", "10.1.200.3"), "allowed and denied (range)")
        assert_refused(as_client(w.port, "/b", "10.2.3.4"), "allowed and denied (address)")
        assert_allowed(as_client(w.port, "/b", "10.2.3.5"), "its neighbour")
        assert_refused(as_client(w.port, "/b", "11.0.0.1"), "neither: not allowed")
        assert_allowed(as_client(w.port, "/b", "2001:db8:2::1"), "IPv6 allowed")
        assert_refused(as_client(w.port, "/b", "2001:db8:1:2::1"), "IPv6 allowed and denied")
    with ipr_gateway({"/b": {"allow": ["10.0.0.5"], "deny": ["10.0.0.5"]}}) as (w, b):
        assert_refused(as_client(w.port, "/b", "10.0.0.5"), "the same address in both lists")


def test_prefix_lengths_zero_and_full():
    configs = {"/v4all": {"allow": ["0.0.0.0/0"]}, "/v4one": {"allow": ["192.0.2.9/32"]},
               "/v6all": {"allow": ["::/0"]}, "/v6one": {"allow": ["2001:db8::9/128"]},
               "/denyall": {"deny": ["0.0.0.0/0", "::/0"]}}
    with ipr_gateway(configs) as (w, b):
        for ip in ("0.0.0.0", "255.255.255.255", "8.8.8.8"):
            assert_allowed(as_client(w.port, "/v4all", ip), "/0 holds " + ip)
        assert_refused(as_client(w.port, "/v4all", "2001:db8::1"), "an IPv4 /0 holds no IPv6")
        assert_allowed(as_client(w.port, "/v4one", "192.0.2.9"), "/32 holds its address")
        assert_refused(as_client(w.port, "/v4one", "192.0.2.8"), "/32 holds nothing else")
        for ip in ("::1", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"):
            assert_allowed(as_client(w.port, "/v6all", ip), "::/0 holds " + ip)
        assert_refused(as_client(w.port, "/v6all", "10.0.0.1"), "::/0 holds no IPv4 client")
        assert_allowed(as_client(w.port, "/v6one", "2001:db8::9"), "/128 holds its address")
        assert_allowed(as_client(w.port, "/v6one", "2001:0db8:0:0:0:0:0:0009"),
                       "/128, the address written in full")
        assert_refused(as_client(w.port, "/v6one", "2001:db8::8"), "/128 holds nothing else")
        for ip in ("1.2.3.4", "2001:db8::1"):
            assert_refused(as_client(w.port, "/denyall", ip), "deny everything: " + ip)


def test_ipv6_compressed_forms_and_ipv4_mapped_addresses():
    conf = {"allow": ["2001:DB8:0:0:1::/80", "::ffff:198.51.100.0/120", "fe80::1:2:3:4",
                      "::ffff:0:0/96"], "deny": ["::ffff:203.0.113.9"]}
    with ipr_gateway({"/m": conf, "/v4": {"allow": ["198.51.100.0/24"]}}) as (w, b):
        assert_allowed(as_client(w.port, "/m", "2001:db8::1:0:0:5"), "compressed, in an upper-case entry")
        assert_allowed(as_client(w.port, "/m", "2001:db8:0:0:1:ffff:1:2"), "full form, in range")
        assert_refused(as_client(w.port, "/m", "2001:db8::2:0:0:5"), "outside the /80")
        assert_allowed(as_client(w.port, "/m", "fe80:0:0:0:1:2:3:4"), "an address entry")
        assert_allowed(as_client(w.port, "/m", "198.51.100.77"),
                       "an IPv4 client in an IPv4-mapped entry")
        assert_allowed(as_client(w.port, "/m", "9.9.9.9"), "::ffff:0:0/96 is all of IPv4")
        assert_refused(as_client(w.port, "/m", "203.0.113.9"), "a mapped deny entry")
        assert_allowed(as_client(w.port, "/v4", "::ffff:198.51.100.1"),
                       "an IPv4-mapped client in an IPv4 entry")
        assert_refused(as_client(w.port, "/v4", "::ffff:198.51.101.1"), "mapped, outside")


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
