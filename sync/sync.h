// Everything in sync/ (Queue, Event, Semaphore, GreenPool, GreenPile,
// Timeout); included by green/green.h.
#ifndef GREEN_SYNC_SYNC_H_
#define GREEN_SYNC_SYNC_H_

#endif  // GREEN_SYNC_SYNC_H_
