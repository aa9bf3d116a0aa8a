// The benchmark suite as data: which programs run, with which sizes and
// worker counts, what result each must produce, and which rows of the
// table (metrics) each yields. bench/README.md describes every workload;
// keep the two in step.
#ifndef GREEN_BENCH_DRIVER_WORKLOADS_H_
#define GREEN_BENCH_DRIVER_WORKLOADS_H_

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace bench {

enum class Impl { kGreenrt = 0, kGo = 1, kBoostFiber = 2 };
inline constexpr int kImplCount = 3;
inline constexpr std::array<Impl, kImplCount> kImpls = {
    Impl::kGreenrt, Impl::kGo, Impl::kBoostFiber};
// "greenrt", "go", "boost_fiber": the keys of latest.json.
const char* impl_key(Impl impl);
// "greenrt", "Go", "Boost.Fiber": for people.
const char* impl_title(Impl impl);

enum class Mode {
  kFull,   // the sizes of the issue; the table in bench/README.md
  kQuick,  // smaller sizes and fewer runs: about a minute on 2 cores
  kSmoke,  // tiny sizes, one run: the test suite checks results only
};

// A target from the issue: greenrt / Go `op` `value`.
struct Target {
  std::string op;  // "<=" or ">="
  double value = 0;
  bool met(double ratio) const {
    return op == "<=" ? ratio <= value : ratio >= value;
  }
};

// One row of the table: a number the programs report under `key`.
struct Metric {
  std::string name;  // "echo-50", "echo-50:p99"
  std::string key;   // "value", "p99_us", ... in the RESULT line
  std::string unit;
  bool higher_better = false;
  std::optional<Target> target;  // ratio to Go, from the issue
};

struct Workload {
  std::string name;     // "skynet", "skynet@1w", "echo-50"
  std::string program;  // first argument of the bench programs
  bool echo = false;    // a server under the load generator
  int workers = 1;
  // Arguments after `program` (echo: the load generator's).
  std::vector<std::string> args;
  // Echo: arguments for the servers (TLS certificate).
  std::vector<std::string> server_args;
  // The `check` every run must report (echo: the error count, 0).
  double expected_check = 0;
  std::vector<Metric> metrics;  // metrics[0]: the main one
  std::array<bool, kImplCount> available = {true, true, true};
  std::array<std::string, kImplCount> missing_note;
  // "spawn-join" for spawn-join and spawn-join@Nw: the scaling chart.
  std::string scaling_group;
  std::string description;  // one line, for --list
};

struct SuiteConfig {
  Mode mode = Mode::kFull;
  int workers = 2;       // N: the default worker count (= cores)
  int echo_workers = 1;  // the echo servers' workers (their own cores)
  std::string cert, key;
  // Whether greenrt's echo server was built (net/ may lag behind).
  bool greenrt_echo_available = true;
};

std::vector<Workload> make_suite(const SuiteConfig& config);

// The arguments of one program run: `program` args plus -workers.
std::vector<std::string> program_args(const Workload& workload);

}  // namespace bench

#endif  // GREEN_BENCH_DRIVER_WORKLOADS_H_
