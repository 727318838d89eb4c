#include "lua/pdk_codec.h"
typedef int pdk_codec_placeholder;
