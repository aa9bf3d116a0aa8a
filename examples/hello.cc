// The smallest greenrt program: spawn green threads, sleep, collect results.
#include <chrono>
#include <cstdio>
#include <vector>

#include "green/green.h"

int main() {
  const int total = green::run([] {
    std::vector<green::GreenThread<int>> threads;
    for (int i = 0; i < 10; ++i) {
      threads.push_back(green::spawn([i] {
        green::sleep(std::chrono::milliseconds(10 * (10 - i)));
        std::printf("green thread %d done on worker %zu\n", i,
                    green::worker_id());
        return i;
      }));
    }
    int sum = 0;
    for (auto& t : threads) sum += t.wait();
    return sum;
  });
  std::printf("sum = %d\n", total);
  return total == 45 ? 0 : 1;
}
