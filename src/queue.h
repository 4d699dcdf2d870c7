/*
 * queue.h - the queue's internal side (queue.c): watching a queue for data
 * without taking its get lock, for waits on many things (wait.c).
 */
#ifndef MP__QUEUE_H
#define MP__QUEUE_H

#include "base.h"

/* Longest single sleep on a queue's words: a process may die between its
 * commit and the wake-up it owed (queue.c, DESIGN). */
#define MP__QUEUE_RECHECK_NS 100000000LL

/* Counts the caller as a watcher of q's data and returns the word to
 * sleep on: read its value, then check mp__queue_readable(), then sleep
 * while the word keeps that value; a put or a close changes it.
 * mp__queue_unwatch() ends the watch. */
_Atomic uint32_t *mp__queue_watch(mp_queue *q);
void mp__queue_unwatch(mp_queue *q);

/* Whether a get would not wait: a message is there, or q is closed. */
bool mp__queue_readable(const mp_queue *q);

#endif /* MP__QUEUE_H */
