/* pdk_json: placeholder, being written. */
#ifndef WEIR_PDK_JSON_H
#define WEIR_PDK_JSON_H
#endif
