#include "http/error_response.h"

#include <stdio.h>

const char *http_reason_phrase(int status) {
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
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
