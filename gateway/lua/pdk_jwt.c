#include "lua/pdk_jwt.h"
typedef int pdk_jwt_placeholder;
