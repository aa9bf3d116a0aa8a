// serve() stops when it is killed while its report hook blocks on the
// out-of-descriptors report.
//
// As in net_emfile_test.cc, the server runs in a forked child (forked
// before this process starts any runtime; this file holds this one test)
// whose RLIMIT_NOFILE is lowered so that accept(2) fails with EMFILE. Its
// report hook then blocks; the child's main green thread kills serve() and
// must see it end. A hook that swallowed the kill used to leave serve()
// accepting forever (the child then hangs and is killed after 30 s).
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "tests/emfile_support.h"
#include "tests/test_support.h"

using namespace std::chrono_literals;
namespace net = green::net;

namespace {

// Descriptors the child may still open once its limit is lowered.
constexpr int kRoom = 2;
// Clients that connect: more than fit, so accept runs out.
constexpr int kClients = kRoom + 4;

// Exit status 0 when serve() ended by the kill; a code otherwise.
int run_child(int listen_fd) {
  try {
    green::Options options;
    options.workers = 2;
    return green::run(
        [&] {
          net::Listener listener = net::Listener::adopt(listen_fd);
          if (!green::testing::leave_descriptor_room(kRoom)) return 10;
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
  sockaddr_in address;
  const int listen_fd = green::testing::loopback_listen_socket(address);
  REQUIRE(listen_fd >= 0);

  std::fflush(nullptr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(run_child(listen_fd));  // no Catch2 in the child
  ::close(listen_fd);

  // Plain blocking clients that stay connected until the child is done,
  // so its handlers hold their descriptors and accept runs out. Once it
  // has, the child may be done before the last ones connect (its
  // listening socket then closes): a refused connect ends the loop, and
  // the child's exit status says whether all went well.
  std::vector<int> clients;
  for (int i = 0; i < kClients; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    clients.push_back(fd);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) !=
        0) {
      break;
    }
  }

  // Wait for the child (bounded: killed after 30 s).
  const std::optional<int> status = green::testing::wait_for_child(child, 30);
  for (int fd : clients) ::close(fd);
  REQUIRE(status.has_value());  // it ended by itself
  INFO("child status " << *status);
  REQUIRE(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
}
