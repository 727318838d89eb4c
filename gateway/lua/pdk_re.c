#include "lua/pdk_re.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <lauxlib.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_META "weir.re.cache"
#define REGEX_META "weir.re.regex"

/* Bounds on one pcre2_match() call. The match limit stops exponential backtracking (a 30-byte
 * subject against "(a+)+$" gives up in milliseconds); the depth limit bounds the interpreter's
 * backtracking memory; the JIT stack is what deeply nested JIT matches grow into. */
#define MATCH_LIMIT 1000000
#define DEPTH_LIMIT 100000
#define JIT_STACK_MIN (32 * 1024)
#define JIT_STACK_MAX (512 * 1024)

/* Groups whose offsets fit in a struct match without a Lua allocation. */
#define INLINE_GROUPS 32

/* Not core/log.h's WEIR_BUG_ON: this module links without the rest of the gateway. */
#define RE_BUG_ON(cond)                                                                            \
    do {                                                                                           \
        if (cond) {                                                                                \
            fprintf(stderr, "%s:%d: BUG: %s\n", __FILE__, __LINE__, #cond);                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The cache, one per pushed table. Its environment table maps each key to a struct regex
 * userdata; the same entries form a list, most recently used first, so the oldest is at hand. */
struct re_cache {
    pcre2_match_context *match_context; /* the limits and the JIT stack */
    pcre2_jit_stack *jit_stack;         /* NULL when pcre2 has no JIT */
    pcre2_match_data *match_data;       /* shared by every regex: see struct match */
    uint32_t match_pairs;
    struct regex *newest, *oldest;
    size_t entries;
};

/* A compiled regex. A userdata of its own so that an evicted regex stays valid for as long as a
 * gmatch iterator or a running call still holds it. */
struct regex {
    pcre2_code *code;
    uint32_t groups; /* capture groups + 1 for the whole match */
    uint32_t match_options;
    uint32_t name_count, name_entry_size;
    PCRE2_SPTR name_table; /* points into code */
    bool utf, dupnames;
    struct regex *newer, *older;
    size_t key_len;
    char key[]; /* the cache key, to remove this entry on eviction */
};

struct re_options {
    uint32_t compile;
    uint32_t match;
};

/* One match, copied out of the shared match data at once: building captures, calling a
 * replacement function or merely allocating (which may run finalizers) can run Lua code that
 * matches again and overwrites the shared offsets. */
struct match {
    const char *subject;
    size_t len;
    int set; /* groups that pcre2 filled in: the highest matched one + 1 */
    PCRE2_SIZE *ov;
    PCRE2_SIZE inline_ov[2 * INLINE_GROUPS];
};

/* ---- the cache ---- */

static int cache_gc(lua_State *L) {
    struct re_cache *c = lua_touserdata(L, 1);
    pcre2_match_data_free(c->match_data);
    pcre2_jit_stack_free(c->jit_stack);
    pcre2_match_context_free(c->match_context);
    memset(c, 0, sizeof *c);
    return 0;
}

/* Frees only its own code: the cache may be finalized first (lua_close), so no list walking. */
static int regex_gc(lua_State *L) {
    struct regex *re = lua_touserdata(L, 1);
    pcre2_code_free(re->code);
    re->code = NULL;
    return 0;
}

static struct re_cache *cache_of(lua_State *L) {
    return lua_touserdata(L, lua_upvalueindex(1));
}

static void list_unlink(struct re_cache *c, struct regex *re) {
    if (re->newer)
        re->newer->older = re->older;
    else
        c->newest = re->older;
    if (re->older)
        re->older->newer = re->newer;
    else
        c->oldest = re->newer;
    re->newer = re->older = NULL;
}

static void list_push_newest(struct re_cache *c, struct regex *re) {
    re->newer = NULL;
    re->older = c->newest;
    if (c->newest) c->newest->newer = re;
    c->newest = re;
    if (!c->oldest) c->oldest = re;
}

/* Drops the least recently used entry from the lookup table at index lookup. The regex itself
 * lives on until nothing references it. */
static void cache_evict_oldest(lua_State *L, struct re_cache *c, int lookup) {
    struct regex *old = c->oldest;
    list_unlink(c, old);
    c->entries--;
    lua_pushlstring(L, old->key, old->key_len);
    lua_pushnil(L);
    lua_rawset(L, lookup);
}

/* The key is the options followed by the pattern: fixed-width options keep it unambiguous for
 * patterns containing NUL bytes, and "ij" and "ji" share an entry. */
static void push_key(lua_State *L, const char *pattern, size_t len, struct re_options o) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, (const char *)&o, sizeof o);
    luaL_addlstring(&b, pattern, len);
    luaL_pushresult(&b);
}

static void push_compile_error(lua_State *L, int code, size_t offset, const char *pattern,
                               size_t len) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(code, message, sizeof message);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "pcre2_compile() failed: ");
    luaL_addstring(&b, (const char *)message);
    luaL_addstring(&b, " in \"");
    luaL_addlstring(&b, pattern, len);
    luaL_addstring(&b, "\" at offset ");
    lua_pushinteger(L, (lua_Integer)offset);
    luaL_addvalue(&b);
    luaL_pushresult(&b);
}

/* Compiles pattern into a new regex userdata, which it pushes; or pushes the error message and
 * returns NULL. The key string is at the top of the stack. */
static struct regex *regex_compile(lua_State *L, const char *pattern, size_t len,
                                   struct re_options o) {
    size_t key_len;
    const char *key = lua_tolstring(L, -1, &key_len);
    /* the userdata (with its __gc) exists before the code, so no error path leaks the code */
    struct regex *re = lua_newuserdata(L, sizeof *re + key_len);
    memset(re, 0, sizeof *re);
    luaL_getmetatable(L, REGEX_META);
    lua_setmetatable(L, -2);

    int error;
    PCRE2_SIZE offset;
    re->code = pcre2_compile((PCRE2_SPTR)pattern, len, o.compile, &error, &offset, NULL);
    if (!re->code) {
        lua_pop(L, 1);
        push_compile_error(L, error, offset, pattern, len);
        return NULL;
    }
    /* JIT is an optimisation: without it (no support, no executable memory) pcre2_match()
     * interprets, with the same results */
    (void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);

    uint32_t captures;
    pcre2_pattern_info(re->code, PCRE2_INFO_CAPTURECOUNT, &captures);
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMECOUNT, &re->name_count);
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMEENTRYSIZE, &re->name_entry_size);
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMETABLE, &re->name_table);
    re->groups = captures + 1;
    re->match_options = o.match;
    re->utf = (o.compile & PCRE2_UTF) != 0;
    re->dupnames = (o.compile & PCRE2_DUPNAMES) != 0;
    re->key_len = key_len;
    memcpy(re->key, key, key_len);
    return re;
}

/* Finds or compiles the regex and pushes it (keeping it alive for the caller, even if a nested
 * call evicts it); on a compile error pushes the message and returns NULL. */
static struct regex *regex_get(lua_State *L, const char *pattern, size_t len, struct re_options o) {
    struct re_cache *c = cache_of(L);
    lua_getfenv(L, lua_upvalueindex(1));
    int lookup = lua_gettop(L);
    push_key(L, pattern, len, o);
    lua_pushvalue(L, -1);
    lua_rawget(L, lookup);
    struct regex *re = lua_touserdata(L, -1);
    if (re) {
        list_unlink(c, re);
        list_push_newest(c, re);
    } else {
        lua_pop(L, 1);
        re = regex_compile(L, pattern, len, o);
        if (re) {
            lua_pushvalue(L, lookup + 1);
            lua_pushvalue(L, -2);
            lua_rawset(L, lookup);
            list_push_newest(c, re);
            if (++c->entries > PDK_RE_CACHE_ENTRIES) cache_evict_oldest(L, c, lookup);
        }
    }
    lua_replace(L, lookup);
    lua_settop(L, lookup);
    return re;
}

/* ---- matching ---- */

static struct re_options check_options(lua_State *L, int idx) {
    size_t len;
    const char *flags = luaL_optlstring(L, idx, "", &len);
    struct re_options o = {0, 0};
    for (size_t i = 0; i < len; i++) {
        switch (flags[i]) {
        case 'a':
            o.compile |= PCRE2_ANCHORED;
            break;
        case 'i':
            o.compile |= PCRE2_CASELESS;
            break;
        case 'm':
            o.compile |= PCRE2_MULTILINE;
            break;
        case 's':
            o.compile |= PCRE2_DOTALL;
            break;
        case 'x':
            o.compile |= PCRE2_EXTENDED;
            break;
        case 'u':
            o.compile |= PCRE2_UTF;
            break;
        case 'U':
            /* OpenResty's U skips the check and leaves invalid input undefined; pcre2 can
             * instead make invalid sequences unmatchable, which is as fast and safe on
             * untrusted subjects */
#ifdef PCRE2_MATCH_INVALID_UTF
            o.compile |= PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
#else
            o.compile |= PCRE2_UTF;
            o.match |= PCRE2_NO_UTF_CHECK;
#endif
            break;
        case 'D':
            o.compile |= PCRE2_DUPNAMES;
            break;
        case 'J':
            /* what PCRE1's JAVASCRIPT_COMPAT became in PCRE2 */
            o.compile |= PCRE2_ALT_BSUX | PCRE2_ALLOW_EMPTY_CLASS | PCRE2_MATCH_UNSET_BACKREF;
            break;
        case 'j':
        case 'o':
            break;
        default:
            luaL_error(L, "unknown flag \"%c\" (flags \"%s\")", flags[i], flags);
        }
    }
    return o;
}

/* OpenResty's start: 1-based, anything below 1 is the start of the subject. */
static size_t start_offset(lua_Integer pos) {
    return pos <= 0 ? 0 : (size_t)(pos - 1);
}

/* init is a number or, as in OpenResty, a ctx table with a pos field. */
static size_t check_init(lua_State *L, int idx) {
    switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL:
        return 0;
    case LUA_TNUMBER:
        return start_offset(lua_tointeger(L, idx));
    case LUA_TTABLE: {
        lua_getfield(L, idx, "pos");
        lua_Integer pos = lua_tointeger(L, -1);
        lua_pop(L, 1);
        return start_offset(pos);
    }
    default:
        luaL_typerror(L, idx, "number or table");
        return 0;
    }
}

/* After a match, OpenResty's ctx.pos points just past it. */
static void update_ctx(lua_State *L, int idx, const struct match *m) {
    if (lua_type(L, idx) != LUA_TTABLE) return;
    lua_pushinteger(L, (lua_Integer)m->ov[1] + 1);
    lua_setfield(L, idx, "pos");
}

/* Prepares m for re's groups; pushes one value (the offsets' storage) when they do not fit. */
static void match_init(lua_State *L, struct match *m, const struct regex *re, const char *subject,
                       size_t len) {
    m->subject = subject;
    m->len = len;
    m->set = 0;
    if (re->groups <= INLINE_GROUPS)
        m->ov = m->inline_ov;
    else
        m->ov = lua_newuserdata(L, 2 * sizeof(PCRE2_SIZE) * re->groups);
}

/* The shared match data only grows, so it always fits every live regex. */
static void match_data_reserve(lua_State *L, struct re_cache *c, uint32_t pairs) {
    if (c->match_pairs >= pairs) return;
    pcre2_match_data_free(c->match_data);
    c->match_pairs = 0;
    c->match_data = pcre2_match_data_create(pairs < 16 ? 16 : pairs, NULL);
    if (!c->match_data) luaL_error(L, "not enough memory");
    c->match_pairs = pcre2_get_ovector_count(c->match_data);
}

/* Returns 1 and fills m on a match, 0 without one, or pcre2's (negative) error code. */
static int regex_exec(lua_State *L, const struct regex *re, struct match *m, size_t offset,
                      uint32_t options) {
    struct re_cache *c = cache_of(L);
    match_data_reserve(L, c, re->groups);
    int rc = pcre2_match(re->code, (PCRE2_SPTR)m->subject, m->len, offset,
                         re->match_options | options, c->match_data, c->match_context);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return rc;
    RE_BUG_ON(rc == 0); /* only when the ovector is too small, and it never is */
    memcpy(m->ov, pcre2_get_ovector_pointer(c->match_data), 2 * sizeof(PCRE2_SIZE) * re->groups);
    m->set = rc;
    return 1;
}

/* Once a subject passed pcre2's UTF-8 check, later matches on it need not repeat it (the check
 * reads the whole subject: repeating it would make gsub quadratic). */
static uint32_t checked_options(const struct regex *re) {
    return re->utf ? PCRE2_NO_UTF_CHECK : 0;
}

/* Where to look next after an empty match at pos: one character on (one byte in byte mode), so
 * that loops advance and never start inside a UTF-8 sequence. */
static size_t next_start(const struct regex *re, const struct match *m, size_t pos) {
    pos++;
    if (re->utf)
        while (pos < m->len && ((unsigned char)m->subject[pos] & 0xC0) == 0x80)
            pos++;
    return pos;
}

static bool group_matched(const struct match *m, uint32_t n) {
    return (int)n < m->set && m->ov[2 * n] != PCRE2_UNSET;
}

static void push_error(lua_State *L, int code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(code, message, sizeof message);
    lua_pushstring(L, (const char *)message);
}

/* ---- captures and templates ---- */

static uint32_t entry_group(PCRE2_SPTR entry) {
    return (uint32_t)entry[0] << 8 | entry[1];
}

/* Fills in res[name] from the numbered captures in the table on top of the stack. */
static void set_named_captures(lua_State *L, const struct regex *re) {
    PCRE2_SPTR entry = re->name_table;
    for (uint32_t i = 0; i < re->name_count; i++, entry += re->name_entry_size) {
        const char *name = (const char *)entry + 2;
        lua_rawgeti(L, -1, (int)entry_group(entry));
        if (!re->dupnames) {
            lua_setfield(L, -2, name);
        } else if (!lua_toboolean(L, -1)) {
            lua_pop(L, 1); /* with D, a name lists only the groups that matched */
        } else {
            lua_getfield(L, -2, name);
            if (!lua_istable(L, -1)) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -1);
                lua_setfield(L, -4, name);
            }
            lua_insert(L, -2);
            lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
            lua_pop(L, 1);
        }
    }
}

/* Pushes the captures table: res (a stack index, 0 for a new table) filled with m[0], m[1]..,
 * false for groups that did not match, and the named groups. */
static void push_captures(lua_State *L, const struct regex *re, const struct match *m, int res) {
    if (res)
        lua_pushvalue(L, res);
    else
        lua_createtable(L, (int)re->groups - 1, (int)re->name_count + 1);
    for (uint32_t i = 0; i < re->groups; i++) {
        if (group_matched(m, i))
            lua_pushlstring(L, m->subject + m->ov[2 * i], m->ov[2 * i + 1] - m->ov[2 * i]);
        else
            lua_pushboolean(L, 0);
        lua_rawseti(L, -2, (int)i);
    }
    if (re->name_count) set_named_captures(L, re);
}

/* The group a name refers to: with duplicate names, the first that matched in m (or, without
 * a match to consult, the first). -1 for a name the pattern does not have. */
static long group_by_name(const struct regex *re, const char *name, size_t len,
                          const struct match *m) {
    char buf[256];
    if (len >= sizeof buf) return -1;
    memcpy(buf, name, len);
    buf[len] = '\0';
    PCRE2_SPTR first, last;
    int size = pcre2_substring_nametable_scan(re->code, (PCRE2_SPTR)buf, &first, &last);
    if (size < 0) return -1;
    for (PCRE2_SPTR e = first; m && e <= last; e += size)
        if (group_matched(m, entry_group(e))) return entry_group(e);
    return entry_group(first);
}

static bool is_digit(char ch) {
    return ch >= '0' && ch <= '9';
}

static bool is_name_char(char ch) {
    return is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

/* Parses a "$" reference at t[*i] (just past the "$") into a group number; a number larger than
 * any group gives one the pattern lacks. Returns false when malformed or an unknown name. */
static bool template_reference(const char *t, size_t len, size_t *i, const struct regex *re,
                               const struct match *m, long *group) {
    size_t p = *i;
    bool bracket = p < len && t[p] == '{';
    if (bracket) p++;
    size_t start = p;
    bool number = p < len && is_digit(t[p]);
    while (p < len && (number ? is_digit(t[p]) : is_name_char(t[p])))
        p++;
    size_t name_len = p - start;
    if (name_len == 0) return false;
    if (bracket) {
        if (p == len || t[p] != '}') return false;
        p++;
    }
    *i = p;
    if (!number) {
        *group = group_by_name(re, t + start, name_len, m);
        return *group >= 0;
    }
    *group = 0;
    for (size_t k = start; k < start + name_len; k++)
        if (*group <= 65536) *group = *group * 10 + (t[k] - '0');
    return true;
}

/* Expands a replacement template into b or, with b (and m) NULL, only checks it. OpenResty's
 * syntax, plus named groups which it rejects. */
static bool template_expand(const char *t, size_t len, const struct regex *re,
                            const struct match *m, luaL_Buffer *b) {
    size_t i = 0;
    while (i < len) {
        const char *dollar = memchr(t + i, '$', len - i);
        size_t literal_end = dollar ? (size_t)(dollar - t) : len;
        if (b) luaL_addlstring(b, t + i, literal_end - i);
        if (!dollar) break;
        i = literal_end + 1;
        if (i < len && t[i] == '$') {
            if (b) luaL_addchar(b, '$');
            i++;
            continue;
        }
        long group;
        if (!template_reference(t, len, &i, re, m, &group)) return false;
        if (b && group < (long)re->groups && group_matched(m, (uint32_t)group))
            luaL_addlstring(b, m->subject + m->ov[2 * group],
                            m->ov[2 * group + 1] - m->ov[2 * group]);
    }
    return true;
}

/* ---- the functions ---- */

static int re_match(lua_State *L) {
    lua_settop(L, 5); /* optional arguments keep their index; what regex_get pushes goes above */
    size_t len, pattern_len;
    const char *subject = luaL_checklstring(L, 1, &len);
    const char *pattern = luaL_checklstring(L, 2, &pattern_len);
    struct re_options o = check_options(L, 3);
    size_t offset = check_init(L, 4);
    if (!lua_isnoneornil(L, 5)) luaL_checktype(L, 5, LUA_TTABLE);

    struct regex *re = regex_get(L, pattern, pattern_len, o);
    if (!re) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    struct match m;
    match_init(L, &m, re, subject, len);
    int rc = regex_exec(L, re, &m, offset, 0);
    if (rc <= 0) {
        lua_pushnil(L);
        if (rc == 0) return 1;
        push_error(L, rc);
        return 2;
    }
    update_ctx(L, 4, &m);
    push_captures(L, re, &m, lua_isnoneornil(L, 5) ? 0 : 5);
    return 1;
}

static int re_find(lua_State *L) {
    lua_settop(L, 5);
    size_t len, pattern_len;
    const char *subject = luaL_checklstring(L, 1, &len);
    const char *pattern = luaL_checklstring(L, 2, &pattern_len);
    struct re_options o = check_options(L, 3);
    size_t offset = check_init(L, 4);
    lua_Integer nth = luaL_optinteger(L, 5, 0);
    if (nth < 0) nth = 0;

    struct regex *re = regex_get(L, pattern, pattern_len, o);
    if (!re) {
        lua_pushnil(L);
        lua_pushnil(L);
        lua_pushvalue(L, -3);
        return 3;
    }
    struct match m;
    match_init(L, &m, re, subject, len);
    int rc = regex_exec(L, re, &m, offset, 0);
    if (rc <= 0) {
        lua_pushnil(L);
        if (rc == 0) return 1;
        lua_pushnil(L);
        push_error(L, rc);
        return 3;
    }
    update_ctx(L, 4, &m);
    if (nth >= (lua_Integer)re->groups) {
        lua_pushnil(L);
        lua_pushnil(L);
        lua_pushliteral(L, "nth out of bound");
        return 3;
    }
    if (!group_matched(&m, (uint32_t)nth)) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)m.ov[2 * nth] + 1);
    lua_pushinteger(L, (lua_Integer)m.ov[2 * nth + 1]);
    return 2;
}

/* Where a gmatch iterator stands; a plain userdata upvalue. */
struct gmatch_state {
    size_t pos;
    uint32_t options;
    bool done;
};

/* Upvalues: the cache, the regex, the subject, the state. */
static int gmatch_next(lua_State *L) {
    struct regex *re = lua_touserdata(L, lua_upvalueindex(2));
    size_t len;
    const char *subject = lua_tolstring(L, lua_upvalueindex(3), &len);
    struct gmatch_state *st = lua_touserdata(L, lua_upvalueindex(4));
    if (st->done) {
        lua_pushnil(L);
        return 1;
    }
    struct match m;
    match_init(L, &m, re, subject, len);
    int rc = regex_exec(L, re, &m, st->pos, st->options);
    if (rc <= 0) {
        st->done = true;
        lua_pushnil(L);
        if (rc == 0) return 1;
        push_error(L, rc);
        return 2;
    }
    st->options |= checked_options(re);
    size_t start = m.ov[0], end = m.ov[1];
    if (end != start)
        st->pos = end;
    else if (end < len)
        st->pos = next_start(re, &m, end);
    else
        st->done = true;
    push_captures(L, re, &m, 0);
    return 1;
}

static int re_gmatch(lua_State *L) {
    lua_settop(L, 3);
    size_t pattern_len;
    luaL_checkstring(L, 1);
    const char *pattern = luaL_checklstring(L, 2, &pattern_len);
    struct re_options o = check_options(L, 3);

    struct regex *re = regex_get(L, pattern, pattern_len, o);
    if (!re) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, -2);
    lua_pushvalue(L, 1);
    struct gmatch_state *st = lua_newuserdata(L, sizeof *st);
    memset(st, 0, sizeof *st);
    lua_pushcclosure(L, gmatch_next, 4);
    return 1;
}

/* Calls the replacement function with m's captures and adds what it returns to b. */
static void replace_with_function(lua_State *L, const struct regex *re, const struct match *m,
                                  luaL_Buffer *b) {
    lua_pushvalue(L, 3);
    push_captures(L, re, m, 0);
    lua_call(L, 1, 1);
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_error(L, "replacement function returned %s (string expected)", luaL_typename(L, -1));
    luaL_addvalue(b);
}

/* sub and gsub. After an empty match the search resumes one character on, as OpenResty does, so
 * "abc" with "x*" becomes "-a-b-c-". */
static int re_replace(lua_State *L, bool global) {
    lua_settop(L, 4);
    size_t len, pattern_len, template_len = 0;
    const char *subject = luaL_checklstring(L, 1, &len);
    const char *pattern = luaL_checklstring(L, 2, &pattern_len);
    const char *template = NULL;
    int replace_type = lua_type(L, 3);
    if (replace_type == LUA_TSTRING || replace_type == LUA_TNUMBER)
        template = lua_tolstring(L, 3, &template_len);
    else if (replace_type != LUA_TFUNCTION)
        luaL_typerror(L, 3, "string or function");
    struct re_options o = check_options(L, 4);

    struct regex *re = regex_get(L, pattern, pattern_len, o);
    if (!re || (template && !template_expand(template, template_len, re, NULL, NULL))) {
        if (re) lua_pushliteral(L, "failed to compile the replacement template");
        lua_pushnil(L);
        lua_pushnil(L);
        lua_pushvalue(L, -3);
        return 3;
    }

    struct match m;
    match_init(L, &m, re, subject, len);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t pos = 0, copied = 0;
    uint32_t options = 0;
    lua_Integer n = 0;
    for (;;) {
        int rc = regex_exec(L, re, &m, pos, options);
        if (rc == 0) break;
        if (rc < 0) {
            lua_pushnil(L);
            lua_pushnil(L);
            push_error(L, rc);
            return 3;
        }
        options |= checked_options(re);
        n++;
        size_t start = m.ov[0], end = m.ov[1];
        luaL_addlstring(&b, subject + copied, start - copied);
        if (template)
            template_expand(template, template_len, re, &m, &b);
        else
            replace_with_function(L, re, &m, &b);
        copied = pos = end;
        if (end == start) {
            if (end >= len) break;
            pos = next_start(re, &m, end);
        }
        if (!global) break;
    }
    if (n == 0) {
        lua_pushvalue(L, 1);
    } else {
        luaL_addlstring(&b, subject + copied, len - copied);
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

static int re_sub(lua_State *L) {
    return re_replace(L, false);
}

static int re_gsub(lua_State *L) {
    return re_replace(L, true);
}

void pdk_re_push(lua_State *L) {
    if (luaL_newmetatable(L, REGEX_META)) {
        lua_pushcfunction(L, regex_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);

    struct re_cache *c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    if (luaL_newmetatable(L, CACHE_META)) {
        lua_pushcfunction(L, cache_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_newtable(L);
    lua_setfenv(L, -2);

    c->match_context = pcre2_match_context_create(NULL);
    if (!c->match_context) luaL_error(L, "not enough memory");
    pcre2_set_match_limit(c->match_context, MATCH_LIMIT);
    pcre2_set_depth_limit(c->match_context, DEPTH_LIMIT);
    c->jit_stack = pcre2_jit_stack_create(JIT_STACK_MIN, JIT_STACK_MAX, NULL);
    if (c->jit_stack) pcre2_jit_stack_assign(c->match_context, NULL, c->jit_stack);

    static const luaL_Reg functions[] = {
        {"match", re_match}, {"find", re_find}, {"gmatch", re_gmatch},
        {"sub", re_sub},     {"gsub", re_gsub}, {NULL, NULL},
    };
    lua_createtable(L, 0, 5);
    for (const luaL_Reg *f = functions; f->name; f++) {
        lua_pushvalue(L, -2);
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, -2, f->name);
    }
    lua_remove(L, -2);
}
