// IoHandle: one non-blocking file descriptor and its place in a worker's
// readiness poller -- the engine under every green socket (TCP, UDP, Unix,
// listeners, and the transport of TLS streams). Internal to net/.
//
// How a blocking-looking call works (read_some, say):
//   1. Try the syscall (recv) on the non-blocking fd. Data is usually there
//      or buffer space free: no poller, no allocation, no park.
//   2. On EAGAIN, wait(): register the fd with its home worker's
//      ReadinessPoller (runtime/readiness_poller.h; once, at its first wait,
//      edge-triggered for both directions), park the green thread in the
//      fd's slot, and let the poller wake it at the next readiness edge.
//   3. Retry the syscall. Wake-ups may be spurious (an edge that the
//      syscall before the park already consumed, a close): the syscall is
//      the only judge.
// Edge counts, not flags, make step 2 race-free: a caller that brackets its
// syscall with worth_trying()/note_drained() parks only until the count
// moves past the value it read *before* the syscall, so an edge that comes
// in between is never lost; a caller that does not (accept, UDP) gets Go's
// rule, one count consumed per wait, at worst one spurious retry. A short
// read from a TCP socket drained the receive queue (the kernel returns
// early only then, or at a FIN, an error or an urgent mark -- which the
// poller flags), so note_short_read() lets the next read park without the
// recv that would return EAGAIN (the edge-triggered set reports any byte
// that arrives later).
//
// Which poller owns the fd, and why migration is safe. The fd is registered
// with exactly one worker's poller, its "home": the one passed at
// construction (serve() spreads accepted clients round-robin over the
// workers), else the poller of the worker the green thread runs on at its
// first wait. It never moves. The green thread using it may migrate between
// workers at any park; that is safe because the slot's lock orders the
// poller's count-and-wake against the waiter's arm/disarm from any thread,
// and Fiber::wake(epoch) is thread-safe and a no-op for a stale epoch. The
// woken green thread is queued on the home worker, so it tends to run where
// its socket's events arrive.
//
// Users, and closing while others are blocked (after Go's fdMutex). The
// state word counts who is inside the fd: at most one reader, at most one
// writer (a second one is a std::logic_error, not a hang), any number of
// short control calls (addresses, options). close() may come from any green
// or OS thread at any time: it marks the handle closed and, if someone is
// inside, shuts the socket down and wakes the green threads parked in its
// poller slot (and they throw "closed"); the last one to leave then closes the
// fd. So an fd number is never closed -- and reused by another socket -- while
// a call may still pass it to the kernel. Destroying the handle while others
// use it is still a bug, as for any C++ object.
//
// Interrupts and deadlines: wait() parks with park_until(), so kill() and
// green::Timeout interrupt it and set_timeout() bounds it; either way the
// green thread leaves the slot (only its own direction) before the
// interrupt is rethrown or the timeout reported. Nothing was consumed, so
// the fd stays usable.
#ifndef GREEN_NET_IO_HANDLE_H_
#define GREEN_NET_IO_HANDLE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "runtime/fiber.h"
#include "runtime/park.h"
#include "runtime/readiness_poller.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"

namespace green::net::detail {

namespace rt = ::green::detail;
using rt::Deadline;

enum class Direction : std::uint8_t { kRead = 0, kWrite = 1 };

// Lets one green thread parked in IoHandle::wait() (or WakeHook::wait()) be
// woken by another, for a reason of its own: serve()'s acceptor uses it to
// hear "stop" and "a handler ended" while it waits in accept. A signal that
// comes while nobody is parked is kept until take() or the next wait.
class WakeHook {
 public:
  WakeHook() = default;
  WakeHook(const WakeHook&) = delete;
  WakeHook& operator=(const WakeHook&) = delete;

  // Any thread.
  void signal() noexcept;
  // Clears and returns the pending signal.
  bool take() noexcept;
  // Parks the calling green thread until signal() (consumed) or the
  // deadline; returns false on the deadline. Interruptible.
  bool wait(Deadline deadline);

  // --- For IoHandle::wait(): between begin_park() and park(). ---
  // Registers the parked fiber; wakes it at once if a signal is pending.
  void arm(rt::Fiber* fiber, std::uint32_t epoch) noexcept;
  void disarm() noexcept;

 private:
  rt::SpinLock lock_;
  rt::Fiber* fiber_ GREEN_GUARDED_BY(lock_) = nullptr;
  std::uint32_t epoch_ GREEN_GUARDED_BY(lock_) = 0;
  bool signalled_ GREEN_GUARDED_BY(lock_) = false;
};

class IoHandle {
 public:
  // Adopts `fd`, which must already be non-blocking (SOCK_NONBLOCK).
  // `kind` names the public type in messages ("TcpSocket"). `home`: the
  // poller to register with; nullptr: the first waiter's worker's.
  IoHandle(int fd, const char* kind,
           rt::ReadinessPoller* home = nullptr) noexcept;
  // Closes the fd. No other thread may be inside the handle any more.
  ~IoHandle();
  IoHandle(const IoHandle&) = delete;
  IoHandle& operator=(const IoHandle&) = delete;

  // Holds the read or write slot for one call. Throws std::logic_error if
  // another green thread holds it, std::system_error(EBADF) if closed.
  class Use {
   public:
    Use(IoHandle& io, Direction direction, const char* call);
    ~Use();
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;

   private:
    IoHandle& io_;
    const std::uint32_t bit_;
  };

  // A short call that never parks (options, addresses, shutdown): may run
  // beside a reader and a writer. Throws EBADF if closed.
  class Control {
   public:
    Control(IoHandle& io, const char* call);
    ~Control();
    Control(const Control&) = delete;
    Control& operator=(const Control&) = delete;

   private:
    IoHandle& io_;
  };

  // The fd; valid while a Use or Control is held.
  int fd() const noexcept { return fd_; }
  const char* kind() const noexcept { return kind_; }
  bool closed() const noexcept {
    // acquire: pairs with close()'s RMW, so a closer's shutdown is visible.
    return state_.load(std::memory_order_acquire) & kClosed;
  }

  // Inside a Use, before a syscall in `direction`: false if the last
  // attempt left the fd drained (note_drained) and no edge came since --
  // skip the syscall and wait() first. Else remembers the edge count for
  // note_drained() and returns true.
  bool worth_trying(Direction direction) noexcept;
  // After a syscall bracketed by worth_trying() that returned EAGAIN: the
  // next wait() parks until an edge after that syscall's start.
  void note_drained(Direction direction) noexcept;
  // After a read bracketed by worth_trying() that returned fewer bytes than
  // asked: note_drained(kRead) if this handle's reads prove that (TCP, see
  // set_short_reads_drain) and no hang-up, error or urgent data was seen.
  void note_short_read() noexcept;
  // Before the handle is shared, for a socket known to be plain TCP (made by
  // connect, accepted from such a listener, or checked at adopt): a short
  // read that did not reach a FIN, an error or urgent data left the receive
  // queue empty. Not for other protocols (a Unix stream read also stops at
  // passed descriptors) nor kernel TLS (it stops at control records). On a
  // listener: its accepted sockets are plain TCP.
  void set_short_reads_drain() noexcept { short_reads_drain_ = true; }
  bool short_reads_drain() const noexcept { return short_reads_drain_; }

  // Waits until the fd may be ready for `direction`, inside a Use. From a
  // green thread: parks (see the header comment); from a plain OS thread:
  // poll(2). Returns false if `deadline` passed first. Throws an interrupt
  // (kill, Timeout) after leaving the poller's slot, and EBADF if the handle
  // was closed meanwhile. `hook`, if given, can wake the wait (returns true).
  bool wait(Direction direction, Deadline deadline, const char* call,
            WakeHook* hook = nullptr);

  // Closes now, or -- if calls are inside -- wakes them and lets the last
  // one close. Idempotent; any thread.
  void close() noexcept;

  // The deadline for a call starting now, from set_timeout().
  Deadline deadline_from_now() const noexcept;
  void set_timeout(std::optional<std::chrono::nanoseconds> timeout) noexcept;
  std::optional<std::chrono::nanoseconds> timeout() const noexcept;

  // "green::net::<kind>::<call>".
  std::string describe(const char* call) const;
  [[noreturn]] void throw_timeout(const char* call) const;
  [[noreturn]] void throw_closed(const char* call) const;
  [[noreturn]] void throw_error(int error, const char* call) const;

 private:
  // state_ layout. Reader and writer slots, the closed flags, and a count
  // of control calls in the high bits.
  static constexpr std::uint32_t kReading = 1u << 0;
  static constexpr std::uint32_t kWriting = 1u << 1;
  static constexpr std::uint32_t kClosed = 1u << 2;
  static constexpr std::uint32_t kFdClosed = 1u << 3;  // final close done
  static constexpr int kControlShift = 8;
  static constexpr std::uint32_t kControlOne = 1u << kControlShift;
  static constexpr std::uint32_t kUsers =
      kReading | kWriting | ~(kControlOne - 1);
  static_assert(((kReading | kWriting | kClosed | kFdClosed) &
                 ~(kControlOne - 1)) == 0,
                "flags overlap the control count");

  // Leaves a slot (`released`: the bit or kControlOne subtracted); the last
  // one out of a closed handle closes the fd.
  void leave(std::uint32_t released) noexcept;
  void close_fd() noexcept;
  // The poller registration, created on first use.
  rt::ReadinessSlot& registration(const char* call);
  bool poll_wait(Direction direction, Deadline deadline);

  int fd_;
  const char* const kind_;
  rt::ReadinessPoller* const home_;
  std::atomic<std::uint32_t> state_{0};
  // Nanoseconds; negative: no timeout. Any thread may set it.
  std::atomic<std::int64_t> timeout_ns_{-1};

  rt::SpinLock registration_lock_;
  // Set (release) once registered; then fixed until the final close, which
  // only runs with no user inside. poller_ is written before slot_.
  std::atomic<rt::ReadinessSlot*> slot_{nullptr};
  rt::ReadinessPoller* poller_ = nullptr;
  // Per direction, touched only by the holder of that direction's slot
  // (Use's acquire/release hands them to the next holder): the edge count
  // a wait() parks on, the count read by the last worth_trying(), and
  // whether the last attempt left the fd drained.
  std::uint32_t seen_[2] = {0, 0};
  std::uint32_t attempt_[2] = {0, 0};
  bool drained_[2] = {false, false};
  bool short_reads_drain_ = false;  // set before the handle is shared
};

}  // namespace green::net::detail

#endif  // GREEN_NET_IO_HANDLE_H_
