// Helpers shared by the C++ benchmark programs (greenrt, Boost.Fiber, the
// load generator): flag parsing, the RESULT line, memory readings and the
// pseudo-random sequence. bench/go/main.go has the Go twins of each.
//
//   bench::Flags flags(argc, argv, 2);        // "-n 1000 -workers 2"
//   const long n = flags.get("n", 1000000);
//   bench::print_result({{"value", 12.5}, {"check", double(n)}});
//
// Output protocol (parsed by bench/driver): one line on stdout,
//   RESULT key=value key=value ...
// `value` is the measured metric, `check` the number the driver compares
// with the expected result; anything else is an extra (p99_us, ...).
#ifndef GREEN_BENCH_COMMON_BENCH_UTIL_H_
#define GREEN_BENCH_COMMON_BENCH_UTIL_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace bench {

// "-name value" pairs after the workload name. Unknown names are an error
// (a typo must not silently run the default size).
class Flags {
 public:
  // Parses argv[first..argc).
  Flags(int argc, char** argv, int first);
  // The flag's value as a number (or `fallback` if absent); marks it used.
  long get(const std::string& name, long fallback);
  double get_double(const std::string& name, double fallback);
  std::string get_string(const std::string& name, const std::string& fallback);
  // Exits with a message if a flag was given that no get*() asked for.
  void check_all_used(const char* program) const;

 private:
  std::map<std::string, std::string> values_;
  std::map<std::string, bool> used_;
};

// Prints "RESULT k=v ..." (values printed so that they read back exactly)
// and flushes stdout.
void print_result(const std::map<std::string, double>& result);

// The resident set now (/proc/self/statm) and its peak (VmHWM in
// /proc/self/status), in bytes; -1 if unreadable.
double resident_bytes();
double peak_resident_bytes();

// The same pseudo-random sequence as splitmix64() in bench/go/main.go.
inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

using Clock = std::chrono::steady_clock;

inline double ns_between(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double, std::nano>(end - start).count();
}

}  // namespace bench

#endif  // GREEN_BENCH_COMMON_BENCH_UTIL_H_
