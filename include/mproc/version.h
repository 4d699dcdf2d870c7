/**
 * @file
 * mproc/version.h - the one source of the library's version.
 *
 * CMakeLists.txt reads these three numbers; the shared library's SOVERSION
 * is MP_VERSION_MAJOR, and the ABI only breaks when it changes.
 */
#ifndef MPROC_VERSION_H
#define MPROC_VERSION_H

/** The major version: the ABI (the shared library's SOVERSION) changes only with it. */
#define MP_VERSION_MAJOR 0
/** The minor version: grows with additions that keep the ABI. */
#define MP_VERSION_MINOR 1
/** The patch version: fixes only. */
#define MP_VERSION_PATCH 0

/** The version as one number, 0xMMmmpp, to compare against in `#if`. */
#define MP_VERSION_HEX ((MP_VERSION_MAJOR << 16) | (MP_VERSION_MINOR << 8) | MP_VERSION_PATCH)

#endif /* MPROC_VERSION_H */
