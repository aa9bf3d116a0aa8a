// green::run: start a runtime, run a main green thread, stop everything.
//
//   int main() {
//     return green::run([] { /* spawn, serve, ... */ return 0; });
//   }
//
// run() starts Options::workers worker threads (default: one per core),
// runs `main` as the first green thread and returns its value (or rethrows
// its exception) once it ends. Green threads still alive then are killed
// (GreenletExit at their blocking point, so their stacks unwind and their
// destructors run), and the workers are joined before run() returns. One
// runtime runs per process at a time; run() may be called again after it
// returned.
#ifndef GREEN_RUNTIME_RUN_H_
#define GREEN_RUNTIME_RUN_H_

#include <memory>
#include <type_traits>
#include <utility>

#include "runtime/green_thread.h"
#include "runtime/options.h"

namespace green {
namespace detail {

// Owns a running scheduler; the destructor shuts it down.
class Runtime {
 public:
  explicit Runtime(const Options& options);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

 private:
  std::unique_ptr<Scheduler> scheduler_;
};

}  // namespace detail

template <typename F>
auto run(F&& main, const Options& options = {}) -> std::invoke_result_t<F&> {
  detail::Runtime runtime(options);
  auto handle = spawn(std::forward<F>(main));
  return handle.wait();
}

}  // namespace green

#endif  // GREEN_RUNTIME_RUN_H_
