// IoHandle: one non-blocking file descriptor and its place in a worker's
// reactor -- the engine under every green socket (TCP, UDP, Unix, listeners,
// and the transport of TLS streams). Internal to net/.
//
// How a blocking-looking call works (read_some, say):
//   1. Try the syscall (recv) on the non-blocking fd. Data is usually there
//      or buffer space free: no reactor, no allocation, no park.
//   2. On EAGAIN, wait(): register interest with Asio's reactor
//      (async_wait(wait_read) on a posix::stream_descriptor bound to the fd),
//      park the green thread, and let the handler do nothing but wake it.
//   3. Retry the syscall. Wake-ups may be spurious (the other direction's
//      cancellation, a close, a readiness edge that another thread consumed):
//      the syscall is the only judge.
//
// Which io_context owns the fd, and why migration is safe. The fd is
// registered (epoll_ctl ADD, lazily at the first EAGAIN) with exactly one
// worker's io_context, its "home": the one passed at construction (serve()
// spreads accepted clients round-robin over the workers), else the reactor
// of the worker the green thread runs on at its first wait. It never moves.
// The green thread using it may migrate between workers at any park; that is
// safe because
//   * async_wait() and per-operation cancellation may be called from any
//     thread: Asio's epoll reactor guards each descriptor's op queues with a
//     mutex and the io_context's scheduler with another (the workers' hint 1
//     keeps that locking on); we only ever *read* the descriptor object's
//     state from two threads at once, after registration() set it up under
//     our lock (non_blocking(true) there, so no async_wait writes it);
//   * the completion handler runs on the home worker and only calls
//     Fiber::wake(epoch) -- thread-safe, and a no-op for a stale epoch -- so
//     the green thread is queued on the home worker and tends to run where
//     its socket's events arrive;
//   * a FiberRef in the handler keeps the Fiber alive for a late completion.
// Edge-triggered epoll cannot lose the wake-up between our EAGAIN and the
// registration: for a non-speculative op Asio re-arms the fd with
// EPOLL_CTL_MOD when it queues the op, and the kernel then reports the fd
// if it is already ready.
//
// Users, and closing while others are blocked (after Go's fdMutex). The
// state word counts who is inside the fd: at most one reader, at most one
// writer (a second one is a std::logic_error, not a hang), any number of
// short control calls (addresses, options). close() may come from any green
// or OS thread at any time: it marks the handle closed and, if someone is
// inside, shuts the socket down and cancels the reactor waits so they wake
// (and throw "closed"); the last one to leave then closes the fd. So an fd
// number is never closed -- and reused by another socket -- while a call
// may still pass it to the kernel. Destroying the handle while others use
// it is still a bug, as for any C++ object.
//
// Interrupts and deadlines: wait() parks with park_until(), so kill() and
// green::Timeout interrupt it and set_timeout() bounds it; either way the
// pending async_wait is cancelled (only it: per-operation cancellation
// keeps the other direction's wait) before the interrupt is rethrown or
// the timeout reported. Nothing was consumed, so the fd stays usable.
#ifndef GREEN_NET_IO_HANDLE_H_
#define GREEN_NET_IO_HANDLE_H_

#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "runtime/fiber.h"
#include "runtime/park.h"
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
  // reactor to register with; nullptr: the first waiter's worker.
  IoHandle(int fd, const char* kind, asio::io_context* home = nullptr) noexcept;
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

  // Waits until the fd may be ready for `direction`, inside a Use. From a
  // green thread: parks (see the header comment); from a plain OS thread:
  // poll(2). Returns false if `deadline` passed first. Throws an interrupt
  // (kill, Timeout) after cancelling the wait, and EBADF if the handle was
  // closed meanwhile. `hook`, if given, can wake the wait (returns true).
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
  // The reactor registration, created on first use.
  asio::posix::stream_descriptor& registration(const char* call);
  bool poll_wait(Direction direction, Deadline deadline);

  int fd_;
  const char* const kind_;
  asio::io_context* const home_;
  std::atomic<std::uint32_t> state_{0};
  // Nanoseconds; negative: no timeout. Any thread may set it.
  std::atomic<std::int64_t> timeout_ns_{-1};

  rt::SpinLock registration_lock_;
  // Set (release) once reactor_ is constructed; then read-only until the
  // final close, which only runs with no user inside.
  std::atomic<bool> registered_{false};
  // Constructed under registration_lock_ (not GUARDED_BY: read lock-free
  // once registered_ is set).
  std::optional<asio::posix::stream_descriptor> reactor_;
  // Per-direction cancellation of the pending async_wait; each touched
  // only by the holder of that direction's slot.
  asio::cancellation_signal cancel_[2];
};

}  // namespace green::net::detail

#endif  // GREEN_NET_IO_HANDLE_H_
