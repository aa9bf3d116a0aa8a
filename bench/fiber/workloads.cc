// bench_fiber: Boost.Fiber's side of the comparison (bench/README.md), with
// the algo::work_stealing scheduler.
//
//   bench_fiber <workload> -workers W [-n N ...]
//
// Prints "RESULT value=... check=..." (bench/common/bench_util.h). Same
// algorithms as bench/go/workloads.go and bench/greenrt/workloads.cc:
// fibers where Go has goroutines, unbuffered_channel where Go has an
// unbuffered channel, buffered_channel for fan-in's bounded queue.
//
// Setting up work stealing (../shared/notes/peers.md): every thread that
// takes part -- the main thread included -- must call
// use_scheduling_algorithm<work_stealing>(W) with the same W before work
// is spread (the constructor meets the others at a barrier). W - 1 helper
// threads do so and then park their main fiber on a condition variable
// until the workload is over; their schedulers run stolen fibers
// meanwhile. Stacks: 64 KiB (greenrt's default); Boost's 8 KiB default
// crashed skynet in 2 runs of 3 on this machine.
#include <atomic>
#include <boost/fiber/all.hpp>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/common/bench_util.h"

namespace {

using Result = std::map<std::string, double>;
namespace fibers = boost::fibers;

constexpr std::size_t kStackSize = 64 * 1024;

// work_stealing's `suspend`: idle threads sleep on a condition variable
// instead of spinning, as greenrt's idle workers park and Go's idle Ms
// sleep. Measured here (2 cores, shared): with Boost's default (false)
// ping-pong was 5-10x slower and fan-in ~10x slower, skynet ~30% faster.
constexpr bool kSuspendIdleThreads = true;

// Starts f(args...) in a detached fiber with a kStackSize stack.
template <typename F, typename... Args>
void go(F&& f, Args&&... args) {
  fibers::fiber(std::allocator_arg, fibers::fixedsize_stack(kStackSize),
                std::forward<F>(f), std::forward<Args>(args)...)
      .detach();
}

// Go's sync.WaitGroup: done() counts down; wait() blocks until zero.
class WaitGroup {
 public:
  explicit WaitGroup(long count) : left_(count) {}
  void done() {
    if (left_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::unique_lock<fibers::mutex> lock(mutex_);
      zero_ = true;
      condition_.notify_all();
    }
  }
  void wait() {
    std::unique_lock<fibers::mutex> lock(mutex_);
    condition_.wait(lock, [this] { return zero_; });
  }

 private:
  std::atomic<long> left_;
  fibers::mutex mutex_;
  fibers::condition_variable condition_;
  bool zero_ = false;
};

// Runs `body` on the main fiber of the main thread while `workers`
// threads (main included) share fibers by work stealing.
Result run_work_stealing(unsigned workers,
                         const std::function<Result()>& body) {
  fibers::mutex mutex;
  fibers::condition_variable_any finished;
  bool done = false;
  std::vector<std::thread> helpers;
  for (unsigned i = 1; i < workers; ++i) {
    helpers.emplace_back([&] {
      fibers::use_scheduling_algorithm<fibers::algo::work_stealing>(
          workers, kSuspendIdleThreads);
      std::unique_lock<fibers::mutex> lock(mutex);
      finished.wait(lock, [&] { return done; });
    });
  }
  fibers::use_scheduling_algorithm<fibers::algo::work_stealing>(
      workers, kSuspendIdleThreads);
  Result result = body();
  {
    std::unique_lock<fibers::mutex> lock(mutex);
    done = true;
  }
  finished.notify_all();
  for (std::thread& helper : helpers) helper.join();
  return result;
}

Result yield_bench(long n) {
  std::atomic<long> total{0};
  WaitGroup group(2);
  const auto start = bench::Clock::now();
  for (int t = 0; t < 2; ++t) {
    go([&total, &group, n] {
      long i = 0;
      for (; i < n; ++i) boost::this_fiber::yield();
      total.fetch_add(i, std::memory_order_relaxed);
      group.done();
    });
  }
  group.wait();
  const double ns = bench::ns_between(start, bench::Clock::now());
  return {{"value", ns / (2.0 * n)}, {"check", double(total.load())}};
}

Result spawn_join_bench(long n) {
  std::atomic<long> ran{0};
  WaitGroup group(n);
  const auto start = bench::Clock::now();
  for (long i = 0; i < n; ++i) {
    go([&ran, &group] {
      ran.fetch_add(1, std::memory_order_relaxed);
      group.done();
    });
  }
  group.wait();
  const double ns = bench::ns_between(start, bench::Clock::now());
  return {{"value", ns / n}, {"check", double(ran.load())}};
}

using Channel = fibers::unbuffered_channel<long>;

void skynet(Channel& parent, long num, long size, long div) {
  if (size == 1) {
    parent.push(num);
    return;
  }
  Channel children;
  for (long i = 0; i < div; ++i) {
    go(skynet, std::ref(children), num + i * (size / div), size / div, div);
  }
  long sum = 0;
  for (long i = 0; i < div; ++i) sum += children.value_pop();
  parent.push(sum);
}

Result skynet_bench(long n) {
  const auto start = bench::Clock::now();
  Channel result;
  go(skynet, std::ref(result), 0L, n, 10L);
  const long sum = result.value_pop();
  const double ns = bench::ns_between(start, bench::Clock::now());
  return {{"value", ns / 1e6}, {"check", double(sum)}};
}

Result ping_pong_bench(long n) {
  Channel ping, pong;
  // n by value: main may return while this fiber checks its loop
  // condition after its last push.
  go([&ping, &pong, n] {
    for (long i = 0; i < n; ++i) pong.push(ping.value_pop() + 1);
  });
  const auto start = bench::Clock::now();
  long v = 0;
  for (long i = 0; i < n; ++i) {
    ping.push(v);
    v = pong.value_pop();
  }
  const double ns = bench::ns_between(start, bench::Clock::now());
  return {{"value", ns / n}, {"check", double(v)}};
}

// buffered_channel needs a power-of-two capacity and holds capacity - 1
// items; the driver passes 1024 to all three runtimes.
Result fan_in_bench(long producers, long n, long capacity) {
  fibers::buffered_channel<long> queue(capacity);
  const auto start = bench::Clock::now();
  for (long p = 0; p < producers; ++p) {
    go([&queue, n] {
      for (long i = 1; i <= n; ++i) queue.push(i);
    });
  }
  long sum = 0;
  const long total = producers * n;
  for (long i = 0; i < total; ++i) sum += queue.value_pop();
  const double ns = bench::ns_between(start, bench::Clock::now());
  return {{"value", total / (ns / 1e9)}, {"check", double(sum)}};
}

Result timers_bench(long n, long max_ms) {
  std::atomic<long> woke{0};
  WaitGroup group(n);
  const auto start = bench::Clock::now();
  for (long i = 0; i < n; ++i) {
    const auto delay = std::chrono::milliseconds(
        bench::splitmix64(i) % static_cast<std::uint64_t>(max_ms + 1));
    go([&woke, &group, delay] {
      boost::this_fiber::sleep_for(delay);
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

Result idle_memory_bench(long n) {
  Channel channel;
  std::atomic<long> parked{0}, got{0};
  WaitGroup group(n);
  const double before = bench::resident_bytes();
  for (long i = 0; i < n; ++i) {
    go([&parked, &got, &channel, &group] {
      parked.fetch_add(1, std::memory_order_relaxed);
      got.fetch_add(channel.value_pop(), std::memory_order_relaxed);
      group.done();
    });
  }
  while (parked.load(std::memory_order_relaxed) < n) {
    boost::this_fiber::sleep_for(std::chrono::milliseconds(1));
  }
  boost::this_fiber::sleep_for(std::chrono::milliseconds(20));
  const double after = bench::resident_bytes();
  for (long i = 0; i < n; ++i) channel.push(1);
  group.wait();
  return {{"value", (after - before) / n},
          {"check", double(got.load())},
          {"total_mb", (after - before) / (1 << 20)}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: bench_fiber <yield|spawn-join|skynet|ping-pong|"
                 "fan-in|timers|idle-memory> -workers W [-n N ...]\n");
    return 2;
  }
  const std::string workload = argv[1];
  bench::Flags flags(argc, argv, 2);
  long workers = flags.get("workers", 0);
  if (workers <= 0) workers = std::thread::hardware_concurrency();
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
  } else {
    std::fprintf(stderr, "bench_fiber: unknown workload '%s'\n",
                 workload.c_str());
    return 2;
  }
  flags.check_all_used("bench_fiber");
  bench::print_result(run_work_stealing(static_cast<unsigned>(workers), body));
  return 0;
}
