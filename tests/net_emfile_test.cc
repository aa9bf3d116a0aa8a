// serve() survives running out of file descriptors while accepting.
//
// The server runs in a forked child whose RLIMIT_NOFILE is lowered until
// only a few more descriptors fit (so accept(2) fails with EMFILE while
// clients wait in the backlog); the clients run in the parent, which keeps
// the session's limit. Every client must be served, the child must report
// the exhaustion exactly once, and exit normally (StopServe).
//
// The fork happens before this process starts any runtime (this file holds
// this one test), so the child inherits no other threads.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "tests/emfile_support.h"

using namespace std::chrono_literals;
namespace net = green::net;

namespace {

constexpr int kClients = 16;
// Descriptors the child may still open once its limit is lowered: a few
// clients at once, far fewer than kClients.
constexpr int kRoom = 3;

// The child: serves kClients echo clients on the inherited listening
// socket with a tiny descriptor budget. Exit status 0 on success;
// otherwise a code naming what went wrong.
int run_child(int listen_fd, int report_fd) {
  std::atomic<int> served{0};
  std::atomic<int> exhaustion_reports{0};
  int status = 0;
  try {
    green::Options options;
    options.workers = 2;
    status = green::run(
        [&] {
          net::Listener listener = net::Listener::adopt(listen_fd);
          if (!green::testing::leave_descriptor_room(kRoom)) return 10;
          net::ServeOptions serve_options;
          serve_options.report = [&](std::exception_ptr error,
                                     const std::string& where) {
            std::string line = where;
            try {
              std::rethrow_exception(error);
            } catch (const std::exception& e) {
              line += std::string(": ") + e.what();
            }
            line += "\n";
            if (where.find("out of file descriptors") != std::string::npos) {
              exhaustion_reports.fetch_add(1);
            }
            (void)!::write(report_fd, line.data(), line.size());
          };
          net::serve(
              listener,
              [&](net::TcpSocket& client) {
                char c;
                if (client.read_some(&c, 1) != 1) return;
                client.write_all(&c, 1);
                // Hold the descriptor until the client is done with it.
                while (client.read_some(&c, 1) > 0) {
                }
                if (served.fetch_add(1) + 1 == kClients) {
                  throw net::StopServe();
                }
              },
              serve_options);
          return 0;
        },
        options);
  } catch (const std::exception& e) {
    const std::string line = std::string("child failed: ") + e.what() + "\n";
    (void)!::write(report_fd, line.data(), line.size());
    return 11;
  }
  if (status != 0) return status;
  if (served.load() != kClients) return 12;
  if (exhaustion_reports.load() != 1) return 13;
  return 0;
}

}  // namespace

TEST_CASE("EMFILE during accept does not kill the server", "[net][serve]") {
  // The listening socket, made before the fork and shared with the child.
  sockaddr_in address;
  const int listen_fd = green::testing::loopback_listen_socket(address);
  REQUIRE(listen_fd >= 0);
  const std::uint16_t port = ntohs(address.sin_port);
  int reports[2];
  REQUIRE(::pipe(reports) == 0);

  std::fflush(nullptr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(reports[0]);
    // _exit: no Catch2 reporting, no static destructors in the child.
    ::_exit(run_child(listen_fd, reports[1]));
  }
  ::close(reports[1]);
  ::close(listen_fd);

  std::atomic<int> echoed{0};
  green::Options options;
  options.workers = 2;
  green::run(
      [&] {
        const net::Endpoint server = net::endpoint("127.0.0.1", port);
        std::vector<green::GreenThread<void>> clients;
        for (int i = 0; i < kClients; ++i) {
          clients.push_back(green::spawn([&, i] {
            net::TcpSocket socket = net::connect(server);
            socket.set_timeout(30s);  // a broken server fails, not hangs
            const char c = static_cast<char>('a' + i);
            socket.write_all(&c, 1);
            char back = 0;
            if (socket.read_some(&back, 1) == 1 && back == c) {
              echoed.fetch_add(1);
            }
          }));  // closing lets the child's handler end
        }
        for (auto& client : clients) {
          try {
            client.wait();
          } catch (const std::exception& e) {
            std::fprintf(stderr, "client failed: %s\n", e.what());
          }
        }
      },
      options);

  // Wait for the child (bounded: killed after 30 s).
  const std::optional<int> status = green::testing::wait_for_child(child, 30);
  std::string report_text;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(reports[0], buffer, sizeof buffer)) > 0) {
    report_text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(reports[0]);

  INFO("child reports:\n" << report_text);
  REQUIRE(echoed.load() == kClients);
  REQUIRE(status.has_value());  // it ended by itself
  REQUIRE(WIFEXITED(*status));
  REQUIRE(WEXITSTATUS(*status) == 0);
  REQUIRE(report_text.find("out of file descriptors") != std::string::npos);
  REQUIRE(report_text.find("Too many open files") != std::string::npos);
}
