#include "http/error_response.h"

#include <stdio.h>

/* The IANA HTTP status code registry's reason phrases (RFC 9110 and its companions), plus 418:
 * plugins may answer with any status. */
static const struct {
    int status;
    const char *phrase;
} phrases[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {102, "Processing"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {207, "Multi-Status"},
    {208, "Already Reported"},
    {226, "IM Used"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {305, "Use Proxy"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {418, "I'm a teapot"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {423, "Locked"},
    {424, "Failed Dependency"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {451, "Unavailable For Legal Reasons"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {506, "Variant Also Negotiates"},
    {507, "Insufficient Storage"},
    {508, "Loop Detected"},
    {510, "Not Extended"},
    {511, "Network Authentication Required"},
};

const char *http_reason_phrase(int status) {
    size_t lo = 0, hi = sizeof phrases / sizeof phrases[0];
    while (lo < hi) { /* sorted by status */
        size_t mid = (lo + hi) / 2;
        if (phrases[mid].status == status) return phrases[mid].phrase;
        if (phrases[mid].status < status)
            lo = mid + 1;
        else
            hi = mid;
    }
    return "Unknown";
}

size_t error_body_json(char *out, size_t cap, const char *message, const char *request_id) {
    size_t n = 0;
#define PUT(ch)                                                                                    \
    do {                                                                                           \
        if (n + 1 < cap) out[n] = (ch);                                                            \
        n++;                                                                                       \
    } while (0)
    const char *prefix = "{\"message\":\"";
    for (const char *p = prefix; *p; p++)
        PUT(*p);
    for (const char *p = message; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            PUT('\\');
            PUT((char)ch);
        } else if (ch < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            for (char *e = esc; *e; e++)
                PUT(*e);
        } else {
            PUT((char)ch);
        }
    }
    const char *mid = "\",\"request_id\":\"";
    for (const char *p = mid; *p; p++)
        PUT(*p);
    for (const char *p = request_id; *p; p++)
        PUT(*p); /* validated: no escaping needed */
    PUT('"');
    PUT('}');
#undef PUT
    if (cap) out[n < cap ? n : cap - 1] = '\0';
    return n;
}
