// The Eventlet "basic" example, an echo server: every line a client sends
// comes straight back. One green thread per client, all of them on the
// runtime's workers; `serve` accepts and spawns, the handler just loops.
//
//   bazel run //examples/net:echo_server            # listens on port 6000
//   nc localhost 6000                               # type lines
//   bazel run //examples/net:echo_server -- --demo  # self-contained run
//
// Eventlet's version:
//   def handle(fd):
//       while True:
//           x = fd.readline()
//           if not x: break
//           fd.write(x); fd.flush()
//   server = eventlet.listen(('0.0.0.0', 6000))
//   eventlet.serve(server, handle)
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "examples/net/line_reader.h"
#include "green/green.h"

namespace net = green::net;

namespace {

void handle(net::TcpSocket& client, const net::Endpoint& peer) {
  std::printf("client connected: %s\n", net::to_string(peer).c_str());
  examples::LineReader reader(client);
  while (std::optional<std::string> line = reader.read_line()) {
    client.write_all(*line);
    std::printf("echoed %s", line->c_str());
    if (line->back() != '\n') std::printf("\n");
  }
  std::printf("client disconnected: %s\n", net::to_string(peer).c_str());
}

// Starts the server on an ephemeral port, talks to it, stops it.
int demo() {
  net::Listener listener = net::listen(net::endpoint("127.0.0.1", 0));
  const net::Endpoint address = listener.local_endpoint();
  std::printf("demo: server listening on %s\n",
              net::to_string(address).c_str());
  auto server = green::spawn([&] { net::serve(listener, handle); });
  std::vector<green::GreenThread<bool>> clients;
  for (int c = 0; c < 3; ++c) {
    clients.push_back(green::spawn([&, c] {
      net::TcpSocket socket = net::connect(address);
      examples::LineReader reader(socket);
      for (int i = 0; i < 3; ++i) {
        const std::string line =
            "client " + std::to_string(c) + " line " + std::to_string(i) + "\n";
        socket.write_all(line);
        if (reader.read_line() != line) return false;
      }
      return true;
    }));
  }
  bool ok = true;
  for (auto& client : clients) ok = client.wait() && ok;
  server.kill();  // serve() kills its handlers and ends with GreenletExit
  try {
    server.wait();
  } catch (const green::GreenletExit&) {
  }
  std::printf("demo: %s\n", ok ? "all echoes came back" : "FAILED");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const bool run_demo = argc > 1 && std::strcmp(argv[1], "--demo") == 0;
  return green::run([&] {
    if (run_demo) return demo();
    std::printf("server socket listening on port 6000\n");
    net::serve(net::listen(net::endpoint("0.0.0.0", 6000)), handle);
    return 0;
  });
}
