#include "lua/pdk_re.h"
typedef int pdk_re_placeholder;
