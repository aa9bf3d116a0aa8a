// Helpers shared by the runtime tests.
//
// Signal: a counting semaphore built directly on the runtime's parking
// primitives (WaitList + block_on), so scheduler tests can hand work between
// green threads and OS threads before sync/ exists -- and so these tests
// exercise park/wake itself, not a higher layer.
#ifndef GREEN_TESTS_TEST_SUPPORT_H_
#define GREEN_TESTS_TEST_SUPPORT_H_

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "runtime/green_thread.h"
#include "runtime/options.h"
#include "runtime/park.h"
#include "runtime/spin_lock.h"
#include "runtime/wait_list.h"

namespace green::testing {

// Iteration counts of stress tests are divided by this under sanitizers,
// which run ~10x slower, so that every configuration stays within minutes.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr int kScale = 10;
#else
inline constexpr int kScale = 1;
#endif

// Options for a runtime of `workers` workers (tests sweep 1, 2 and 4).
inline green::Options with_workers(std::size_t workers) {
  green::Options options;
  options.workers = workers;
  return options;
}

// Polls `ready` -- a state the code under test exposes, such as how many
// green threads wait on a queue -- from a green thread or an OS thread,
// until it holds; false after 10 s. For waiting on observable state that
// no event announces, never as a stand-in for one.
template <typename Predicate>
bool eventually(Predicate ready) {
  using namespace std::chrono_literals;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!ready()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    if (green::in_green_thread()) {
      green::sleep(100us);
    } else {
      std::this_thread::sleep_for(100us);
    }
  }
  return true;
}

class Signal {
 public:
  void post() {
    std::unique_lock<detail::SpinLock> lock(lock_);
    ++count_;
    if (detail::Waiter* waiter = waiters_.notify_one()) {
      // Handed over directly: the woken waiter owns this unit.
      --count_;
      waiter->payload = &handed_over_;
    }
  }

  // Returns false if `timeout` passed first.
  bool wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    std::unique_lock<detail::SpinLock> lock(lock_);
    if (count_ > 0) {
      --count_;
      return true;
    }
    detail::Waiter waiter;
    detail::Deadline deadline;
    if (timeout) deadline = std::chrono::steady_clock::now() + *timeout;
    return detail::block_on(waiters_, lock, waiter, deadline) ==
           detail::WakeReason::kNotified;
  }

  long count() {
    std::lock_guard<detail::SpinLock> lock(lock_);
    return count_;
  }

 private:
  detail::SpinLock lock_;
  long count_ = 0;
  int handed_over_ = 0;
  detail::WaitList waiters_;
};

// Captures what the process writes to stderr while alive.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    file_ = std::tmpfile();
    saved_ = dup(2);
    dup2(fileno(file_), 2);
  }
  ~StderrCapture() { restore(); }
  std::string text() {
    restore();
    std::string out;
    std::rewind(file_);
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, file_)) > 0) {
      out.append(buffer, n);
    }
    return out;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    dup2(saved_, 2);
    close(saved_);
    saved_ = -1;
  }
  std::FILE* file_;
  int saved_;
};

}  // namespace green::testing

#endif  // GREEN_TESTS_TEST_SUPPORT_H_
