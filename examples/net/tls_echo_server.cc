// A TLS echo server with a certificate made at start-up: no key file is
// checked in or even written. make_self_signed_certificate() builds an
// ECDSA P-256 key and a self-signed X.509 certificate in memory with the
// OpenSSL 3 API (net/self_signed.cc shows the calls); the server context
// is loaded from that PEM text.
//
//   bazel run //examples/net:tls_echo_server             # port 6443
//   (it prints the certificate; save it as cert.pem, then)
//   openssl s_client -connect localhost:6443 -CAfile cert.pem
//   bazel run //examples/net:tls_echo_server -- --demo   # self-contained
//
// Handshake failures (a plain-TCP client, garbage, an untrusting client)
// are exceptions on that connection only; HandlerErrors::kReport logs them
// and the server goes on.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "examples/net/line_reader.h"
#include "green/green.h"

namespace net = green::net;

namespace {

void handle(net::TlsContext& context, net::TcpSocket& client,
            const net::Endpoint& peer) {
  net::TlsStream tls = net::wrap_ssl(std::move(client), context,
                                     /*server_side=*/true);
  std::printf("%s: %s handshake done\n", net::to_string(peer).c_str(),
              tls.protocol_version().c_str());
  examples::LineReader reader(tls);
  while (std::optional<std::string> line = reader.read_line()) {
    tls.write_all(*line);
  }
  tls.shutdown();  // close_notify
}

int demo(net::TlsContext& server_context, const std::string& certificate) {
  net::Listener listener = net::listen(net::endpoint("127.0.0.1", 0));
  const net::Endpoint address = listener.local_endpoint();
  net::ServeOptions options;
  options.handler_errors = net::HandlerErrors::kReport;
  auto server = green::spawn([&] {
    net::serve(
        listener,
        [&](net::TcpSocket& client, const net::Endpoint& peer) {
          handle(server_context, client, peer);
        },
        options);
  });
  // A client that trusts exactly our certificate and checks the name.
  net::TlsContext client_context = net::client_context();
  net::trust_certificate(client_context, certificate);
  bool ok = true;
  {
    net::TlsStream tls = net::wrap_ssl(net::connect(address), client_context,
                                       {.server_name = "localhost"});
    examples::LineReader reader(tls);
    for (const char* line : {"hello over TLS\n", "second line\n"}) {
      tls.write_all(line);
      const std::optional<std::string> back = reader.read_line();
      std::printf("demo: sent %s      got %s", line,
                  back ? back->c_str() : "(nothing)\n");
      ok = ok && back == line;
    }
    tls.shutdown();
  }
  // A plain-TCP client speaking garbage: its handler fails, the server
  // reports it and keeps serving.
  {
    net::TcpSocket plain = net::connect(address);
    plain.write_all("GET / HTTP/1.0\r\n\r\n");
    char buffer[256];
    try {
      while (plain.read_some(buffer, sizeof buffer) > 0) {
      }
    } catch (const std::system_error&) {
    }
  }
  // ... and a client that does not trust the certificate fails cleanly.
  net::TlsContext untrusting = net::client_context();
  try {
    net::wrap_ssl(net::connect(address), untrusting,
                  {.server_name = "localhost"});
    ok = false;
  } catch (const net::TlsError& e) {
    std::printf("demo: untrusting client refused, as it should: %s\n",
                e.what());
  }
  server.kill();
  try {
    server.wait();
  } catch (const green::GreenletExit&) {
  }
  std::printf("demo: %s\n", ok ? "TLS echo works" : "FAILED");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const bool run_demo = argc > 1 && std::strcmp(argv[1], "--demo") == 0;
  const net::SelfSigned pair = net::make_self_signed_certificate("localhost");
  return green::run([&] {
    net::TlsContext context = net::server_context_from_pem(
        pair.certificate_pem, pair.private_key_pem);
    if (run_demo) return demo(context, pair.certificate_pem);
    std::printf("TLS echo server on port 6443, certificate:\n%s",
                pair.certificate_pem.c_str());
    net::ServeOptions options;
    options.handler_errors = net::HandlerErrors::kReport;
    net::serve(
        net::listen(net::endpoint("0.0.0.0", 6443)),
        [&](net::TcpSocket& client, const net::Endpoint& peer) {
          handle(context, client, peer);
        },
        options);
    return 0;
  });
}
