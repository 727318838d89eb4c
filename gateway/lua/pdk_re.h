/* pdk_re: placeholder, being written. */
#ifndef WEIR_PDK_RE_H
#define WEIR_PDK_RE_H
#endif
