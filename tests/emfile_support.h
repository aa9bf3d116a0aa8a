// Shared by the tests that run a server out of file descriptors in a forked
// child (net_emfile_test.cc, net_emfile_kill_test.cc): each file holds one
// test and forks before it starts any runtime, so the child inherits no
// other threads.
#ifndef GREEN_TESTS_EMFILE_SUPPORT_H_
#define GREEN_TESTS_EMFILE_SUPPORT_H_

#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>

namespace green::testing {

inline int highest_open_fd() {
  int highest = 2;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* entry = ::readdir(dir)) {
      const int fd = std::atoi(entry->d_name);
      if (fd > highest) highest = fd;
    }
    ::closedir(dir);
  }
  return highest;
}

// In the child's main green thread (every worker already holds its reactor
// descriptors -- Asio's epoll, eventfd and timerfd, and the readiness
// poller's epoll set -- made when the worker was constructed): lowers
// RLIMIT_NOFILE so that only `room` more descriptors fit. False if the
// limit cannot be set.
inline bool leave_descriptor_room(int room) {
  rlimit limit;
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = highest_open_fd() + 1 + room;
  return ::setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

// A listening socket on 127.0.0.1 (any port), made before the fork and
// shared with the child; `address` gets its address. -1 on failure.
inline int loopback_listen_socket(sockaddr_in& address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  address = sockaddr_in{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(fd, 64) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Waits up to `seconds` for the child to exit; its wait status, or nullopt
// if it did not (it is then killed).
inline std::optional<int> wait_for_child(pid_t child, int seconds) {
  int status = 0;
  for (int i = 0; i < seconds * 100; ++i) {
    if (::waitpid(child, &status, WNOHANG) == child) return status;
    ::usleep(10000);
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, &status, 0);
  return std::nullopt;
}

}  // namespace green::testing

#endif  // GREEN_TESTS_EMFILE_SUPPORT_H_
