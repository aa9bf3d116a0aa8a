// compare: greenrt side by side with Go and Boost.Fiber.
//
//   tools/bazel run //bench:compare                 # full run (minutes)
//   tools/bazel run //bench:compare -- --quick      # about a minute
//   tools/bazel run //bench:compare -- --only skynet
//   tools/bazel run //bench:compare -- --list
//
// Builds the Go programs (bench/go, stdlib only, GO111MODULE=off, offline),
// then runs every workload's programs alternately -- greenrt, Go,
// Boost.Fiber, rotating who goes first -- a discarded warm-up round and
// then the measured runs, on the same cores with the same worker count.
// Prints a table of medians, min-max spreads and ratios, and writes
// bench/results/latest.json and latest.svg (full runs of everything;
// --quick writes quick.*, --only partial.*, --smoke smoke.* into --out).
// Method and caveats: bench/README.md.
#include <unistd.h>

#include <boost/version.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/driver/process.h"
#include "bench/driver/report.h"
#include "bench/driver/workloads.h"
#include "tools/cpp/runfiles/runfiles.h"

namespace fs = std::filesystem;
using bazel::tools::cpp::runfiles::Runfiles;

namespace bench {
namespace {

// Generous limits: a stuck program must not hang the run, but a slow,
// noisy machine must not fail it either.
constexpr double kProgramTimeoutSeconds = 180;
constexpr double kServerStartSeconds = 20;

// The Go sources, as runfiles (kept in step with bench/BUILD).
const char* const kGoSources[] = {"main.go", "workloads.go", "echo.go"};

struct Options {
  Mode mode = Mode::kFull;
  std::vector<std::string> only;
  int runs = -1, warmup = -1, workers = 0;
  std::string out_dir, cache_dir, go;
  bool list = false;
};

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: compare [--quick | --smoke] [--only NAME[,NAME]]...\n"
               "               [--runs N] [--warmup N] [--workers N]\n"
               "               [--out DIR] [--cache-dir DIR] [--go PATH] "
               "[--list]\n"
               "  --quick   smaller sizes, 3 runs: about a minute\n"
               "  --smoke   tiny sizes, 1 run, no warm-up: checks results\n"
               "  --only    run these workloads (a name also selects its\n"
               "            sub-rows and scaling runs: --only skynet)\n"
               "  --workers N (default: the number of cores)\n"
               "  --out     where the JSON and SVG go (default: "
               "bench/results\n"
               "            of the workspace under `bazel run`)\n");
  std::exit(code);
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    if (a == "--quick") {
      o.mode = Mode::kQuick;
    } else if (a == "--smoke") {
      o.mode = Mode::kSmoke;
    } else if (a == "--only") {
      std::stringstream names(value());
      for (std::string name; std::getline(names, name, ',');) {
        o.only.push_back(name);
      }
    } else if (a == "--runs") {
      o.runs = std::atoi(value().c_str());
    } else if (a == "--warmup") {
      o.warmup = std::atoi(value().c_str());
    } else if (a == "--workers") {
      o.workers = std::atoi(value().c_str());
    } else if (a == "--out") {
      o.out_dir = value();
    } else if (a == "--cache-dir") {
      o.cache_dir = value();
    } else if (a == "--go") {
      o.go = value();
    } else if (a == "--list") {
      o.list = true;
    } else if (a == "--help" || a == "-h") {
      usage(0);
    } else {
      std::fprintf(stderr, "compare: unknown argument '%s'\n", a.c_str());
      usage(2);
    }
  }
  return o;
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

double load_average() {
  std::ifstream file("/proc/loadavg");
  double one_minute = 0;
  file >> one_minute;
  return one_minute;
}

std::string now_iso8601() {
  const std::time_t t = std::time(nullptr);
  std::tm local{};
  localtime_r(&t, &local);
  char text[64];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S%z", &local);
  return text;
}

bool selected(const Workload& w, const std::vector<std::string>& only) {
  if (only.empty()) return true;
  for (const std::string& name : only) {
    if (w.name == name || w.name.rfind(name + ":", 0) == 0 ||
        w.name.rfind(name + "@", 0) == 0) {
      return true;
    }
  }
  return false;
}

// Parses "RESULT k=v k=v" from a program's stdout.
bool parse_result(const std::string& out,
                  std::map<std::string, double>* values) {
  const std::size_t at = out.rfind("RESULT");
  if (at == std::string::npos) return false;
  std::istringstream fields(out.substr(at + 6, out.find('\n', at) - at - 6));
  std::string field;
  while (fields >> field) {
    const std::size_t eq = field.find('=');
    if (eq == std::string::npos) return false;
    (*values)[field.substr(0, eq)] =
        std::strtod(field.c_str() + eq + 1, nullptr);
  }
  return values->count("value") && values->count("check");
}

class Progress {
 public:
  explicit Progress(int total)
      : total_(total),
        tty_(isatty(2)),
        start_(std::chrono::steady_clock::now()) {}
  void show(const std::string& what) {
    ++done_;
    const int elapsed = static_cast<int>(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
            .count());
    char line[200];
    std::snprintf(line, sizeof line, "[%3d/%d] %d:%02d  %s", done_, total_,
                  elapsed / 60, elapsed % 60, what.c_str());
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s", line);
    } else {
      std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
  }
  void finish() {
    if (tty_) std::fprintf(stderr, "\r\033[K");
  }
  // A message that must stay visible (a failure).
  void note(const std::string& text) {
    std::fprintf(stderr, "%s%s\n", tty_ ? "\r\033[K" : "", text.c_str());
  }

 private:
  int total_, done_ = 0;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

struct Programs {
  std::string greenrt, greenrt_echo, fiber, go, loadgen;
};

// Copies the Go sources out of the runfiles and builds them with the
// system toolchain, offline. Returns the binary, or "" (and *error).
std::string build_go(Runfiles& runfiles, const std::string& go,
                     const fs::path& cache, std::string* error) {
  const fs::path src = cache / "src";
  std::error_code ec;
  fs::create_directories(src, ec);
  fs::create_directories(cache / "gopath", ec);
  std::vector<std::string> argv = {go, "build", "-o",
                                   (cache / "bench_go").string()};
  for (const char* name : kGoSources) {
    const std::string from =
        runfiles.Rlocation(std::string("greenrt/bench/go/") + name);
    fs::copy_file(from, src / name, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      *error = "cannot copy " + from + ": " + ec.message();
      return "";
    }
    argv.push_back((src / name).string());
  }
  Command command;
  command.argv = argv;
  command.env = {{"GO111MODULE", "off"},
                 {"GOFLAGS", ""},
                 {"GOCACHE", (cache / "gocache").string()},
                 {"GOPATH", (cache / "gopath").string()},
                 {"GOENV", "off"},
                 {"GOTOOLCHAIN", "local"},
                 {"HOME", env_or("HOME", cache.string())}};
  const ProcessResult r = run_process(command, 300);
  if (!r.ok()) {
    *error = "go build failed (" + r.describe() + ")\n" + r.out;
    return "";
  }
  return (cache / "bench_go").string();
}

std::string go_version(const std::string& go) {
  Command command;
  command.argv = {go, "version"};
  command.env = {{"GOENV", "off"}, {"GOTOOLCHAIN", "local"}};
  const ProcessResult r = run_process(command, 30);
  std::istringstream words(r.out);
  std::string word;
  while (words >> word) {
    if (word.rfind("go1", 0) == 0) return word.substr(2);
  }
  return "unknown";
}

class Driver {
 public:
  Driver(const Programs& programs, const fs::path& cache)
      : programs_(programs), cache_(cache) {}

  // Runs one program (or server + load generator) once; returns false and
  // fills *error if it failed or produced a wrong result.
  bool run_once(const Workload& w, Impl impl,
                std::map<std::string, double>* values, std::string* error) {
    return w.echo ? run_echo(w, impl, values, error)
                  : run_program(w, impl, values, error);
  }

 private:
  Command program_command(const std::string& binary, const Workload& w,
                          Impl impl) {
    Command c;
    c.argv = {binary};
    for (const std::string& a : program_args(w)) c.argv.push_back(a);
    if (impl == Impl::kGo) {
      c.env["GOMAXPROCS"] = std::to_string(w.workers);
    }
    return c;
  }

  const std::string& binary_for(Impl impl) {
    switch (impl) {
      case Impl::kGreenrt:
        return programs_.greenrt;
      case Impl::kGo:
        return programs_.go;
      case Impl::kBoostFiber:
        return programs_.fiber;
    }
    return programs_.greenrt;
  }

  bool check(const Workload& w, const std::map<std::string, double>& values,
             std::string* error) {
    const double got = values.at("check");
    if (std::fabs(got - w.expected_check) > 0.5) {
      char text[160];
      std::snprintf(text, sizeof text,
                    "wrong result: check=%.17g, expected %.17g", got,
                    w.expected_check);
      *error = text;
      return false;
    }
    return true;
  }

  bool run_program(const Workload& w, Impl impl,
                   std::map<std::string, double>* values, std::string* error) {
    const ProcessResult r = run_process(
        program_command(binary_for(impl), w, impl), kProgramTimeoutSeconds);
    if (!r.ok()) {
      *error = r.describe();
      return false;
    }
    if (!parse_result(r.out, values)) {
      *error = "no RESULT line in: " + r.out.substr(0, 200);
      return false;
    }
    return check(w, *values, error);
  }

  bool run_echo(const Workload& w, Impl impl,
                std::map<std::string, double>* values, std::string* error) {
    Command server;
    server.argv = {impl == Impl::kGo ? programs_.go : programs_.greenrt_echo};
    if (impl == Impl::kGo) server.argv.push_back("echo-server");
    server.argv.insert(server.argv.end(),
                       {"-workers", std::to_string(w.workers)});
    server.argv.insert(server.argv.end(), w.server_args.begin(),
                       w.server_args.end());
    if (impl == Impl::kGo) server.env["GOMAXPROCS"] = std::to_string(w.workers);
    server.cpus = server_cpus_;
    Server process;
    if (!process.start(server, (cache_ / "server.log").string(),
                       kServerStartSeconds, error)) {
      return false;
    }
    Command load;
    load.argv = {programs_.loadgen, "-port", std::to_string(process.port())};
    load.argv.insert(load.argv.end(), w.args.begin(), w.args.end());
    load.cpus = loadgen_cpus_;
    const double cpu_before = process.cpu_seconds();
    const ProcessResult r = run_process(load, kProgramTimeoutSeconds);
    const double cpu = process.cpu_seconds() - cpu_before;
    process.stop();
    if (!r.ok()) {
      *error = "load generator: " + r.describe();
      return false;
    }
    if (!parse_result(r.out, values)) {
      *error =
          "no RESULT line from the load generator: " + r.out.substr(0, 200);
      return false;
    }
    if (!check(w, *values, error)) {
      *error = "the load generator saw errors: " + *error;
      return false;
    }
    const double requests = (*values)["requests"];
    if (requests <= 0) {
      *error = "no request completed";
      return false;
    }
    (*values)["server_cpu_us"] = cpu * 1e6 / requests;
    (*values)["server_cpu"] = cpu / r.seconds;
    return true;
  }

 public:
  std::vector<int> server_cpus_, loadgen_cpus_;

 private:
  const Programs& programs_;
  fs::path cache_;
};

std::string boost_version() {
  return std::to_string(BOOST_VERSION / 100000) + "." +
         std::to_string(BOOST_VERSION / 100 % 1000);
}

int main_impl(int argc, char** argv) {
  Options options = parse_options(argc, argv);
  const int cores =
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  SuiteConfig config;
  config.mode = options.mode;
  config.workers = options.workers > 0 ? options.workers : cores;
  // The echo servers get the first half of the cores, the load generator
  // the rest (on 2 cores: one each), so neither steals the other's core.
  config.echo_workers = std::max(1, cores / 2);

  std::string error;
  std::unique_ptr<Runfiles> runfiles(Runfiles::Create(argv[0], &error));
  if (!runfiles) {
    std::fprintf(stderr, "compare: cannot find runfiles: %s\n", error.c_str());
    return 2;
  }
  auto locate = [&](const std::string& path) {
    return runfiles->Rlocation("greenrt/" + path);
  };
  // Removes the certificate's directory however main_impl returns.
  struct RemoveOnExit {
    std::string path;
    ~RemoveOnExit() {
      std::error_code ignored;
      if (!path.empty()) fs::remove_all(path, ignored);
    }
  } certificate_dir_guard;
  std::string& certificate_dir = certificate_dir_guard.path;
  Programs programs;
  programs.greenrt = locate("bench/bench_greenrt");
  programs.greenrt_echo = locate("bench/greenrt_echo_server");
  programs.fiber = locate("bench/bench_fiber");
  programs.loadgen = locate("bench/loadgen");
  {
    // A fresh certificate for the TLS workloads, in a directory of our own.
    char dir_template[] = "/tmp/greenrt-bench-tls-XXXXXX";
    const char* dir = mkdtemp(dir_template);
    Command make;
    make.argv = {locate("bench/make_certificate"), dir ? dir : "/tmp"};
    const ProcessResult made = run_process(make, 30);
    if (!dir || !made.ok()) {
      std::fprintf(stderr, "compare: could not make a TLS certificate: %s\n",
                   made.describe().c_str());
      return 2;
    }
    config.cert = std::string(dir) + "/cert.pem";
    config.key = std::string(dir) + "/key.pem";
    if (dir) certificate_dir = dir;
  }
  config.greenrt_echo_available = fs::exists(programs.greenrt_echo);

  std::vector<Workload> suite;
  for (Workload& w : make_suite(config)) {
    if (selected(w, options.only)) suite.push_back(std::move(w));
  }
  if (options.list) {
    for (const Workload& w : make_suite(config)) {
      std::printf("%-22s %s\n", w.name.c_str(), w.description.c_str());
    }
    return 0;
  }
  if (suite.empty()) {
    std::fprintf(stderr, "compare: no workload matches --only; see --list\n");
    return 2;
  }

  // Where the Go build and server logs go.
  fs::path cache = options.cache_dir;
  if (cache.empty()) {
    if (const char* tmp = std::getenv("TEST_TMPDIR")) {
      cache = fs::path(tmp) / "greenrt-bench";
    } else if (const char* xdg = std::getenv("XDG_CACHE_HOME")) {
      cache = fs::path(xdg) / "greenrt-bench";
    } else if (const char* home = std::getenv("HOME")) {
      cache = fs::path(home) / ".cache" / "greenrt-bench";
    } else {
      cache = fs::temp_directory_path() /
              ("greenrt-bench-" + std::to_string(getuid()));
    }
  }
  std::error_code ec;
  fs::create_directories(cache, ec);

  std::string go = options.go;
  if (go.empty()) {
    for (const char* candidate : {"/usr/lib/go/bin/go", "/usr/bin/go"}) {
      if (access(candidate, X_OK) == 0) {
        go = candidate;
        break;
      }
    }
  }
  if (go.empty()) {
    std::fprintf(stderr,
                 "compare: no Go toolchain (looked for /usr/lib/go/bin/go and "
                 "/usr/bin/go); install golang-go (tools/bazel does) or pass "
                 "--go PATH\n");
    return 2;
  }
  std::fprintf(stderr, "compare: building the Go programs with %s ...\n",
               go.c_str());
  programs.go = build_go(*runfiles, go, cache, &error);
  if (programs.go.empty()) {
    std::fprintf(stderr, "compare: %s\n", error.c_str());
    return 1;
  }

  RunInfo info;
  info.date = now_iso8601();
  info.cores = cores;
  info.workers = config.workers;
  info.mode = options.mode == Mode::kFull    ? "full"
              : options.mode == Mode::kQuick ? "quick"
                                             : "smoke";
  info.runs = options.runs >= 1              ? options.runs
              : options.mode == Mode::kFull  ? 5
              : options.mode == Mode::kQuick ? 3
                                             : 1;
  info.warmup = options.warmup >= 0            ? options.warmup
                : options.mode == Mode::kSmoke ? 0
                                               : 1;
  info.go_version = go_version(go);
  info.boost_version = boost_version();
  info.load_before = load_average();

  Driver driver(programs, cache);
  if (cores >= 2) {
    for (int c = 0; c < config.echo_workers; ++c)
      driver.server_cpus_.push_back(c);
    for (int c = config.echo_workers; c < cores; ++c)
      driver.loadgen_cpus_.push_back(c);
  }

  int total = 0;
  for (const Workload& w : suite) {
    for (Impl impl : kImpls) total += w.available[static_cast<int>(impl)];
  }
  total *= info.runs + info.warmup;
  Progress progress(total);
  std::vector<WorkloadRuns> results;
  int failures = 0;
  for (const Workload& w : suite) {
    WorkloadRuns result{w, {}};
    for (int round = 0; round < info.warmup + info.runs; ++round) {
      const bool warmup = round < info.warmup;
      // Alternate: each round starts with the next program, so no runtime
      // always runs right after the same neighbour (caches, frequency).
      for (int k = 0; k < kImplCount; ++k) {
        const Impl impl = kImpls[(round + k) % kImplCount];
        const int i = static_cast<int>(impl);
        if (!w.available[i]) continue;
        char what[160];
        std::snprintf(what, sizeof what, "%-20s %-12s %s", w.name.c_str(),
                      impl_title(impl),
                      warmup
                          ? "warm-up"
                          : ("run " + std::to_string(round - info.warmup + 1) +
                             "/" + std::to_string(info.runs))
                                .c_str());
        progress.show(what);
        std::map<std::string, double> values;
        std::string run_error;
        const bool ok = driver.run_once(w, impl, &values, &run_error);
        if (!ok) {
          ++failures;
          progress.note("compare: " + w.name + " (" + impl_title(impl) +
                        ") failed: " + run_error);
          result.impls[i].errors.push_back(run_error);
        } else if (!warmup) {
          result.impls[i].runs.push_back(std::move(values));
        }
      }
    }
    results.push_back(std::move(result));
  }
  progress.finish();
  info.load_after = load_average();

  const std::vector<Row> rows = summarise(results);
  std::printf("%s", format_table(rows, info).c_str());

  fs::path out_dir = options.out_dir;
  if (out_dir.empty()) {
    if (options.mode == Mode::kSmoke) {
      out_dir = cache;
    } else if (const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY")) {
      out_dir = fs::path(ws) / "bench" / "results";
    } else {
      out_dir = fs::path("bench") / "results";
    }
  }
  // Only a full run of everything replaces the published latest.*.
  const std::string stem = options.mode == Mode::kSmoke   ? "smoke"
                           : !options.only.empty()        ? "partial"
                           : options.mode == Mode::kQuick ? "quick"
                                                          : "latest";
  fs::create_directories(out_dir, ec);
  const fs::path json = out_dir / (stem + ".json");
  const fs::path svg = out_dir / (stem + ".svg");
  std::ofstream(json) << format_json(rows, info);
  std::ofstream(svg) << format_svg(rows, info);
  std::printf("\nwrote %s and %s\n", json.c_str(), svg.c_str());
  if (failures) {
    std::printf("%d run(s) failed; see the notes above\n", failures);
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) { return bench::main_impl(argc, argv); }
