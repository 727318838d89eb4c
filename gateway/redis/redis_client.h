/* redis_client: placeholder, being written. */
#ifndef WEIR_REDIS_CLIENT_H
#define WEIR_REDIS_CLIENT_H
#endif
