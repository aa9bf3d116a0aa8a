// Event<T>: a one-shot result that any number of waiters receive (Eventlet's
// eventlet.event.Event). Event<void> carries no value.
//
//   green::Event<int> done;
//   green::spawn([&] { done.send(42); });
//   int v = done.wait();                   // every waiter gets 42
//   std::optional<int> w = done.wait(10ms);  // empty if not sent in time
//
// send() and send_exception() wake every current waiter; later waiters
// return at once until reset(). Sending twice without reset(), or reset()
// before anything was sent, is a usage error: std::logic_error (Eventlet
// asserts both). Any thread may send and wait; a green thread parks, an OS
// thread blocks. wait() is a blocking point (kill(), green::Timeout).
//
// Design. The result (value or exception) is published as one immutable
// shared object. send() stores it and, under the lock, hands a reference
// to each waiter through its Waiter payload before it notifies it; a woken
// waiter reads only that reference and never touches the event again, so
// an event may be destroyed once send() returned and its waiters woke
// (as a std::condition_variable may be destroyed once notified). So a waiter
// woken by a send() gets that send's result even if reset() and another send()
// happen before it runs, and copying the value happens outside the lock, in the
// waiter.
//
// Invariants (under lock_): result_ == nullptr <=> not ready; waiters_ is
// empty whenever result_ != nullptr (send() wakes them all).
#ifndef GREEN_SYNC_EVENT_H_
#define GREEN_SYNC_EVENT_H_

#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "runtime/park.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"
#include "runtime/wait_list.h"
#include "sync/deadline.h"
#include "sync/spin_guard.h"

namespace green {
namespace detail {

// The state shared by Event<T> and Event<void>. Result is what send()
// publishes: {std::exception_ptr error; ...value}.
template <typename Result>
class EventCore {
 public:
  using ResultPtr = std::shared_ptr<const Result>;

  void publish(ResultPtr result, const char* call) {
    SpinGuard guard(lock_);
    if (result_) {
      throw std::logic_error(std::string(call) +
                             ": the event was already sent; call reset() "
                             "before sending again");
    }
    result_ = std::move(result);
    while (Waiter* waiter = waiters_.pop_front()) {
      // Hand the result over BEFORE notify(): a notified waiter returns
      // without taking lock_ again (block_on_handoff), so the event may be
      // destroyed as soon as its last waiter has it. A waiter that is
      // leaving (timed out, interrupted) gets nothing.
      auto* handed = static_cast<ResultPtr*>(waiter->payload);
      *handed = result_;
      // notify(false): a broadcast, not a message to one receiver.
      if (!waiter->notify(false)) handed->reset();
    }
  }

  // The result, or nullptr once `deadline` passed.
  ResultPtr wait(Deadline deadline) {
    SpinUniqueLock lock(lock_);
    for (;;) {
      if (result_) return result_;
      if (expired(deadline)) return nullptr;
      ResultPtr handed;
      Waiter waiter;
      waiter.payload = &handed;
      if (block_on_handoff(waiters_, lock.get(), waiter, deadline) ==
          WakeReason::kNotified) {
        return handed;  // lock_ released: the event is not touched again
      }
    }
  }

  ResultPtr peek() const {
    SpinGuard guard(lock_);
    return result_;
  }

  void reset() {
    SpinGuard guard(lock_);
    if (!result_) {
      throw std::logic_error(
          "green::Event::reset: nothing was sent since construction or the "
          "last reset()");
    }
    result_.reset();
  }

  std::size_t waiting() const {
    SpinGuard guard(lock_);
    return waiters_.size();
  }

 private:
  mutable SpinLock lock_;
  ResultPtr result_ GREEN_GUARDED_BY(lock_);
  WaitList waiters_ GREEN_GUARDED_BY(lock_);  // payload: ResultPtr*
};

template <typename T>
struct EventResult {
  std::exception_ptr error;
  std::optional<T> value;
};

}  // namespace detail

template <typename T>
class Event {
 public:
  static_assert(std::is_copy_constructible_v<T>,
                "green::Event<T>: every waiter gets a copy, so T must be "
                "copyable (use std::shared_ptr<U> for a move-only U)");

  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Makes the event ready with `value` and wakes every waiter. Throws
  // std::logic_error if it was sent already (reset() first).
  void send(T value) {
    auto result = std::make_shared<Result>();
    result->value.emplace(std::move(value));
    core_.publish(std::move(result), "green::Event::send");
  }
  // Makes every waiter (current and later, until reset()) throw `error`.
  void send_exception(std::exception_ptr error) {
    auto result = std::make_shared<Result>();
    result->error = std::move(error);
    core_.publish(std::move(result), "green::Event::send_exception");
  }
  template <typename E>
  void send_exception(E error) {
    send_exception(std::make_exception_ptr(std::move(error)));
  }

  // Blocks until sent; returns (a copy of) the value or throws the sent
  // exception.
  T wait() { return unpack(core_.wait(std::nullopt)); }
  // Waits at most `timeout`; empty if the event was not sent in time.
  std::optional<T> wait(std::chrono::nanoseconds timeout) {
    auto result = core_.wait(detail::deadline_after(timeout));
    if (!result) return std::nullopt;
    return unpack(std::move(result));
  }

  bool ready() const { return core_.peek() != nullptr; }
  bool has_value() const {
    auto result = core_.peek();
    return result && !result->error;
  }
  bool has_exception() const {
    auto result = core_.peek();
    return result && result->error;
  }
  // Makes the event sendable again. Throws std::logic_error if it was not
  // sent. Waiters already woken keep the result they were handed.
  void reset() { core_.reset(); }
  // How many callers are blocked in wait().
  std::size_t waiting() const { return core_.waiting(); }

 private:
  using Result = detail::EventResult<T>;
  static T unpack(std::shared_ptr<const Result> result) {
    if (result->error) std::rethrow_exception(result->error);
    return *result->value;
  }
  detail::EventCore<Result> core_;
};

template <>
class Event<void> {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void send() {
    core_.publish(std::make_shared<Result>(), "green::Event::send");
  }
  void send_exception(std::exception_ptr error) {
    auto result = std::make_shared<Result>();
    result->error = std::move(error);
    core_.publish(std::move(result), "green::Event::send_exception");
  }
  template <typename E>
  void send_exception(E error) {
    send_exception(std::make_exception_ptr(std::move(error)));
  }

  void wait() { unpack(core_.wait(std::nullopt)); }
  // Returns false if the event was not sent within `timeout`.
  bool wait(std::chrono::nanoseconds timeout) {
    auto result = core_.wait(detail::deadline_after(timeout));
    if (!result) return false;
    unpack(std::move(result));
    return true;
  }

  bool ready() const { return core_.peek() != nullptr; }
  bool has_value() const {
    auto result = core_.peek();
    return result && !result->error;
  }
  bool has_exception() const {
    auto result = core_.peek();
    return result && result->error;
  }
  void reset() { core_.reset(); }
  std::size_t waiting() const { return core_.waiting(); }

 private:
  struct Result {
    std::exception_ptr error;
  };
  static void unpack(std::shared_ptr<const Result> result) {
    if (result->error) std::rethrow_exception(result->error);
  }
  detail::EventCore<Result> core_;
};

}  // namespace green

#endif  // GREEN_SYNC_EVENT_H_
