#include "lua/pdk_json.h"
typedef int pdk_json_placeholder;
