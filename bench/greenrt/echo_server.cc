// greenrt_echo_server: the echo workloads' server on greenrt's net/ layer,
// the same loop as echoServer in bench/go/echo.go: a green thread per
// connection (serve()) reads what is there and writes it back.
//
//   greenrt_echo_server -workers W [-cert cert.pem -key key.pem]
//
// Listens on 127.0.0.1 (port 0: the kernel picks), prints
// "LISTENING port=N", serves until killed or until stdin closes. With
// -cert/-key every connection is wrapped in TLS (wrap_ssl, server side).
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <thread>

#include "bench/common/bench_util.h"
#include "net/listener.h"
#include "net/serve.h"
#include "net/tls.h"
#include "runtime/run.h"

namespace {

// The echo loop, for TcpSocket and TlsStream alike. A client that resets
// the connection ends it quietly, as Go's handler returns on any error.
template <typename Stream>
void echo(Stream& stream) {
  char buffer[4096];
  try {
    while (std::size_t n = stream.read_some(buffer, sizeof buffer)) {
      stream.write_all(buffer, n);
    }
  } catch (const std::exception&) {
  }
}

}  // namespace

int main(int argc, char** argv) {
  bench::Flags flags(argc, argv, 1);
  green::Options options;
  options.workers = flags.get("workers", 0);
  const std::string cert = flags.get_string("cert", "");
  const std::string key = flags.get_string("key", "");
  flags.check_all_used("greenrt_echo_server");

  // The driver stops us by closing stdin (or by a signal).
  std::thread([] {
    char c;
    while (read(0, &c, 1) > 0) {
    }
    _exit(0);
  }).detach();

  return green::run(
      [&] {
        std::optional<green::net::TlsContext> tls;
        if (!cert.empty()) {
          tls.emplace(green::net::server_context_from_pem_files(cert, key));
        }
        green::net::Listener listener = green::net::listen("127.0.0.1", 0);
        std::printf("LISTENING port=%u\n",
                    unsigned{listener.local_endpoint().port()});
        std::fflush(stdout);
        green::net::ServeOptions serve_options;
        // Go's server has no limit either.
        serve_options.concurrency = 1 << 20;
        serve_options.handler_errors = green::net::HandlerErrors::kReport;
        serve_options.report = [](std::exception_ptr, const std::string&) {};
        green::net::serve(
            listener,
            [&](green::net::TcpSocket& socket) {
              if (!tls) return echo(socket);
              try {
                green::net::TlsStream stream = green::net::wrap_ssl(
                    std::move(socket), *tls, /*server_side=*/true);
                echo(stream);
              } catch (const std::exception&) {
                // A failed handshake ends this connection only.
              }
            },
            std::move(serve_options));
        return 0;
      },
      options);
}
