// The exceptions green::net throws, and how to tell them apart.
//
//   try {
//     socket.read_exact(buffer, sizeof buffer);
//   } catch (const green::net::TimeoutError&) {        // set_timeout expired
//   } catch (const green::net::EndOfStream&) {         // peer closed
//   mid-message } catch (const std::system_error& e) {
//     if (e.code() == std::errc::connection_reset) ...  // peer reset
//   }
//
// Everything the operating system reports is a std::system_error whose
// code() is the errno (system category; compare it against std::errc), and
// whose what() names the call and the peer where known, e.g.
// "green::net::connect 127.0.0.1:9: Connection refused". Misuse (two green
// threads reading one socket at once, a call on a moved-from socket) is a
// std::logic_error. TLS failures are TlsError. Interrupts (GreenThread::kill,
// green::Timeout) pass through unchanged.
#ifndef GREEN_NET_ERRORS_H_
#define GREEN_NET_ERRORS_H_

#include <string>
#include <system_error>

namespace green::net {

// A per-socket deadline (set_timeout) passed. The socket stays open and
// usable: nothing was consumed by the call that timed out (see README,
// "Deadlines").
class TimeoutError : public std::system_error {
 public:
  explicit TimeoutError(const std::string& what)
      : std::system_error(std::make_error_code(std::errc::timed_out), what) {}
};

// The peer ended the stream in the middle of a read_exact().
class EndOfStream : public std::system_error {
 public:
  explicit EndOfStream(const std::string& what);
};

// A TLS handshake, read, write or shutdown failed; code() is in OpenSSL's
// (asio::error::get_ssl_category()) or asio's ssl stream category. Only
// the connection it was raised on is affected.
class TlsError : public std::system_error {
 public:
  using std::system_error::system_error;
};

namespace detail {

// Throws std::system_error(error, system_category) with `what` as prefix.
[[noreturn]] void throw_errno(int error, const std::string& what);

}  // namespace detail
}  // namespace green::net

#endif  // GREEN_NET_ERRORS_H_
