// Internal helpers of sync/: turning a caller's timeout into the runtime's
// Deadline (runtime/park.h), and checking it.
//
// A timeout <= 0 means "do not wait" (the deadline has passed already); a
// timeout so large that now + timeout would overflow the clock means "no
// deadline" (wait forever), never a deadline in the past.
#ifndef GREEN_SYNC_DEADLINE_H_
#define GREEN_SYNC_DEADLINE_H_

#include <algorithm>
#include <chrono>

#include "runtime/park.h"

namespace green::detail {

inline Deadline deadline_after(std::chrono::nanoseconds timeout) noexcept {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point now = Clock::now();
  timeout = std::max(timeout, std::chrono::nanoseconds::zero());
  if (timeout >= Clock::time_point::max() - now) return std::nullopt;
  return now + timeout;
}

inline bool expired(const Deadline& deadline) noexcept {
  return deadline && std::chrono::steady_clock::now() >= *deadline;
}

}  // namespace green::detail

#endif  // GREEN_SYNC_DEADLINE_H_
