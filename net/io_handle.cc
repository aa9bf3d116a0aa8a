// IoHandle and WakeHook: see io_handle.h for the design.
#include "net/io_handle.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/bind_cancellation_slot.hpp>
#include <cassert>
#include <cerrno>
#include <climits>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "net/errors.h"
#include "runtime/worker.h"

namespace green::net::detail {
namespace {

// Completion handler of a readiness wait. It runs on the home worker, inside
// io_context::run_one()/poll(), so it must not resume the green thread: it
// only makes it runnable. A stale epoch (the green thread already woke for a
// deadline, an interrupt or a hook) makes wake() a no-op.
struct ReadyHandler {
  rt::FiberRef fiber;
  std::uint32_t epoch;
  void operator()(const asio::error_code&) const noexcept {
    fiber->wake(epoch, rt::WakeReason::kNotified, /*as_next=*/false);
  }
};

}  // namespace

// --- WakeHook ---

void WakeHook::signal() noexcept {
  std::lock_guard<rt::SpinLock> guard(lock_);
  signalled_ = true;
  if (fiber_) {
    fiber_->wake(epoch_, rt::WakeReason::kNotified, false);
    fiber_ = nullptr;
  }
}

bool WakeHook::take() noexcept {
  std::lock_guard<rt::SpinLock> guard(lock_);
  return std::exchange(signalled_, false);
}

void WakeHook::arm(rt::Fiber* fiber, std::uint32_t epoch) noexcept {
  std::lock_guard<rt::SpinLock> guard(lock_);
  if (signalled_) {
    // Still kParking: the wake makes park() return right after the switch.
    fiber->wake(epoch, rt::WakeReason::kNotified, false);
    return;
  }
  fiber_ = fiber;
  epoch_ = epoch;
}

void WakeHook::disarm() noexcept {
  std::lock_guard<rt::SpinLock> guard(lock_);
  fiber_ = nullptr;
}

bool WakeHook::wait(Deadline deadline) {
  rt::Fiber* fiber = rt::current_fiber();
  if (!fiber) {
    throw std::logic_error(
        "green::net: WakeHook::wait called outside a green thread");
  }
  if (take()) return true;
  const std::uint32_t epoch = fiber->begin_park();
  arm(fiber, epoch);
  const rt::WakeReason reason = rt::park_until(fiber, epoch, deadline);
  disarm();
  if (reason == rt::WakeReason::kInterrupted) fiber->throw_if_interrupted();
  return take();
}

// --- IoHandle ---

IoHandle::IoHandle(int fd, const char* kind, asio::io_context* home) noexcept
    : fd_(fd), kind_(kind), home_(home) {}

IoHandle::~IoHandle() {
  close();
  // relaxed: a debug check only; users inside now would be a caller's bug.
  assert((state_.load(std::memory_order_relaxed) & kUsers) == 0 &&
         "green::net: socket destroyed while another thread uses it");
}

IoHandle::Use::Use(IoHandle& io, Direction direction, const char* call)
    : io_(io), bit_(direction == Direction::kRead ? kReading : kWriting) {
  // acquire: pairs with the release half of leave(), so whatever the
  // previous holder of this slot wrote (buffers, TLS state) is visible.
  const std::uint32_t before =
      io.state_.fetch_or(bit_, std::memory_order_acquire);
  if (before & bit_) {
    // Not ours to clear: the other green thread holds the slot.
    throw std::logic_error(
        io.describe(call) + ": another green thread is already " +
        (direction == Direction::kRead ? "reading from" : "writing to") +
        " this socket; one reader and one writer may use a socket at once "
        "(full duplex), never two of either");
  }
  if (before & kClosed) {
    io.leave(bit_);
    io.throw_closed(call);
  }
}

IoHandle::Use::~Use() { io_.leave(bit_); }

IoHandle::Control::Control(IoHandle& io, const char* call) : io_(io) {
  // acquire: as in Use.
  const std::uint32_t before =
      io.state_.fetch_add(kControlOne, std::memory_order_acquire);
  if (before & kClosed) {
    io.leave(kControlOne);
    io.throw_closed(call);
  }
}

IoHandle::Control::~Control() { io_.leave(kControlOne); }

void IoHandle::leave(std::uint32_t released) noexcept {
  // acq_rel: the release half publishes this call's writes to the next
  // holder (pairs with the acquire in Use/Control); the acquire half lets
  // whoever ends up closing the fd see every earlier user's writes.
  std::uint32_t after;
  if (released == kControlOne) {
    after =
        state_.fetch_sub(kControlOne, std::memory_order_acq_rel) - kControlOne;
  } else {
    after = state_.fetch_and(~released, std::memory_order_acq_rel) & ~released;
  }
  if ((after & kClosed) && !(after & kUsers)) close_fd();
}

void IoHandle::close_fd() noexcept {
  // acq_rel: exactly one caller gets past this (several may see "closed
  // and empty" in turn); it sees the others' writes.
  if (state_.fetch_or(kFdClosed, std::memory_order_acq_rel) & kFdClosed) {
    return;
  }
  // acquire: pairs with the release in registration().
  if (registered_.load(std::memory_order_acquire)) {
    // Deregisters from the home reactor (EPOLL_CTL_DEL, then ::close); Asio
    // guards the reactor's structures, so any thread may do it.
    asio::error_code ignored;
    reactor_->close(ignored);
  } else if (fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = -1;
}

void IoHandle::close() noexcept {
  // Enter as a control user and mark the handle closed in one step, so the
  // fd stays open while we wake the users (the last one out closes it).
  std::uint32_t before = state_.load(std::memory_order_relaxed);
  // acq_rel: publishes kClosed to users that enter or check after us (they
  // load with acquire); the acquire half orders our wake-up calls below
  // after their registration, which went through the same RMW chain.
  while (!state_.compare_exchange_weak(before, (before | kClosed) + kControlOne,
                                       std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
  }
  if (!(before & kClosed) && (before & kUsers)) {
    // Wake calls blocked inside: the kernel side (poll(2) users, and a
    // connection's peer sees the close now) and the reactor side (queued
    // async_waits complete with operation_aborted). A wait queued after
    // this cancel sees kClosed itself (IoHandle::wait).
    ::shutdown(fd_, SHUT_RDWR);
    std::lock_guard<rt::SpinLock> guard(registration_lock_);
    if (reactor_) {
      asio::error_code ignored;
      reactor_->cancel(ignored);
    }
  }
  leave(kControlOne);
}

asio::posix::stream_descriptor& IoHandle::registration(const char* call) {
  // acquire: pairs with the release below; reactor_ is fully constructed.
  if (registered_.load(std::memory_order_acquire)) return *reactor_;
  std::lock_guard<rt::SpinLock> guard(registration_lock_);
  if (!reactor_) {
    asio::io_context& io = home_ ? *home_ : rt::current_worker()->io();
    reactor_.emplace(io);
    asio::error_code error;
    reactor_->assign(fd_, error);  // EPOLL_CTL_ADD on the home reactor
    if (!error) {
      // Sets Asio's own non-blocking flags once, here, under our lock: later
      // async_waits (from the reader and the writer, on any thread) then
      // only read the descriptor's state and never write it.
      reactor_->non_blocking(true, error);
      if (error) reactor_->release();  // hand the fd back, still open
    }
    if (error) {
      reactor_.reset();
      throw std::system_error(error, describe(call) +
                                         ": cannot register the socket with "
                                         "the worker's reactor");
    }
    registered_.store(true, std::memory_order_release);
  }
  return *reactor_;
}

bool IoHandle::wait(Direction direction, Deadline deadline, const char* call,
                    WakeHook* hook) {
  rt::Fiber* fiber = rt::current_fiber();
  if (!fiber) {
    const bool ready = poll_wait(direction, deadline);
    if (closed()) throw_closed(call);
    return ready;
  }
  asio::posix::stream_descriptor& reactor = registration(call);
  const int index = static_cast<int>(direction);
  const std::uint32_t epoch = fiber->begin_park();  // throws an interrupt
  bool queued = false;
  try {
    reactor.async_wait(
        direction == Direction::kRead
            ? asio::posix::descriptor_base::wait_read
            : asio::posix::descriptor_base::wait_write,
        asio::bind_cancellation_slot(cancel_[index].slot(),
                                     ReadyHandler{rt::FiberRef(fiber), epoch}));
    queued = true;
  } catch (...) {
    // Out of memory: do not sleep; the caller retries the syscall.
  }
  // close() cancels queued waits; ours may have been queued just after.
  if (!queued || closed()) {
    fiber->wake(epoch, rt::WakeReason::kNotified, false);
  }
  if (hook) hook->arm(fiber, epoch);
  const rt::WakeReason reason = rt::park_until(fiber, epoch, deadline);
  if (hook) hook->disarm();
  if (queued && (reason != rt::WakeReason::kNotified || hook)) {
    // Withdraw our async_wait -- only ours: per-operation cancellation
    // leaves the other direction's wait queued. If it already completed,
    // this finds nothing and its late handler is a stale wake.
    cancel_[index].emit(asio::cancellation_type::terminal);
  }
  if (reason == rt::WakeReason::kInterrupted) fiber->throw_if_interrupted();
  if (closed()) throw_closed(call);
  return reason != rt::WakeReason::kTimedOut;
}

bool IoHandle::poll_wait(Direction direction, Deadline deadline) {
  pollfd entry{};
  entry.fd = fd_;
  entry.events = direction == Direction::kRead ? POLLIN : POLLOUT;
  int timeout_ms = -1;
  if (deadline) {
    const auto left = *deadline - std::chrono::steady_clock::now();
    if (left <= left.zero()) return false;
    timeout_ms = static_cast<int>(std::min<std::int64_t>(
        std::chrono::ceil<std::chrono::milliseconds>(left).count(), INT_MAX));
  }
  if (::poll(&entry, 1, timeout_ms) == 0) {
    return !deadline || std::chrono::steady_clock::now() < *deadline;
  }
  return true;  // ready, an error for the syscall to report, or EINTR
}

Deadline IoHandle::deadline_from_now() const noexcept {
  // relaxed: a setting, not a synchronisation point.
  const std::int64_t ns = timeout_ns_.load(std::memory_order_relaxed);
  if (ns < 0) return std::nullopt;
  return std::chrono::steady_clock::now() + std::chrono::nanoseconds(ns);
}

void IoHandle::set_timeout(
    std::optional<std::chrono::nanoseconds> timeout) noexcept {
  // relaxed: see deadline_from_now().
  timeout_ns_.store(timeout ? std::max<std::int64_t>(timeout->count(), 0) : -1,
                    std::memory_order_relaxed);
}

std::optional<std::chrono::nanoseconds> IoHandle::timeout() const noexcept {
  const std::int64_t ns = timeout_ns_.load(std::memory_order_relaxed);
  if (ns < 0) return std::nullopt;
  return std::chrono::nanoseconds(ns);
}

std::string IoHandle::describe(const char* call) const {
  return std::string("green::net::") + kind_ + "::" + call;
}

void IoHandle::throw_timeout(const char* call) const {
  const auto limit = timeout().value_or(std::chrono::nanoseconds(0));
  throw TimeoutError(
      describe(call) + ": timed out after " +
      std::to_string(
          std::chrono::duration_cast<std::chrono::milliseconds>(limit)
              .count()) +
      " ms (set_timeout); nothing was lost, the socket stays usable");
}

void IoHandle::throw_closed(const char* call) const {
  throw std::system_error(EBADF, std::system_category(),
                          describe(call) + ": the socket is closed");
}

void IoHandle::throw_error(int error, const char* call) const {
  throw_errno(error, describe(call));
}

}  // namespace green::net::detail
