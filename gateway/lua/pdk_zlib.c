/* weir.zlib: gzip and zlib bodies for plugins that change compressed payloads
 * (response-transformer on a gzip upstream body, as Kong's does).
 *
 * inflate reads gzip or zlib (detected from the header) and stops at max_bytes of output, so a
 * small compressed body cannot expand into gigabytes (a zip bomb): past the limit the answer is
 * nil, "too large". Nothing here waits; the work is bounded by the input and the limit. */
#include "lua/pdk_zlib.h"

#include <lauxlib.h>
#include <string.h>
#include <zlib.h>

#define DEFAULT_MAX (8 * 1024 * 1024)
#define MAX_MAX (1024 * 1024 * 1024)

static int fail(lua_State *L, const char *err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* inflate(data, max_bytes?): the decompressed bytes, or nil and "not gzip or zlib data",
 * "truncated", "too large" */
static int zlib_inflate(lua_State *L) {
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    lua_Integer max = luaL_optinteger(L, 2, DEFAULT_MAX);
    if (max < 1 || max > MAX_MAX) return luaL_argerror(L, 2, "max_bytes must be 1 to 1 GiB");
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 32) != Z_OK) return fail(L, "out of memory");
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len; /* Lua strings of a body fit: the body limits are far below 4 GiB */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t total = 0;
    int rc = Z_OK;
    const char *err = NULL;
    while (rc != Z_STREAM_END) {
        char *out = luaL_prepbuffer(&b);
        z.next_out = (Bytef *)out;
        z.avail_out = LUAL_BUFFERSIZE;
        rc = inflate(&z, Z_NO_FLUSH);
        size_t got = LUAL_BUFFERSIZE - z.avail_out;
        if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_STREAM_ERROR) {
            err = "not gzip or zlib data";
            break;
        }
        if (rc == Z_MEM_ERROR) {
            err = "out of memory";
            break;
        }
        total += got;
        if (total > (size_t)max) {
            err = "too large";
            break;
        }
        luaL_addsize(&b, got);
        if (rc == Z_BUF_ERROR || (rc == Z_OK && got == 0 && z.avail_in == 0)) {
            err = "truncated";
            break;
        }
    }
    inflateEnd(&z);
    if (err) {
        luaL_pushresult(&b);
        lua_pop(L, 1);
        return fail(L, err);
    }
    luaL_pushresult(&b);
    return 1;
}

/* deflate(data, format?): data compressed as "gzip" (default) or "zlib" */
static int zlib_deflate(lua_State *L) {
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    static const char *const formats[] = {"gzip", "zlib", NULL};
    int format = luaL_checkoption(L, 2, "gzip", formats);
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, format == 0 ? 15 + 16 : 15, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return fail(L, "out of memory");
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int rc;
    do {
        char *out = luaL_prepbuffer(&b);
        z.next_out = (Bytef *)out;
        z.avail_out = LUAL_BUFFERSIZE;
        rc = deflate(&z, Z_FINISH);
        luaL_addsize(&b, LUAL_BUFFERSIZE - z.avail_out);
    } while (rc == Z_OK || (rc == Z_BUF_ERROR && z.avail_out == 0));
    deflateEnd(&z);
    luaL_pushresult(&b);
    if (rc != Z_STREAM_END) {
        lua_pop(L, 1);
        return fail(L, "cannot compress");
    }
    return 1;
}

void pdk_zlib_register(lua_State *L, int weir) {
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, zlib_inflate);
    lua_setfield(L, -2, "inflate");
    lua_pushcfunction(L, zlib_deflate);
    lua_setfield(L, -2, "deflate");
    lua_setfield(L, weir, "zlib");
}
