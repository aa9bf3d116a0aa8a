// serve() stops when it is killed while its report hook blocks on the
// out-of-descriptors report.
//
// As in net_emfile_test.cc, the server runs in a forked child (forked
// before this process starts any runtime; this file holds this one test)
// whose RLIMIT_NOFILE is lowered so that accept(2) fails with EMFILE. Its
// report hook then blocks; the child's main green thread kills serve() and
// must see it end. A hook that swallowed the kill used to leave serve()
// accepting forever (the child then hangs and is killed after 30 s).
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstdlib>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "runtime/scheduler.h"
#include "runtime/worker.h"
#include "tests/test_support.h"

using namespace std::chrono_literals;
namespace net = green::net;

namespace {

// Descriptors the child may still open once its limit is lowered.
constexpr int kRoom = 2;
// Clients that connect: more than fit, so accept runs out.
constexpr int kClients = kRoom + 4;

int highest_open_fd() {
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

// Exit status 0 when serve() ended by the kill; a code otherwise.
int run_child(int listen_fd) {
  try {
    green::Options options;
    options.workers = 2;
    return green::run(
        [&] {
          net::Listener listener = net::Listener::adopt(listen_fd);
          // Every worker's Asio reactor exists before the budget shrinks
          // (see net_emfile_test.cc).
          green::detail::Scheduler& scheduler =
              green::detail::current_worker()->scheduler();
          for (std::size_t i = 0; i < scheduler.worker_count(); ++i) {
            asio::steady_timer warm_up(scheduler.worker(i).io());
          }
          rlimit limit;
          ::getrlimit(RLIMIT_NOFILE, &limit);
          limit.rlim_cur = highest_open_fd() + 1 + kRoom;
          if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return 10;
          green::testing::Signal in_hook;
          auto server = green::spawn([&] {
            net::ServeOptions serve_options;
            serve_options.report = [&](std::exception_ptr,
                                       const std::string& where) {
              if (where.find("out of file descriptors") == std::string::npos) {
                return;
              }
              in_hook.post();
              green::sleep(std::chrono::hours(1));  // until killed
            };
            net::serve(
                listener,
                [](net::TcpSocket& client) {
                  char c;
                  while (client.read_some(&c, 1) > 0) {
                  }
                },
                serve_options);
          });
          in_hook.wait();
          server.kill();
          try {
            server.wait();
          } catch (const green::GreenletExit&) {
            return 0;  // ended by the kill, as it should
          }
          return 12;  // returned normally: not killed
        },
        options);
  } catch (const std::exception&) {
    return 11;
  }
}

}  // namespace

TEST_CASE("killing serve() while its report hook blocks stops it",
          "[net][serve]") {
  const int listen_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(listen_fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listen_fd, reinterpret_cast<sockaddr*>(&address),
                 sizeof address) == 0);
  REQUIRE(::listen(listen_fd, 64) == 0);
  socklen_t length = sizeof address;
  REQUIRE(::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&address),
                        &length) == 0);

  std::fflush(nullptr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(run_child(listen_fd));  // no Catch2 in the child
  ::close(listen_fd);

  // Plain blocking clients that stay connected until the child is done,
  // so its handlers hold their descriptors and accept runs out.
  std::vector<int> clients;
  for (int i = 0; i < kClients; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address),
                      sizeof address) == 0);
    clients.push_back(fd);
  }

  // Wait for the child (bounded: kill it after 30 s).
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 3000 && done == 0; ++i) {
    done = ::waitpid(child, &status, WNOHANG);
    if (done == 0) ::usleep(10000);
  }
  if (done == 0) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
  }
  for (int fd : clients) ::close(fd);
  INFO("child status " << status);
  REQUIRE(done != 0);  // it ended by itself
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
