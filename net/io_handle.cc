// IoHandle and WakeHook: see io_handle.h for the design.
#include "net/io_handle.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <climits>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "net/errors.h"
#include "runtime/worker.h"

namespace green::net::detail {

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

IoHandle::IoHandle(int fd, const char* kind, rt::ReadinessPoller* home) noexcept
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
  if (rt::ReadinessSlot* slot = slot_.load(std::memory_order_acquire)) {
    // Leaves the home poller's set first: the fd number may be reused as
    // soon as it is closed.
    poller_->remove(fd_, slot);
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void IoHandle::close() noexcept {
  // Enter as a control user and mark the handle closed in one step, so the
  // fd stays open while we wake the users (the last one out closes it).
  std::uint32_t before = state_.load(std::memory_order_relaxed);
  // seq_cst: publishes kClosed to users that enter or check after us (they
  // load with acquire), orders our wake-up calls below after their entry,
  // and takes part in the store-buffer pattern with a first wait
  // (registration()), which acq_rel alone would not.
  while (!state_.compare_exchange_weak(before, (before | kClosed) + kControlOne,
                                       std::memory_order_seq_cst,
                                       std::memory_order_relaxed)) {
  }
  if (!(before & kClosed) && (before & kUsers)) {
    // Wake calls blocked inside: the kernel side (poll(2) users, and a
    // connection's peer sees the close now) and the poller side (green
    // threads parked in the slot). A wait that arms after this sees kClosed
    // itself (IoHandle::wait).
    ::shutdown(fd_, SHUT_RDWR);
    // seq_cst: the store-buffer pattern with a first wait (registration()).
    if (rt::ReadinessSlot* slot = slot_.load(std::memory_order_seq_cst)) {
      slot->wake_all();
    }
  }
  leave(kControlOne);
}

rt::ReadinessSlot& IoHandle::registration(const char* call) {
  // acquire: pairs with the release below; poller_ is set.
  if (rt::ReadinessSlot* slot = slot_.load(std::memory_order_acquire)) {
    return *slot;
  }
  std::lock_guard<rt::SpinLock> guard(registration_lock_);
  // relaxed: written only under registration_lock_, which we hold.
  if (rt::ReadinessSlot* slot = slot_.load(std::memory_order_relaxed)) {
    return *slot;
  }
  rt::ReadinessPoller& poller = home_ ? *home_ : rt::current_worker()->poller();
  rt::ReadinessSlot* slot;
  try {
    slot = poller.add(fd_);  // EPOLL_CTL_ADD, edge-triggered
  } catch (const std::system_error& e) {
    throw std::system_error(e.code(), describe(call) +
                                          ": cannot register the socket with "
                                          "the worker's poller");
  } catch (const std::bad_alloc&) {
    throw std::system_error(ENOMEM, std::system_category(),
                            describe(call) +
                                ": cannot register the socket with the "
                                "worker's poller (out of memory)");
  }
  poller_ = &poller;
  // seq_cst, not just release (which publishes poller_ and the slot): with
  // close() this is a store-buffer pattern -- we store slot_ then load
  // state_ (wait()), close() stores state_ then loads slot_ -- and only
  // seq_cst on all four promises that one of us sees the other, so a
  // first wait racing with close() is woken. (A shutdown edge would wake
  // TCP anyway; an unconnected UDP socket has none.)
  slot_.store(slot, std::memory_order_seq_cst);
  return *slot;
}

bool IoHandle::worth_trying(Direction direction) noexcept {
  // acquire: pairs with the release in registration().
  rt::ReadinessSlot* slot = slot_.load(std::memory_order_acquire);
  if (!slot) return true;  // never waited: nothing known
  const int index = static_cast<int>(direction);
  // acquire: pairs with the poller's release store of the count; the
  // syscall after this then finds what the counted edges reported.
  const std::uint32_t edges =
      slot->edges[index].load(std::memory_order_acquire);
  if (drained_[index] && edges == seen_[index]) return false;
  attempt_[index] = edges;
  drained_[index] = false;
  return true;
}

void IoHandle::note_drained(Direction direction) noexcept {
  // relaxed: only whether worth_trying() recorded a count matters, and it
  // did so on this thread (or the Use hand-off published it).
  if (!slot_.load(std::memory_order_relaxed)) return;
  const int index = static_cast<int>(direction);
  seen_[index] = attempt_[index];
  drained_[index] = true;
}

void IoHandle::note_short_read() noexcept {
  if (!short_reads_drain_) return;
  // relaxed: worth_trying()'s acquire load of the count synchronised with
  // the poller's store that published any flag that count came with; a
  // flag set later comes with a later count, which ends the wait anyway.
  rt::ReadinessSlot* slot = slot_.load(std::memory_order_relaxed);
  if (!slot || slot->exceptional.load(std::memory_order_relaxed)) return;
  note_drained(Direction::kRead);
}

bool IoHandle::wait(Direction direction, Deadline deadline, const char* call,
                    WakeHook* hook) {
  const int index = static_cast<int>(direction);
  rt::Fiber* fiber = rt::current_fiber();
  if (!fiber) {
    const bool ready = poll_wait(direction, deadline);
    // poll(2) looked at the fd itself: let the next syscall try, whatever
    // the poller has counted so far.
    drained_[index] = false;
    if (closed()) throw_closed(call);
    return ready;
  }
  rt::ReadinessSlot& slot = registration(call);
  const std::uint32_t epoch = fiber->begin_park();  // throws an interrupt
  // Sleeps unless an edge came after seen_ (then park() returns at once).
  slot.arm(index, fiber, epoch, seen_[index]);
  // close() wakes the armed; we may have armed just after it. seq_cst: see
  // registration().
  if (state_.load(std::memory_order_seq_cst) & kClosed) {
    fiber->wake(epoch, rt::WakeReason::kNotified, false);
  }
  if (hook) hook->arm(fiber, epoch);
  const rt::WakeReason reason = rt::park_until(fiber, epoch, deadline);
  if (hook) hook->disarm();
  // Whoever woke us, leave the slot: only our direction.
  slot.disarm(index, fiber);
  // Consumes the edges counted so far: the caller's next syscall sees what
  // they reported. acquire: as in worth_trying().
  seen_[index] = slot.edges[index].load(std::memory_order_acquire);
  drained_[index] = false;
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
