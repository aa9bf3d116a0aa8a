// One million green threads sleeping at once: wall time and peak memory.
//   tools/bazel run //examples:million_sleepers -- [count] [sleep_ms]
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "green/green.h"

int main(int argc, char** argv) {
  const int count = argc > 1 ? std::atoi(argv[1]) : 1000000;
  const int sleep_ms = argc > 2 ? std::atoi(argv[2]) : 1000;
  std::atomic<int> woke{0};
  const auto start = std::chrono::steady_clock::now();
  green::run([&] {
    std::vector<green::GreenThread<void>> sleepers;
    sleepers.reserve(count);
    for (int i = 0; i < count; ++i) {
      sleepers.push_back(green::spawn([&woke, sleep_ms] {
        green::sleep(std::chrono::milliseconds(sleep_ms));
        woke.fetch_add(1, std::memory_order_relaxed);
      }));
    }
    for (auto& s : sleepers) s.wait();
  });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "%d sleepers of %d ms: %.2f s wall, peak RSS %.1f MiB (%.0f B each)\n",
      woke.load(), sleep_ms, seconds, usage.ru_maxrss / 1024.0,
      usage.ru_maxrss * 1024.0 / count);
  return woke.load() == count ? 0 : 1;
}
