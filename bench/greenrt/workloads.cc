// bench_greenrt: greenrt's side of the comparison (bench/README.md).
//
//   bench_greenrt <workload> -workers W [-n N ...]
//
// Prints "RESULT value=... check=..." (bench/common/bench_util.h). Every
// workload is the same algorithm as the function of the same name in
// bench/go/workloads.go and bench/fiber/workloads.cc: green threads where
// Go has goroutines, green::Queue(0) where Go has an unbuffered channel,
// a WaitGroup (an atomic count and a green::Event) where Go has
// sync.WaitGroup. Times are taken inside the main green thread, so
// starting and stopping the runtime is not counted (Go's runtime start is
// not either).
#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>

#include "bench/common/bench_util.h"
#include "runtime/green_thread.h"
#include "runtime/run.h"
#include "sync/event.h"
#include "sync/queue.h"
#include "sync/timeout.h"

namespace {

using Result = std::map<std::string, double>;

// Go's sync.WaitGroup: done() counts down; wait() parks until zero.
class WaitGroup {
 public:
  explicit WaitGroup(long count) : left_(count) {}
  void done() {
    // acq_rel: the last done() sees every other green thread's writes
    // (acquire) before it wakes the waiter; each publishes its own.
    if (left_.fetch_sub(1, std::memory_order_acq_rel) == 1) event_.send();
  }
  void wait() { event_.wait(); }

 private:
  std::atomic<long> left_;
  green::Event<void> event_;
};

// yield: two green threads on one worker yield to each other n times
// each. value: ns per switch.
Result yield_bench(long n) {
  std::atomic<long> total{0};
  const auto start = bench::Clock::now();
  auto body = [&total, n] {
    long i = 0;
    for (; i < n; ++i) green::yield();
    total.fetch_add(i, std::memory_order_relaxed);
  };
  auto a = green::spawn(body);
  auto b = green::spawn(body);
  a.wait();
  b.wait();
  const double ns = bench::ns_between(start, bench::Clock::now());
  return {{"value", ns / (2.0 * n)}, {"check", double(total.load())}};
}

// spawn-join: n green threads that only count themselves and mark a
// WaitGroup done. value: ns per green thread.
Result spawn_join_bench(long n) {
  std::atomic<long> ran{0};
  WaitGroup group(n);
  const auto start = bench::Clock::now();
  for (long i = 0; i < n; ++i) {
    green::spawn_n([&ran, &group] {
      ran.fetch_add(1, std::memory_order_relaxed);
      group.done();
    });
  }
  group.wait();
  const double ns = bench::ns_between(start, bench::Clock::now());
  return {{"value", ns / n}, {"check", double(ran.load())}};
}

// skynet (https://github.com/atemerev/skynet): a tree of green threads,
// branching `div`; leaves put their number into their parent's channel,
// inner nodes sum their children's. value: total ms.
void skynet(green::Queue<long>& parent, long num, long size, long div) {
  if (size == 1) {
    parent.put(num);
    return;
  }
  green::Queue<long> children(0);
  for (long i = 0; i < div; ++i) {
    green::spawn_n(skynet, std::ref(children), num + i * (size / div),
                   size / div, div);
  }
  long sum = 0;
  for (long i = 0; i < div; ++i) sum += children.get();
  parent.put(sum);
}

Result skynet_bench(long n) {
  const auto start = bench::Clock::now();
  green::Queue<long> result(0);
  green::spawn_n(skynet, std::ref(result), 0L, n, 10L);
  const long sum = result.get();
  const double ns = bench::ns_between(start, bench::Clock::now());
  return {{"value", ns / 1e6}, {"check", double(sum)}};
}

// ping-pong: a counter goes back and forth through two channels; each
// round trip adds one. value: ns per round trip.
Result ping_pong_bench(long n) {
  green::Queue<long> ping(0), pong(0);
  // n by value: the main green thread may return (ending n's life) while
  // this one still checks its loop condition after its last put().
  green::spawn_n([&ping, &pong, n] {
    for (long i = 0; i < n; ++i) pong.put(ping.get() + 1);
  });
  const auto start = bench::Clock::now();
  long v = 0;
  for (long i = 0; i < n; ++i) {
    ping.put(v);
    v = pong.get();
  }
  const double ns = bench::ns_between(start, bench::Clock::now());
  return {{"value", ns / n}, {"check", double(v)}};
}

// fan-in: `producers` green threads put 1..n into one bounded queue; the
// main green thread sums. value: items per second.
Result fan_in_bench(long producers, long n, long capacity) {
  green::Queue<long> queue(capacity);
  const auto start = bench::Clock::now();
  for (long p = 0; p < producers; ++p) {
    green::spawn_n([&queue, n] {  // n by value, as in ping-pong
      for (long i = 1; i <= n; ++i) queue.put(i);
    });
  }
  long sum = 0;
  const long total = producers * n;
  for (long i = 0; i < total; ++i) sum += queue.get();
  const double ns = bench::ns_between(start, bench::Clock::now());
  return {{"value", total / (ns / 1e9)}, {"check", double(sum)}};
}

// timers: n green threads each sleep splitmix64(i) % (max_ms + 1) ms.
// value: wall ms from the first spawn to the last wake-up; extra: peak RSS.
Result timers_bench(long n, long max_ms) {
  std::atomic<long> woke{0};
  WaitGroup group(n);
  const auto start = bench::Clock::now();
  for (long i = 0; i < n; ++i) {
    const auto delay = std::chrono::milliseconds(
        bench::splitmix64(i) % static_cast<std::uint64_t>(max_ms + 1));
    green::spawn_n([&woke, &group, delay] {
      green::sleep(delay);
      woke.fetch_add(1, std::memory_order_relaxed);
      group.done();
    });
  }
  group.wait();
  const double ns = bench::ns_between(start, bench::Clock::now());
  return {{"value", ns / 1e6},
          {"check", double(woke.load())},
          {"peak_rss_mb", bench::peak_resident_bytes() / (1 << 20)}};
}

// idle-memory: n green threads park in get() on one channel; once all
// are parked, the growth of the resident set since before the first
// spawn, per green thread. Then n puts release them. value: bytes each.
Result idle_memory_bench(long n) {
  green::Queue<long> channel(0);
  std::atomic<long> parked{0}, got{0};
  WaitGroup group(n);
  const double before = bench::resident_bytes();
  for (long i = 0; i < n; ++i) {
    green::spawn_n([&parked, &got, &channel, &group] {
      parked.fetch_add(1, std::memory_order_relaxed);
      got.fetch_add(channel.get(), std::memory_order_relaxed);
      group.done();
    });
  }
  while (parked.load(std::memory_order_relaxed) < n) {
    green::sleep(std::chrono::milliseconds(1));
  }
  // The last ones counted themselves but may still be on their way into
  // get(): let them settle.
  green::sleep(std::chrono::milliseconds(20));
  const double after = bench::resident_bytes();
  for (long i = 0; i < n; ++i) channel.put(1);
  group.wait();
  return {{"value", (after - before) / n},
          {"check", double(got.load())},
          {"total_mb", (after - before) / (1 << 20)}};
}

// timeout: Eventlet's Timeout, Go's context.WithTimeout. value: ns to arm
// a 1-second timeout around a step that does not block and cancel it (the
// common case: the deadline does not fire). fired_ns: ns per timeout of
// 1 us that fires while its green thread waits on an empty channel, from
// arming it to catching it (armed, parked, expired, woken, thrown).
Result timeout_bench(long n, long fires) {
  long steps = 0;
  auto start = bench::Clock::now();
  for (long i = 0; i < n; ++i) {
    green::Timeout timeout(std::chrono::seconds(1));
    steps += i & 1;  // the step the deadline guards
  }
  const double armed_ns = bench::ns_between(start, bench::Clock::now()) / n;
  green::Queue<int> never(0);
  long fired = 0;
  start = bench::Clock::now();
  for (long i = 0; i < fires; ++i) {
    green::Timeout timeout(std::chrono::microseconds(1));
    try {
      never.get();
    } catch (const green::Timeout& caught) {
      fired += caught == timeout;
    }
  }
  const double fired_ns =
      fires > 0 ? bench::ns_between(start, bench::Clock::now()) / fires : 0;
  return {{"value", armed_ns},
          {"fired_ns", fired_ns},
          {"check", double(steps + (n - n / 2) + fired)}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: bench_greenrt <yield|spawn-join|skynet|ping-pong|"
                 "fan-in|timers|idle-memory|timeout> -workers W [-n N ...]\n");
    return 2;
  }
  const std::string workload = argv[1];
  bench::Flags flags(argc, argv, 2);
  green::Options options;
  options.workers = flags.get("workers", 0);
  std::function<Result()> body;
  if (workload == "yield") {
    body = [n = flags.get("n", 1000000)] { return yield_bench(n); };
  } else if (workload == "spawn-join") {
    body = [n = flags.get("n", 1000000)] { return spawn_join_bench(n); };
  } else if (workload == "skynet") {
    body = [n = flags.get("n", 1000000)] { return skynet_bench(n); };
  } else if (workload == "ping-pong") {
    body = [n = flags.get("n", 1000000)] { return ping_pong_bench(n); };
  } else if (workload == "fan-in") {
    body = [p = flags.get("producers", 4), n = flags.get("n", 500000),
            c = flags.get("capacity", 1024)] { return fan_in_bench(p, n, c); };
  } else if (workload == "timers") {
    body = [n = flags.get("n", 1000000), m = flags.get("max-ms", 100)] {
      return timers_bench(n, m);
    };
  } else if (workload == "idle-memory") {
    body = [n = flags.get("n", 1000000)] { return idle_memory_bench(n); };
  } else if (workload == "timeout") {
    body = [n = flags.get("n", 1000000), f = flags.get("fires", 10000)] {
      return timeout_bench(n, f);
    };
  } else {
    std::fprintf(stderr, "bench_greenrt: unknown workload '%s'\n",
                 workload.c_str());
    return 2;
  }
  flags.check_all_used("bench_greenrt");
  const Result result = green::run(body, options);
  bench::print_result(result);
  return 0;
}
