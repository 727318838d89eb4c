/* plugin_test: `weir plugin test <dir> [-v]`, a plugin root's specs against a real gateway.
 *
 * <dir> is laid out like the project root (plugins/<name>/handler.lua, schemas/plugins/<name>.json)
 * with spec files spec/<name>_spec.lua and, optionally, spec/config.json ({"weir": {...}}: extra
 * server settings such as shared_dicts; plugins and plugin_paths there are added to the generated
 * ones). The command starts, in this process: a mock upstream (cli/mock_upstream.h), and a gateway
 * (server.h, the code `weir -c` runs) whose control loop gets a thread of its own, with 1 worker,
 * proxy and admin API on free 127.0.0.1 ports, every plugin of <dir> enabled besides the bundled
 * ones, no store, and its error log in a temporary directory. Then it runs each spec file, in name
 * order, in a fresh LuaJIT state on the calling thread (lua/weir/spec.lua, lua/weir/test.lua, and
 * cli/spec_native.h for HTTP), stops everything and removes the temporary directory.
 *
 * Output: "# <file>" per file, one "ok - ..." / "not ok - ...: message" line per test, the error
 * log lines of failing tests, then "N passed, N failed". Exit status: 0 when every test passed,
 * 1 when one failed (or the gateway did not start with these plugins), 2 for a usage error (bad
 * arguments, no such directory, no spec files, a bad spec/config.json). */
#ifndef WEIR_PLUGIN_TEST_H
#define WEIR_PLUGIN_TEST_H

/* argv[0] is "test"; the rest are the command's arguments. Returns the exit status. */
int plugin_test_main(int argc, char **argv);

#endif
