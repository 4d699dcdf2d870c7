/*
 * internal.h - every module's internal header at once, never installed.
 *
 * For the tests, and for code that has not yet moved to including the
 * headers of exactly the modules it uses, as a module of the library does
 * (so that scripts/check_module_graph.py sees what it depends on).  Each
 * module's declarations live in its own header, src/<module>.h; the test
 * hooks are in testhooks.h, which this file does not include.
 */
#ifndef MPROC_INTERNAL_H
#define MPROC_INTERNAL_H

#include "base.h"

#include "arena.h"
#include "boot.h"
#include "child.h"
#include "fnref.h"
#include "forkserver.h"
#include "forkserverd.h"
#include "future.h"
#include "log.h"
#include "process.h"
#include "queue.h"
#include "report.h"
#include "request.h"
#include "self.h"
#include "shutdown.h"
#include "shutdown_event.h"
#include "startmethod.h"
#include "sync.h"
#include "tracker.h"
#include "trackerd.h"

#endif /* MPROC_INTERNAL_H */
