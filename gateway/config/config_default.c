/* The configuration `weir` runs with when started without -c: the gateway on
 * 127.0.0.1:8000, the admin API on 127.0.0.1:8001, access log on stdout, and
 * every path proxied unchanged to the bundled demo backend
 * (examples/demo_backend.py on 127.0.0.1:9080). Admin API changes persist in
 * weir-data/store.json under the current directory (weir.store), so what an
 * operator adds survives a restart. It goes through the same loader as a file
 * (tests/unit/test_config.c checks that it loads). */
#include "config/config.h"

const char config_default_json[] =
    "{\n"
    "  \"_format_version\": \"3.0\",\n"
    "  \"_comment\": \"Weir's built-in configuration, used when weir runs without -c. It "
    "proxies every path to the demo backend (python3 examples/demo_backend.py). See "
    "docs/configuration.md to write your own.\",\n"
    "  \"weir\": {\n"
    "    \"proxy_listen\": [\"127.0.0.1:8000\"],\n"
    "    \"admin_listen\": [\"127.0.0.1:8001\"],\n"
    "    \"access_log\": \"-\",\n"
    "    \"store\": { \"type\": \"file\", \"path\": \"weir-data/store.json\" }\n"
    "  },\n"
    "  \"services\": [\n"
    "    {\n"
    "      \"name\": \"demo\",\n"
    "      \"url\": \"http://127.0.0.1:9080\",\n"
    "      \"routes\": [\n"
    "        { \"name\": \"demo\", \"paths\": [\"/\"], \"strip_path\": false }\n"
    "      ]\n"
    "    }\n"
    "  ]\n"
    "}\n";
