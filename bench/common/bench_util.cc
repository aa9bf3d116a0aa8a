#include "bench/common/bench_util.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace bench {

Flags::Flags(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string name = argv[i];
    if (name.size() < 2 || name[0] != '-' || i + 1 >= argc) {
      std::fprintf(stderr, "%s: expected -name value pairs, got '%s'\n",
                   argv[0], name.c_str());
      std::exit(2);
    }
    name.erase(0, name[1] == '-' ? 2 : 1);
    values_[name] = argv[++i];
    used_[name] = false;
  }
}

long Flags::get(const std::string& name, long fallback) {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  used_[name] = true;
  return std::strtol(it->second.c_str(), nullptr, 10);
}

double Flags::get_double(const std::string& name, double fallback) {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  used_[name] = true;
  return std::strtod(it->second.c_str(), nullptr);
}

std::string Flags::get_string(const std::string& name,
                              const std::string& fallback) {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  used_[name] = true;
  return it->second;
}

void Flags::check_all_used(const char* program) const {
  for (const auto& [name, used] : used_) {
    if (!used) {
      std::fprintf(stderr, "%s: unknown flag -%s\n", program, name.c_str());
      std::exit(2);
    }
  }
}

void print_result(const std::map<std::string, double>& result) {
  std::string line = "RESULT";
  for (const auto& [key, value] : result) {
    char number[64];
    std::snprintf(number, sizeof number, "%.17g", value);
    line += " " + key + "=" + number;
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

double resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  if (!(statm >> size >> resident)) return -1;
  return static_cast<double>(resident) * sysconf(_SC_PAGESIZE);
}

double peak_resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream fields(line.substr(6));
      long kb = 0;
      fields >> kb;
      return static_cast<double>(kb) * 1024;
    }
  }
  return -1;
}

}  // namespace bench
