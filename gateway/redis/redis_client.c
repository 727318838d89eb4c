#include "redis/redis_client.h"
typedef int redis_client_placeholder;
