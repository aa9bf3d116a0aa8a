// wrap_ssl(): TLS over a green TcpSocket, with OpenSSL 3 through asio::ssl.
//
//   // Server (in a serve() handler):
//   static green::net::TlsContext context =
//       green::net::server_context_from_pem_files("cert.pem", "key.pem");
//   green::net::TlsStream tls =
//       green::net::wrap_ssl(std::move(client), context, /*server_side=*/true);
//   char buffer[4096];
//   while (std::size_t n = tls.read_some(buffer, sizeof buffer))
//     tls.write_all(buffer, n);
//
//   // Client: verifies the server's certificate and name by default.
//   green::net::TlsContext context = green::net::client_context();
//   green::net::TlsStream tls = green::net::wrap_ssl(
//       green::net::connect("example.com", 443), context,
//       {.server_name = "example.com"});
//
// Eventlet's wrap_ssl(sock, server_side=...) wraps a socket and, like
// Python's do_handshake_on_connect, handshakes at once; so does this one
// (TlsOptions::handshake = false defers it to handshake()).
//
// How it runs green: OpenSSL works on memory BIOs (asio::ssl's engine), never
// on the fd. Each call runs the engine under a lock, writes what it produced
// with the green socket's write_all, and feeds it ciphertext read with the
// green read_some -- so every wait is a green park (Timeout, kill and the
// socket's set_timeout all apply) and a worker never blocks.
//
// Concurrency: like TcpSocket, one reader and one writer may use a
// TlsStream at once (full duplex: the engine lock is never held across a
// park, and output that a read produces is sent by whichever side holds
// the socket's write slot); two readers or two writers are a
// std::logic_error.
//
// Errors: a failed handshake, bad record or verification failure throws
// TlsError on that stream only (the context and other connections are
// unaffected). A peer's close_notify reads as end of stream (read_some
// returns 0); a TCP close without close_notify does too unless
// TlsOptions::allow_ragged_eof is false (Python's suppress_ragged_eofs).
// An interrupted read leaves the stream usable; an interrupted write may
// have sent part of a record, so later writes throw (reads still work).
// Renegotiation is refused (SSL_OP_NO_RENEGOTIATION).
#ifndef GREEN_NET_TLS_H_
#define GREEN_NET_TLS_H_

#include <asio/ssl/context.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "net/socket.h"

namespace green::net {

// A TLS configuration shared by many connections (thread-safe to share).
using TlsContext = asio::ssl::context;

// A server context from PEM files: the certificate chain (leaf first) and
// its private key. TLS 1.2 and 1.3 only.
TlsContext server_context_from_pem_files(
    const std::string& certificate_chain_file,
    const std::string& private_key_file);
// The same from PEM text (e.g. from make_self_signed_certificate()).
TlsContext server_context_from_pem(std::string_view certificate_chain_pem,
                                   std::string_view private_key_pem);
// A client context that verifies servers by default: the system's trusted
// roots, SSL_VERIFY_PEER, TLS 1.2+. Give TlsOptions::server_name to check
// the name too.
TlsContext client_context();
// Trusts `certificate_pem` (a private CA, or a self-signed certificate).
void trust_certificate(TlsContext& context, std::string_view certificate_pem);

struct TlsOptions {
  bool server_side = false;
  // Client: sent as SNI and checked against the certificate (a DNS name,
  // or an IP address checked against its IP SANs). Empty: no name check.
  std::string server_name;
  // Handshake inside wrap_ssl().
  bool handshake = true;
  // A TCP close without close_notify reads as end of stream.
  bool allow_ragged_eof = true;
};

class TlsStream {
 public:
  TlsStream() noexcept;  // not open
  TlsStream(TlsStream&&) noexcept;
  TlsStream& operator=(TlsStream&&) noexcept;
  // Closes the socket (without close_notify: call shutdown() for that).
  ~TlsStream();

  // Runs the handshake (if wrap_ssl did not). TlsError on failure.
  void handshake();

  // As TcpSocket's, on the decrypted stream.
  std::size_t read_some(void* data, std::size_t size);
  [[nodiscard]] bool read_exact(void* data, std::size_t size);
  void write_all(const void* data, std::size_t size);
  void write_all(std::string_view data) { write_all(data.data(), data.size()); }

  // Sends close_notify and half-closes the TCP connection; the peer reads
  // end of stream, and we can still read until it closes too. A peer that
  // already closed the connection is not an error (nothing to shut down);
  // a failing write of close_notify is (e.g. broken_pipe after a reset).
  void shutdown();
  void close() noexcept;
  bool is_open() const noexcept;

  // The transport: addresses, options, set_timeout (bounds each of its
  // reads and writes).
  TcpSocket& socket();
  void set_timeout(std::optional<std::chrono::nanoseconds> timeout);

  // "TLSv1.3", after the handshake.
  std::string protocol_version() const;
  // OpenSSL's SSL* (still owned by the stream).
  void* native_handle();

 private:
  friend TlsStream wrap_ssl(TcpSocket socket, TlsContext& context,
                            const TlsOptions& options);
  struct Impl;
  explicit TlsStream(std::unique_ptr<Impl> impl) noexcept;
  Impl& impl(const char* call) const;

  std::unique_ptr<Impl> impl_;
};

// Wraps a connected socket (taking it over) and, by default, handshakes.
TlsStream wrap_ssl(TcpSocket socket, TlsContext& context,
                   const TlsOptions& options = {});
// Eventlet's wrap_ssl(sock, server_side=...).
TlsStream wrap_ssl(TcpSocket socket, TlsContext& context, bool server_side);

}  // namespace green::net

#endif  // GREEN_NET_TLS_H_
