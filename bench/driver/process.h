// Child processes for the benchmark driver: run a program to completion
// with a time limit, or keep a server running in the background; either
// may be pinned to a set of CPUs.
//
//   Command c{.argv = {"/path/bench_go", "skynet", "-n", "1000"},
//             .env = {{"GOMAXPROCS", "2"}}, .cpus = {0}};
//   ProcessResult r = run_process(c, 60.0);
//   if (r.ok()) parse(r.out);
#ifndef GREEN_BENCH_DRIVER_PROCESS_H_
#define GREEN_BENCH_DRIVER_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace bench {

struct Command {
  std::vector<std::string> argv;
  // Added to (or replacing entries of) the driver's environment.
  std::map<std::string, std::string> env;
  // sched_setaffinity before exec; empty: no pinning.
  std::vector<int> cpus;
};

struct ProcessResult {
  bool timed_out = false;
  int exit_code = -1;  // valid when exited normally
  int signal = 0;      // the killing signal, or 0
  std::string out, err;
  double seconds = 0;
  bool ok() const { return !timed_out && signal == 0 && exit_code == 0; }
  // "exit 3", "killed by signal 11", "timed out after 60 s", and the
  // last lines of stderr.
  std::string describe() const;
};

// Runs `command`, capturing stdout and stderr; kills its process group
// after `timeout_seconds`.
ProcessResult run_process(const Command& command, double timeout_seconds);

// A server in the background. Its stdin is a pipe (closing it asks it to
// exit), its stdout is read for a "LISTENING port=N" line, its stderr goes
// to `log_path`.
class Server {
 public:
  Server() = default;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server() { stop(); }

  // Starts it and waits up to `timeout_seconds` for "LISTENING port=N".
  // Returns false (and fills `error`) if it does not come.
  bool start(const Command& command, const std::string& log_path,
             double timeout_seconds, std::string* error);
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // CPU seconds (user + system, all threads) used so far, from /proc.
  double cpu_seconds() const;
  // Closes stdin, waits up to 2 s, then kills the process group.
  void stop();

 private:
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  int port_ = 0;
};

// Spawns `command` with the given fds as stdin/stdout/stderr (-1: the
// driver's own); returns the pid or -1. The child gets its own process
// group, so a timeout kills its helpers too.
pid_t spawn(const Command& command, int in_fd, int out_fd, int err_fd);

}  // namespace bench

#endif  // GREEN_BENCH_DRIVER_PROCESS_H_
