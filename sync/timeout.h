// Timeout: abandon a block of code that takes too long (Eventlet's
// eventlet.Timeout, with_timeout).
//
//   green::Timeout t(100ms);             // armed now, for this green thread
//   try {
//     auto reply = q.get();              // or sleep, socket I/O, ...
//   } catch (const green::Timeout& e) {
//     if (e != t) throw;                 // somebody else's: not ours
//     ...                                // ours fired
//   }                                    // t's scope end cancels it
//
//   int v = green::with_timeout(100ms, compute, 21);       // or throws
//   int w = green::with_timeout_or(100ms, -1, compute, 21); // -1 on expiry
//   bool finished = green::with_deadline(100ms, [&] { work(); });
//
// If a Timeout is still pending when its duration has passed, the green
// thread that created it gets an exception thrown at its current blocking
// point (sleep, Queue::get/put, Event::wait, Semaphore::acquire, socket
// I/O, ...) or at its next one if it is running. By default the thrown
// object is a green::Timeout that compares equal (==) to the guard that
// fired, which is how nested timeouts stay independent: the one that fired
// is the one whose catch matches, the other stays pending until its own
// scope ends. Timeout(d, exception) throws a copy of `exception` instead.
// Timeout(std::nullopt) does nothing (handy for optional limits).
//
// Like green::GreenletExit (and Eventlet's Timeout, a BaseException),
// green::Timeout does NOT derive from std::exception, so a
// `catch (const std::exception&)` in a retry loop does not swallow it.
// Catch it by name, compare with ==, rethrow if it is not yours.
//
// The scope end (destructor) or cancel() disarms it race-free, even though
// its timer fires on the reactor of the worker where the Timeout was
// created while the green thread may run on another worker by then: an
// expiry that was posted but not yet raised is taken back
// (Fiber::withdraw_interrupt), so nothing fires after the scope. A Timeout
// is created and destroyed by its green thread; creating one (with a
// duration) on a plain OS thread throws std::logic_error -- there, use the
// timeout arguments of Queue::get, Event::wait, Semaphore::acquire...
//
// When an enclosing Timeout's exception is already on its way (posted,
// not yet raised), an inner one that expires does not replace it: the
// outer one will unwind through the inner scope anyway (see timeout.cc).
// Catching another Timeout's exception without rethrowing defeats this.
#ifndef GREEN_SYNC_TIMEOUT_H_
#define GREEN_SYNC_TIMEOUT_H_

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "runtime/errors.h"

namespace green {
namespace detail {
struct TimeoutState;
}  // namespace detail

class Timeout {
 public:
  // Arms a timeout for the calling green thread; std::nullopt: never
  // fires. A duration <= 0 fires at the next blocking point.
  explicit Timeout(std::optional<std::chrono::nanoseconds> duration);
  // The same, but throws `exception` (not a green::Timeout).
  Timeout(std::optional<std::chrono::nanoseconds> duration,
          std::exception_ptr exception);
  template <typename E>
  Timeout(std::optional<std::chrono::nanoseconds> duration, E exception)
      : Timeout(duration, std::make_exception_ptr(std::move(exception))) {
    static_assert(!std::is_same_v<E, bool>,
                  "green::Timeout(d, false) would throw a bool: for "
                  "Eventlet's silent Timeout(s, False) use "
                  "green::with_deadline(d, f)");
  }
  ~Timeout();
  Timeout(const Timeout&) = delete;
  Timeout& operator=(const Timeout&) = delete;

  // Whether it is armed and has not fired (false once cancelled or fired).
  bool pending() const noexcept;
  // Disarms it; idempotent; also done by the destructor.
  void cancel() noexcept;
  // What it was created with.
  std::optional<std::chrono::nanoseconds> duration() const noexcept {
    return duration_;
  }
  const char* what() const noexcept { return "green::Timeout"; }

  // Whether `a` and `b` are the same timeout: a guard and the exception it
  // threw compare equal.
  friend bool operator==(const Timeout& a, const Timeout& b) noexcept;

  // The type of the thrown object (catch it as `const green::Timeout&`).
  class Expired;

 protected:
  struct ViewTag {};
  // A non-owning copy (what is thrown): never armed, cancels nothing.
  Timeout(ViewTag, std::weak_ptr<detail::TimeoutState> id,
          std::optional<std::chrono::nanoseconds> duration) noexcept
      : id_(std::move(id)), duration_(duration) {}

  // The identity (==), also in the thrown copies. Weak: the state holds
  // the exception, which must not keep the state alive.
  std::weak_ptr<detail::TimeoutState> id_;
  std::optional<std::chrono::nanoseconds> duration_;

 private:
  void arm(std::exception_ptr custom);

  // Set for a guard that armed a timer; null for the thrown copies and for
  // Timeout(std::nullopt).
  std::shared_ptr<detail::TimeoutState> state_;
  // What is thrown. Owned here, not by the state the timer handler shares,
  // so the exception object is never freed on the handler's thread.
  std::exception_ptr exception_;
};

class Timeout::Expired final : public Timeout {
 public:
  Expired(const Expired& other) noexcept
      : Timeout(ViewTag{}, other.id_, other.duration_) {}
  Expired& operator=(const Expired&) = delete;

 private:
  friend class Timeout;
  Expired(std::weak_ptr<detail::TimeoutState> id,
          std::optional<std::chrono::nanoseconds> duration) noexcept
      : Timeout(ViewTag{}, std::move(id), duration) {}
};

namespace detail {
// Whether `exception` is the object that a live Timeout of the calling
// green thread (one created with a custom exception, say) threw: inside
// that Timeout's scope it belongs to the Timeout, whatever its type.
bool is_live_timeout_exception(const std::exception_ptr& exception);

// For a catch (...) that must not swallow an interrupt: rethrows the
// exception being handled if it is a kill (GreenletExit), a green::Timeout
// or the custom exception of a Timeout still in scope -- those belong to
// the green thread, not to the code that caught them -- and returns
// otherwise. Call only inside a handler.
inline void rethrow_if_interrupt() {
  try {
    throw;
  } catch (const GreenletExit&) {
    throw;
  } catch (const Timeout&) {
    throw;
  } catch (...) {
    if (is_live_timeout_exception(std::current_exception())) throw;
  }
}
}  // namespace detail

// Calls f(args...) under a Timeout of `duration`; returns its result, or
// lets the green::Timeout propagate if it fired (Eventlet's with_timeout).
template <typename F, typename... Args>
decltype(auto) with_timeout(std::chrono::nanoseconds duration, F&& f,
                            Args&&... args) {
  Timeout timeout(duration);
  return std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
}

// The same, but returns `timeout_value` if this timeout fired (Eventlet's
// with_timeout(..., timeout_value=v)). Other timeouts propagate.
template <typename V, typename F, typename... Args>
auto with_timeout_or(std::chrono::nanoseconds duration, V&& timeout_value,
                     F&& f, Args&&... args)
    -> std::invoke_result_t<F, Args...> {
  Timeout timeout(duration);
  try {
    return std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
  } catch (const Timeout& fired) {
    if (fired != timeout) throw;
    return std::forward<V>(timeout_value);
  }
}

// The silent variant (Eventlet's `with Timeout(d, False):`): runs
// f(args...) and simply leaves it if the timeout fires. Returns whether f
// finished: a bool for a void f, else std::optional of its result.
template <typename F, typename... Args>
auto with_deadline(std::chrono::nanoseconds duration, F&& f, Args&&... args) {
  using R = std::invoke_result_t<F, Args...>;
  Timeout timeout(duration);
  try {
    if constexpr (std::is_void_v<R>) {
      std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
      return true;
    } else {
      return std::optional<R>(
          std::invoke(std::forward<F>(f), std::forward<Args>(args)...));
    }
  } catch (const Timeout& fired) {
    if (fired != timeout) throw;
    if constexpr (std::is_void_v<R>) {
      return false;
    } else {
      return std::optional<R>();
    }
  }
}

}  // namespace green

#endif  // GREEN_SYNC_TIMEOUT_H_
