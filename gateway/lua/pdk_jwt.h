/* pdk_jwt: placeholder, being written. */
#ifndef WEIR_PDK_JWT_H
#define WEIR_PDK_JWT_H
#endif
