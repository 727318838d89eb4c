/* error_response: the bodies of gateway-made responses.
 *
 * Every response Weir makes itself is JSON {"message": ..., "request_id": ...}
 * with the matching status; this module knows the reason phrases and writes
 * the JSON (escaping the message). Pure functions; any thread. */
#ifndef WEIR_ERROR_RESPONSE_H
#define WEIR_ERROR_RESPONSE_H

#include <stddef.h>

const char *http_reason_phrase(int status);
/* Writes the JSON body into out (NUL-terminated); returns its length, or the
 * length it would have needed when cap is too small (like snprintf). */
size_t error_body_json(char *out, size_t cap, const char *message, const char *request_id);

#endif
