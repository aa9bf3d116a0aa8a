#include "bench/driver/workloads.h"

#include <string>

namespace bench {
namespace {

// Sizes per mode. Full: the issue's sizes (a million green threads for
// spawn-join, skynet, timers and idle memory). Quick: chosen so that the
// whole suite, warm-up included, takes about a minute on 2 cores. Smoke:
// as small as still exercises every code path.
struct Sizes {
  long yield;           // yields per green thread
  long spawn;           // green threads
  long skynet;          // leaves (a power of 10)
  long ping_pong;       // round trips
  long fan_in;          // items per producer
  long producers;       // fan-in producers
  long capacity;        // fan-in queue bound (a power of two: Boost.Fiber)
  long timers;          // sleepers
  long timer_max_ms;    // longest sleep
  long idle;            // parked green threads
  long timeouts;        // timeouts armed and cancelled
  long timeout_fires;   // timeouts that fire
  double echo_seconds;  // measured window of each echo run
  long echo_small;      // connections
  long echo_large;
  long tls_conns;
};

// Echo windows of 3 s: the latency tail comes from scheduling (ours and
// the kernel's), not from the window; 5 runs x 2 servers x 4 echo rows of
// 3 s keep the full run near ten minutes.
constexpr Sizes kFullSizes = {
    2'000'000, 1'000'000, 1'000'000, 1'000'000, 1'000'000, 4,  1024, 1'000'000,
    100,       1'000'000, 1'000'000, 20'000,    3.0,       50, 1000, 50};
constexpr Sizes kQuickSizes = {
    500'000, 300'000, 100'000, 200'000, 200'000, 4,  1024, 50'000,
    100,     50'000,  200'000, 5'000,   0.5,     50, 1000, 50};
// Smoke keeps the echo connection counts (the rows' names carry them):
// setting up 1,000 loopback connections takes well under a second.
constexpr Sizes kSmokeSizes = {1000, 2000, 1000, 1000, 1000, 4,  16,   1000,
                               10,   1000, 1000, 100,  0.3,  50, 1000, 5};

std::string str(long v) { return std::to_string(v); }

std::string str(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

Metric main_metric(const std::string& name, const std::string& unit,
                   bool higher_better, std::optional<Target> target = {}) {
  return Metric{name, "value", unit, higher_better, target};
}

Workload program(const std::string& name, int workers,
                 std::vector<std::string> args, double expected, Metric metric,
                 const std::string& description) {
  Workload w;
  w.name = name;
  w.program = name;
  w.workers = workers;
  w.args = std::move(args);
  w.expected_check = expected;
  w.metrics = {std::move(metric)};
  w.description = description;
  return w;
}

// spawn-join, skynet and ping-pong at `workers`; the name gets "@Nw"
// when `suffix` (the scaling runs).
std::vector<Workload> scalable(const Sizes& s, int workers, bool suffix) {
  const std::string at = suffix ? "@" + str(long{workers}) + "w" : "";
  std::vector<Workload> out;
  out.push_back(program(
      "spawn-join" + at, workers, {"-n", str(s.spawn)}, double(s.spawn),
      main_metric(
          "spawn-join" + at, "ns/thread", false,
          suffix ? std::nullopt : std::optional<Target>(Target{"<=", 0.7})),
      "spawn " + str(s.spawn) + " trivial green threads, wait for all"));
  const double leaves = static_cast<double>(s.skynet);
  out.push_back(program(
      "skynet" + at, workers, {"-n", str(s.skynet)}, leaves * (leaves - 1) / 2,
      main_metric(
          "skynet" + at, "ms", false,
          suffix ? std::nullopt : std::optional<Target>(Target{"<=", 0.7})),
      "skynet, " + str(s.skynet) + " leaves, branching 10, channels"));
  out.push_back(program(
      "ping-pong" + at, workers, {"-n", str(s.ping_pong)}, double(s.ping_pong),
      main_metric(
          "ping-pong" + at, "ns/round trip", false,
          suffix ? std::nullopt : std::optional<Target>(Target{"<=", 1.0})),
      "a value back and forth through two channels, " + str(s.ping_pong) +
          " round trips"));
  for (Workload& w : out) {
    w.program = w.name.substr(0, w.name.find('@'));
    w.scaling_group = w.program;
  }
  return out;
}

Workload echo(const Sizes& s, const SuiteConfig& config,
              const std::string& name, long conns, bool tls, bool handshakes) {
  Workload w;
  w.name = name;
  w.program = "echo";
  w.echo = true;
  w.workers = config.echo_workers;
  w.args = {"-conns", str(conns), "-seconds", str(s.echo_seconds),
            "-size",  "64",       "-tls",     tls ? "1" : "0"};
  if (handshakes) w.args.insert(w.args.end(), {"-mode", "handshake"});
  if (tls) w.server_args = {"-cert", config.cert, "-key", config.key};
  w.expected_check = 0;  // errors seen by the load generator
  const std::string what = handshakes ? "handshakes/s" : "requests/s";
  std::optional<Target> target;
  if (!tls) target = Target{">=", 1.2};
  w.metrics.push_back(main_metric(name, what, true, target));
  if (!handshakes) {
    w.metrics.push_back(Metric{name + ":p50", "p50_us", "us", false, {}});
    w.metrics.push_back(
        Metric{name + ":p99", "p99_us", "us", false,
               tls ? std::nullopt : std::optional<Target>(Target{"<=", 1.0})});
    // Fairness: a server that starves a few connections shows here (the
    // load generator also counts requests still waiting at the end).
    w.metrics.push_back(Metric{name + ":p99.9", "p999_us", "us", false, {}});
    // Connections that completed no request in the whole window.
    w.metrics.push_back(
        Metric{name + ":starved", "starved_conns", "connections", false, {}});
  }
  w.metrics.push_back(
      Metric{name + ":cpu",
             "server_cpu_us",
             "us CPU/" + std::string(handshakes ? "handshake" : "request"),
             false,
             {}});
  w.available[static_cast<int>(Impl::kBoostFiber)] = false;
  w.missing_note[static_cast<int>(Impl::kBoostFiber)] =
      "not measured: Boost.Fiber has no reactor, and an Asio integration "
      "(its asio examples' round_robin + yield) is not the cheap addition "
      "the issue allows for";
  if (!config.greenrt_echo_available) {
    w.available[static_cast<int>(Impl::kGreenrt)] = false;
    w.missing_note[static_cast<int>(Impl::kGreenrt)] =
        "not yet available: greenrt_echo_server was not built";
  }
  w.description = (tls ? std::string("TLS ") : std::string("")) +
                  (handshakes ? "connect + handshake + one 64-byte echo, "
                              : "64-byte echo, ") +
                  str(conns) + " connections, " + str(s.echo_seconds) +
                  " s per run";
  return w;
}

}  // namespace

const char* impl_key(Impl impl) {
  switch (impl) {
    case Impl::kGreenrt:
      return "greenrt";
    case Impl::kGo:
      return "go";
    case Impl::kBoostFiber:
      return "boost_fiber";
  }
  return "?";
}

const char* impl_title(Impl impl) {
  switch (impl) {
    case Impl::kGreenrt:
      return "greenrt";
    case Impl::kGo:
      return "Go";
    case Impl::kBoostFiber:
      return "Boost.Fiber";
  }
  return "?";
}

std::vector<Workload> make_suite(const SuiteConfig& config) {
  const Sizes& s = config.mode == Mode::kFull    ? kFullSizes
                   : config.mode == Mode::kQuick ? kQuickSizes
                                                 : kSmokeSizes;
  const int n = config.workers;
  std::vector<Workload> suite;
  suite.push_back(
      program("yield", 1, {"-n", str(s.yield)}, 2.0 * s.yield,
              main_metric("yield", "ns/switch", false, Target{"<=", 0.5}),
              "two green threads on one worker yield to each other, " +
                  str(s.yield) + " times each"));
  for (Workload& w : scalable(s, n, false)) suite.push_back(std::move(w));
  const double items = static_cast<double>(s.fan_in);
  suite.push_back(
      program("fan-in", n,
              {"-producers", str(s.producers), "-n", str(s.fan_in), "-capacity",
               str(s.capacity)},
              s.producers * items * (items + 1) / 2,
              main_metric("fan-in", "items/s", true),
              str(s.producers) + " producers, 1 consumer, a queue of " +
                  str(s.capacity) + ", " + str(s.fan_in) + " items each"));
  Workload timers = program(
      "timers", n, {"-n", str(s.timers), "-max-ms", str(s.timer_max_ms)},
      double(s.timers),
      main_metric("timers", "ms (ideal " + str(s.timer_max_ms) + ")", false),
      str(s.timers) + " green threads sleep a random 0-" + str(s.timer_max_ms) +
          " ms each");
  timers.metrics.push_back(
      Metric{"timers:rss", "peak_rss_mb", "MiB peak RSS", false, {}});
  suite.push_back(std::move(timers));
  suite.push_back(program(
      "idle-memory", n, {"-n", str(s.idle)}, double(s.idle),
      main_metric("idle-memory", "bytes/thread", false, Target{"<=", 2.0}),
      str(s.idle) + " green threads parked on a channel: RSS growth each"));
  Workload timeout = program(
      "timeout", 1, {"-n", str(s.timeouts), "-fires", str(s.timeout_fires)},
      double(s.timeouts + s.timeout_fires),
      main_metric("timeout", "ns/arm+cancel", false),
      "a 1 s timeout armed around a step that does not block and cancelled, " +
          str(s.timeouts) + " times; then " + str(s.timeout_fires) +
          " timeouts of 1 us that fire on a green thread waiting on an empty "
          "channel (Go: context.WithTimeout)");
  timeout.metrics.push_back(
      Metric{"timeout:fired", "fired_ns", "ns/fired timeout", false, {}});
  timeout.available[static_cast<int>(Impl::kBoostFiber)] = false;
  timeout.missing_note[static_cast<int>(Impl::kBoostFiber)] =
      "not measured: Boost.Fiber has timed waits (wait_for) but no timeout "
      "that interrupts a fiber wherever it blocks";
  suite.push_back(std::move(timeout));
  suite.push_back(
      echo(s, config, "echo-" + str(s.echo_small), s.echo_small, false, false));
  suite.push_back(
      echo(s, config, "echo-" + str(s.echo_large), s.echo_large, false, false));
  suite.push_back(echo(s, config, "tls-echo", s.tls_conns, true, false));
  suite.push_back(
      echo(s, config, "tls-echo:handshakes", s.tls_conns, true, true));
  for (int k = 1; k < n; ++k) {
    for (Workload& w : scalable(s, k, true)) suite.push_back(std::move(w));
  }
  return suite;
}

std::vector<std::string> program_args(const Workload& workload) {
  std::vector<std::string> args = {workload.program};
  args.insert(args.end(), workload.args.begin(), workload.args.end());
  args.insert(args.end(), {"-workers", std::to_string(workload.workers)});
  return args;
}

}  // namespace bench
