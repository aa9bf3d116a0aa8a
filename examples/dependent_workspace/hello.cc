// Built by tools/check_dependent_workspace.sh from a separate workspace.
#include <cstdio>

#include "green/green.h"

int main() {
  const int answer = green::run([] {
    auto t = green::spawn([](int x) { return x * 2; }, 21);
    return t.wait();
  });
  std::printf("dependent workspace: %d\n", answer);
  return answer == 42 ? 0 : 1;
}
