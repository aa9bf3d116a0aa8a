// The code snippets of README.md, compiled (and run briefly) so that they
// stay true.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "green/green.h"

using namespace std::chrono_literals;

namespace {

std::vector<std::string> load_jobs() { return {"a", "b", "c", "d", "e"}; }

int handled = 0;
void handle(const std::string&) { ++handled; }

}  // namespace

int main() {
  // "A first program"
  const int first = green::run([] {
    auto doubled = green::spawn(
        [](int x) {
          green::sleep(std::chrono::milliseconds(10));
          return 2 * x;
        },
        21);
    return doubled.wait() == 42 ? 0 : 1;
  });

  // "Synchronisation"
  green::run([] {
    green::Queue<std::string> jobs(0);  // a channel
    green::GreenPool workers(4);
    for (int i = 0; i < 4; ++i) {
      workers.spawn_n([&] {
        while (auto job = jobs.get(100ms)) handle(*job);
      });
    }
    for (auto& j : load_jobs()) jobs.put(j);  // waits for a free worker
    workers.waitall();
  });

  // "Networking": the echo server, stopped by a client after one echo.
  const bool echoed = green::run([] {
    namespace net = green::net;
    auto listener = net::listen("127.0.0.1", 0);
    const auto address = listener.local_endpoint();
    auto client = green::spawn([address] {
      net::TcpSocket socket = net::connect(address);
      socket.write_all("ping", 4);
      char reply[4];
      const bool ok =
          socket.read_exact(reply, 4) && std::string(reply, 4) == "ping";
      return ok;
    });
    green::spawn_n([&listener, client]() mutable {
      client.wait();
      listener.close();  // ends serve() below
    });
    try {
      net::serve(listener, [](net::TcpSocket& client, const net::Endpoint&) {
        char buffer[4096];
        while (std::size_t n = client.read_some(buffer, sizeof buffer))
          client.write_all(buffer, n);
      });
    } catch (const std::exception&) {
      // a closed listener ends serve() with an error: expected here
    }
    return client.wait();
  });

  std::printf("first=%d handled=%d echoed=%d\n", first, handled, echoed);
  return first == 0 && handled == 5 && echoed ? 0 : 1;
}
