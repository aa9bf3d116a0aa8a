// ReadinessPoller: a worker's own edge-triggered epoll set for green
// sockets, in the shape of Go's netpoll. Internal to greenrt.
//
// Why not Asio's reactor for every wait: an async_wait re-arms the fd with
// epoll_ctl(EPOLL_CTL_MOD) and allocates an operation on every wait -- on
// the echo benchmark one syscall in four. Here an fd is registered once,
// edge-triggered for both directions, when it first has to wait, and stays
// registered until it is closed. The poller counts the readiness edges of
// each direction in the fd's ReadinessSlot; a green thread that found the
// fd drained parks in the slot until the count moves past the value it saw
// before its syscall. No edge can be lost between the syscall and the park:
// an edge that came after the syscall started has moved the count.
//
// Where it runs: the worker drains the set without blocking whenever it
// polls its reactor (runtime/worker.h) and wakes the parked green threads
// there. While the worker is parked in io_context::run_one(), the epoll
// set's own descriptor sits in Asio's epoll set with one async_wait, re-armed
// only when it has fired: Asio stays the one place a worker sleeps, so a
// post, a resolver completion, a timer deadline or a socket wakes it alike.
// (An epoll set inside another is plain Linux since 2.6; an edge in the
// inner set wakes a sleeper on the outer one.)
//
// Slots are never freed, only recycled (with a new generation): an event
// already collected by epoll_wait for an fd that another thread is closing
// names a slot that stays valid memory, and its stale generation makes the
// poller drop it. The slot's lock orders the poller's count-and-wake against
// a waiter's register-and-recheck, and against recycling.
#ifndef GREEN_RUNTIME_READINESS_POLLER_H_
#define GREEN_RUNTIME_READINESS_POLLER_H_

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <atomic>
#include <cstdint>

#include "runtime/fiber.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"

namespace green::detail {

// The readiness of one registered fd. Index 0 is reading, 1 writing.
struct alignas(64) ReadinessSlot {
  // Edges seen per direction. Written by the poller under `lock`; read
  // lock-free by the fd's users (acquire, pairing with the poller's
  // release store, which happens after epoll reported the edge: a user
  // that sees the count move also finds what moved it in its syscall).
  std::atomic<std::uint32_t> edges[2] = {0, 0};
  // Set once the poller saw a hang-up, an error or urgent data: a short
  // read then no longer proves the receive queue empty (it may have stopped
  // at the FIN, the error or the urgent mark, with no edge to come).
  // Written before the count it came with (relaxed: that count's release
  // store publishes it), reset only by add().
  std::atomic<bool> exceptional{false};
  SpinLock lock;
  // Bumped when the slot is recycled; the epoll tag carries it.
  std::uint32_t generation GREEN_GUARDED_BY(lock) = 0;
  // The green thread parked for each direction (one reader, one writer at
  // most: IoHandle enforces it), and its park epoch.
  Fiber* waiter[2] GREEN_GUARDED_BY(lock) = {nullptr, nullptr};
  std::uint32_t waiter_epoch[2] GREEN_GUARDED_BY(lock) = {0, 0};
  // The slot's index in the process-wide table; fixed.
  std::uint32_t index = 0;
  // Free-list link, under the table's lock.
  std::uint32_t next_free = 0;

  // Parks nobody: registers `fiber` (in begin_park() epoch `epoch`) for
  // `direction` unless the edge count already differs from `seen`, in which
  // case it wakes the fiber at once (park() then returns right away).
  void arm(int direction, Fiber* fiber, std::uint32_t epoch,
           std::uint32_t seen) noexcept;
  // Withdraws `fiber` if it is still registered (it woke for another
  // reason: a deadline, an interrupt, a hook).
  void disarm(int direction, Fiber* fiber) noexcept;
  // Counts an edge in both directions and wakes whoever waits: used by
  // close(), so that blocked users return and see the handle closed.
  void wake_all() noexcept;
  // Under `lock`: counts an edge in `direction` and wakes its waiter, if
  // any; returns whether a green thread was woken.
  bool signal_locked(int direction) noexcept GREEN_REQUIRES(lock);
};

class ReadinessPoller {
 public:
  // Creates the epoll set and its entry in `io`'s reactor. Throws
  // std::system_error (EMFILE, ENOMEM) -- at worker start, not mid-run.
  explicit ReadinessPoller(asio::io_context& io);
  ~ReadinessPoller();
  ReadinessPoller(const ReadinessPoller&) = delete;
  ReadinessPoller& operator=(const ReadinessPoller&) = delete;

  // --- Any thread. ---
  // Registers `fd` (edge-triggered, reading and writing) with a fresh slot,
  // whose counts start at zero. Throws std::system_error if epoll refuses
  // the fd (a regular file: EPERM; ENOMEM), std::bad_alloc if no slot can
  // be made.
  ReadinessSlot* add(int fd);
  // Deregisters `fd` (before the caller closes it) and recycles the slot.
  // Nobody may be parked in the slot any more.
  void remove(int fd, ReadinessSlot* slot) noexcept;

  // --- The owning worker's thread only. ---
  // Collects the edges that are ready without blocking, counts them and
  // wakes their waiters (Fiber::wake, so onto this worker). Returns the
  // number of green threads woken.
  std::size_t poll() noexcept;
  // Before the worker sleeps in its io_context: makes sure that an edge on
  // any registered fd ends that sleep (one async_wait on the epoll set's
  // descriptor, if the last one has fired). False if that could not be
  // queued (out of memory): the worker must then sleep briefly, not long.
  bool prepare_to_park() noexcept;

 private:
  static constexpr int kEventsPerPoll = 128;

  int epoll_fd_;
  // Sockets registered now. poll() skips its epoll_wait while none is, so
  // workloads without sockets pay no syscall when a worker runs dry.
  // relaxed: a hint; a registration poll() misses is caught by the next
  // poll or by the async_wait that park() keeps on the set.
  std::atomic<std::size_t> registered_{0};
  asio::posix::stream_descriptor descriptor_;
  // An async_wait on descriptor_ is queued. Owner thread only.
  bool armed_ = false;
};

}  // namespace green::detail

#endif  // GREEN_RUNTIME_READINESS_POLLER_H_
