#include "bench/driver/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

extern char** environ;

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string last_lines(const std::string& text, int lines) {
  std::size_t end = text.size();
  while (end > 0 && text[end - 1] == '\n') --end;
  std::size_t begin = end;
  for (int i = 0; i < lines && begin > 0; ++i) {
    const std::size_t newline = text.rfind('\n', begin - 1);
    begin = newline == std::string::npos ? 0 : newline;
  }
  if (begin < end && text[begin] == '\n') ++begin;
  return text.substr(begin, end - begin);
}

void decode_status(int status, ProcessResult* result) {
  if (WIFEXITED(status)) result->exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result->signal = WTERMSIG(status);
}

}  // namespace

std::string ProcessResult::describe() const {
  std::string what;
  if (timed_out) {
    what =
        "timed out after " + std::to_string(static_cast<int>(seconds)) + " s";
  } else if (signal != 0) {
    what = std::string("killed by signal ") + std::to_string(signal) + " (" +
           strsignal(signal) + ")";
  } else {
    what = "exit " + std::to_string(exit_code);
  }
  const std::string tail = last_lines(err, 3);
  if (!tail.empty()) what += ": " + tail;
  while (!what.empty() && what.back() == '\n') what.pop_back();
  return what;
}

pid_t spawn(const Command& command, int in_fd, int out_fd, int err_fd) {
  // Build everything the child needs before fork: only async-signal-safe
  // calls after it.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    if (!command.env.count(name)) env_strings.push_back(entry);
  }
  for (const auto& [name, value] : command.env) {
    env_strings.push_back(name + "=" + value);
  }
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = command.argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : command.cpus) CPU_SET(cpu, &set);

  const pid_t pid = fork();
  if (pid != 0) return pid;
  setpgid(0, 0);
  if (!command.cpus.empty()) sched_setaffinity(0, sizeof set, &set);
  if (in_fd >= 0) dup2(in_fd, 0);
  if (out_fd >= 0) dup2(out_fd, 1);
  if (err_fd >= 0) dup2(err_fd, 2);
  execve(argv[0], argv.data(), envp.data());
  const char message[] = "bench driver: exec failed\n";
  (void)!write(2, message, sizeof message - 1);
  _exit(127);
}

ProcessResult run_process(const Command& command, double timeout_seconds) {
  ProcessResult result;
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.err = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  const int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const auto start = Clock::now();
  const pid_t pid = spawn(command, devnull, out_pipe[1], err_pipe[1]);
  close(devnull);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid < 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    result.err = std::string("fork: ") + std::strerror(errno);
    return result;
  }
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  while (open_fds > 0) {
    const double left = timeout_seconds - seconds_since(start);
    if (left <= 0) {
      result.timed_out = true;
      kill(-pid, SIGKILL);
      break;
    }
    const int n = poll(fds, 2, static_cast<int>(left * 1000) + 1);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
        continue;
      }
      char buffer[4096];
      const ssize_t got = read(fds[i].fd, buffer, sizeof buffer);
      if (got > 0) {
        sinks[i]->append(buffer, static_cast<std::size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& fd : fds) {
    if (fd.fd >= 0) close(fd.fd);
  }
  int status = 0;
  // The pipes closed: the child is exiting (or was killed). Its helpers in
  // the same group could keep running; take them down too.
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  kill(-pid, SIGKILL);
  result.seconds = seconds_since(start);
  decode_status(status, &result);
  if (result.timed_out) result.signal = 0;
  return result;
}

bool Server::start(const Command& command, const std::string& log_path,
                   double timeout_seconds, std::string* error) {
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  const int log =
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  pid_ = spawn(command, in_pipe[0], out_pipe[1], log);
  if (log >= 0) close(log);
  close(in_pipe[0]);
  close(out_pipe[1]);
  stdin_fd_ = in_pipe[1];
  stdout_fd_ = out_pipe[0];
  if (pid_ < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    return false;
  }
  const auto start = Clock::now();
  std::string text;
  while (text.find('\n') == std::string::npos) {
    const double left = timeout_seconds - seconds_since(start);
    pollfd fd{stdout_fd_, POLLIN, 0};
    if (left <= 0 || poll(&fd, 1, static_cast<int>(left * 1000) + 1) <= 0) {
      *error = "no LISTENING line within " +
               std::to_string(static_cast<int>(timeout_seconds)) + " s";
      stop();
      return false;
    }
    char buffer[256];
    const ssize_t got = read(stdout_fd_, buffer, sizeof buffer);
    if (got <= 0) {
      std::ifstream log_file(log_path);
      std::stringstream log_text;
      log_text << log_file.rdbuf();
      *error = "server exited before listening: " + log_text.str();
      stop();
      return false;
    }
    text.append(buffer, static_cast<std::size_t>(got));
  }
  if (std::sscanf(text.c_str(), "LISTENING port=%d", &port_) != 1) {
    *error = "unexpected first line from server: " + text;
    stop();
    return false;
  }
  return true;
}

double Server::cpu_seconds() const {
  std::ifstream stat("/proc/" + std::to_string(pid_) + "/stat");
  std::string text;
  std::getline(stat, text);
  // Fields after the command name (which may contain spaces) in ")".
  const std::size_t paren = text.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // State is field 3; utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
}

void Server::stop() {
  if (pid_ <= 0) return;
  if (stdin_fd_ >= 0) close(stdin_fd_);
  stdin_fd_ = -1;
  int status = 0;
  const auto start = Clock::now();
  bool exited = false;
  while (seconds_since(start) < 2.0) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exited = true;
      break;
    }
    usleep(5000);
  }
  kill(-pid_, SIGKILL);
  if (!exited) waitpid(pid_, &status, 0);
  if (stdout_fd_ >= 0) close(stdout_fd_);
  stdout_fd_ = -1;
  pid_ = -1;
}

}  // namespace bench
