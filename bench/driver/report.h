// Results of a benchmark run and the three ways they are shown: a table
// on stdout, bench/results/*.json, and an SVG chart.
#ifndef GREEN_BENCH_DRIVER_REPORT_H_
#define GREEN_BENCH_DRIVER_REPORT_H_

#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/driver/workloads.h"

namespace bench {

// What one program produced in the measured runs (the warm-up is gone).
struct ImplRuns {
  std::vector<std::map<std::string, double>> runs;  // RESULT key -> value
  std::vector<std::string> errors;                  // failed runs, why
};

struct WorkloadRuns {
  Workload workload;
  std::array<ImplRuns, kImplCount> impls;
};

struct Stats {
  double median = 0, min = 0, max = 0;
  std::vector<double> runs;
};

// One row: a metric of a workload, summarised per program.
struct Row {
  std::string name, workload, unit;
  bool higher_better = false;
  int workers = 1;
  std::string scaling_group;
  std::array<std::optional<Stats>, kImplCount> stats;
  std::array<std::string, kImplCount> notes;  // why a program has no number
  std::optional<double> ratio_go, ratio_boost_fiber;  // greenrt / peer
  std::optional<Target> target;
  // Main rows only: medians of the programs' other numbers (requests,
  // client_cpu, total_mb, ...), for the JSON.
  std::array<std::map<std::string, double>, kImplCount> extras;
};

struct RunInfo {
  std::string date;  // ISO 8601, local time with offset
  int cores = 0, workers = 0;
  std::string mode;  // "full", "quick", "smoke"
  int runs = 0, warmup = 0;
  std::string go_version, boost_version;
  // /proc/loadavg's 1-minute figure before and after: other work on the
  // machine makes every number noisy (the table says so).
  double load_before = 0, load_after = 0;
};

std::vector<Row> summarise(const std::vector<WorkloadRuns>& results);

// The table for stdout.
std::string format_table(const std::vector<Row>& rows, const RunInfo& info);
// latest.json (schema: bench/README.md).
std::string format_json(const std::vector<Row>& rows, const RunInfo& info);
// Ratios to Go and Boost.Fiber, and the scaling runs.
std::string format_svg(const std::vector<Row>& rows, const RunInfo& info);

// 3 significant digits, k/M suffixes for large numbers: "48.2", "113k".
std::string format_number(double value);

}  // namespace bench

#endif  // GREEN_BENCH_DRIVER_REPORT_H_
