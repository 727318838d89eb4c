/* pdk_codec: placeholder, being written. */
#ifndef WEIR_PDK_CODEC_H
#define WEIR_PDK_CODEC_H
#endif
