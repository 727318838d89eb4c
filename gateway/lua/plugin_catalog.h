/* plugin_catalog: which Lua plugins this configuration enables, found and checked at load time.
 *
 * A plugin is a directory plugins/<name>/ holding handler.lua (a Lua chunk returning a table with
 * a numeric PRIORITY, a string VERSION and any of the methods rewrite, access, response, log),
 * with its config schema in schemas/plugins/<name>.json beside plugins/ in the same root. Bundled
 * plugins live in the data directory (paths_data_dir()); each directory in weir.plugin_paths is
 * another root laid out the same way. weir.plugins names the enabled ones, as in Kong:
 * "bundled" stands for every bundled plugin (the default is ["bundled"]).
 *
 * plugin_catalog_load() reads and runs every enabled handler once in a scratch LuaJIT state and
 * compiles every schema, so that a missing file, a syntax error (reported as "file:line: ...") or
 * a handler without PRIORITY is a start-up (and `weir -t`, and reload) error, never a surprise on
 * the first request. The catalogue is immutable afterwards; any thread may read it. */
#ifndef WEIR_PLUGIN_CATALOG_H
#define WEIR_PLUGIN_CATALOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/schema.h"
#include "core/errlist.h"

enum plugin_phase {
    PLUGIN_REWRITE = 1 << 0,
    PLUGIN_ACCESS = 1 << 1,
    PLUGIN_RESPONSE = 1 << 2,
    PLUGIN_LOG = 1 << 3,
};

struct plugin_def {
    char *name;
    char *handler_path;    /* absolute */
    char *schema_path;     /* absolute */
    struct schema *schema; /* of the instance's `config` object */
    double priority;
    char *version;
    unsigned phases; /* enum plugin_phase bits the handler defines */
    bool bundled;
    /* BUFFER_RESPONSE: the response phase sees the whole body (BUFFER_BY_CONFIG: when the
     * handler's BUFFER_RESPONSE(conf) says so for an instance's config) */
    enum { BUFFER_NEVER, BUFFER_ALWAYS, BUFFER_BY_CONFIG } buffer_response;
};

struct plugin_catalog {
    atomic_int refs;         /* configs share a catalogue: admin changes do not reload plugins */
    uint64_t generation;     /* unique per load: VMs cache handlers by it, never by address */
    struct plugin_def *defs; /* enabled plugins, sorted by name */
    size_t n_defs;
    char **available; /* every plugin found (bundled and in plugin_paths), sorted */
    size_t n_available;
};

/* `roots`: plugin_paths (absolute directories), searched after the bundled root (`data_dir`);
 * a name found in two roots is an error. `enabled`: weir.plugins. NULL with problems in errs. */
struct plugin_catalog *plugin_catalog_load(const char *data_dir, char *const *roots, size_t n_roots,
                                           char *const *enabled, size_t n_enabled,
                                           struct errlist *errs);
const struct plugin_def *plugin_catalog_find(const struct plugin_catalog *c, const char *name);
/* Checks every plugin instance of `model` (config/model.h) against the catalogue: its plugin must
 * be enabled, and its config (null counts as {}) must pass the plugin's schema; defaults are then
 * filled in, as Kong stores them. Returns the model to use: `model` itself (a new reference) when
 * every config was already complete, else a new model that shares everything with `model` but the
 * plugin entities whose config changed (so a model other threads read is never written). NULL
 * with every problem in errs, named through `origins` ("plugins[0].config.minute: ..."). */
struct json_t *plugin_catalog_apply(const struct plugin_catalog *c, struct json_t *model,
                                    const struct json_t *origins, struct errlist *errs);
/* The catalogue is returned holding one reference. */
struct plugin_catalog *plugin_catalog_retain(struct plugin_catalog *c);
void plugin_catalog_release(struct plugin_catalog *c);

#endif
