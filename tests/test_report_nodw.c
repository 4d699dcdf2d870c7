/* The crash report tests in a build whose reports have no source lines,
 * as when the library is built without libdw (MPROC_WITH_DW=OFF): this
 * program defines the platform's source-line calls itself, from
 * debuginfo_none.c, so the static library's libdw-backed ones are never
 * linked in.  Reports must then name functions and modules as before. */
#define MPT_WITHOUT_LINES 1
#include "test_report.c"

#include "../src/platform/linux/debuginfo_none.c"
