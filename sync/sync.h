// Everything in sync/ (Queue, Event, Semaphore, Lock, Condition, GreenPool,
// GreenPile, Timeout); included by green/green.h. See sync/README.md.
//
// Every type here works from green threads on any worker and from plain OS
// threads (a green thread that waits parks and its worker runs others; an
// OS thread blocks), wakes waiters in FIFO order, and stays consistent when
// a waiter is killed or times out. Timeout alone is for green threads only.
//
// One idiom throughout: an operation that can fail without blocking says so
// in its return value (empty std::optional, false) -- never by throwing
// QueueEmpty/QueueFull-style exceptions. Usage errors (Eventlet's asserts:
// sending an Event twice, releasing a BoundedSemaphore too often, waitall()
// from inside the pool, ...) throw std::logic_error; bad arguments throw
// std::invalid_argument.
#ifndef GREEN_SYNC_SYNC_H_
#define GREEN_SYNC_SYNC_H_

#include "sync/condition.h"
#include "sync/event.h"
#include "sync/green_pile.h"
#include "sync/green_pool.h"
#include "sync/lock.h"
#include "sync/queue.h"
#include "sync/semaphore.h"
#include "sync/timeout.h"

#endif  // GREEN_SYNC_SYNC_H_
