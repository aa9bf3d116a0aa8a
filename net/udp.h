// UdpSocket: green datagram sockets.
//
//   green::net::UdpSocket server =
//   green::net::bind_udp({asio::ip::make_address("127.0.0.1"), 0}); char
//   buffer[1500]; auto [size, from] = server.receive_from(buffer, sizeof
//   buffer);  // parks server.send_to(buffer, size, from);
//
// The same machinery as TcpSocket (net/io_handle.h): try the syscall, park
// on EAGAIN; one receiver and one sender at a time; set_timeout, Timeout
// and kill() interrupt a wait; close() wakes blocked green threads with
// EBADF. A datagram larger than the buffer is truncated (the rest is
// dropped, as recvfrom(2) does).
#ifndef GREEN_NET_UDP_H_
#define GREEN_NET_UDP_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string_view>

#include "net/endpoint.h"
#include "net/io_handle.h"

namespace green::net {

class UdpSocket {
 public:
  UdpSocket() noexcept;  // not open
  UdpSocket(UdpSocket&&) noexcept;
  UdpSocket& operator=(UdpSocket&&) noexcept;
  ~UdpSocket();

  // Sends one datagram; returns its size.
  std::size_t send_to(const void* data, std::size_t size,
                      const UdpEndpoint& to);
  std::size_t send_to(std::string_view data, const UdpEndpoint& to) {
    return send_to(data.data(), data.size(), to);
  }
  struct Datagram {
    std::size_t size;
    UdpEndpoint from;
  };
  // Receives one datagram.
  Datagram receive_from(void* data, std::size_t size);

  // Fixes the peer: send()/receive() then talk to it only.
  void connect(const UdpEndpoint& peer);
  std::size_t send(const void* data, std::size_t size);
  std::size_t receive(void* data, std::size_t size);

  UdpEndpoint local_endpoint() const;
  void close() noexcept;
  bool is_open() const noexcept;
  void set_timeout(std::optional<std::chrono::nanoseconds> timeout);
  int native_handle() const;

 private:
  friend UdpSocket bind_udp(const UdpEndpoint& local);
  explicit UdpSocket(std::unique_ptr<detail::IoHandle> io) noexcept;
  detail::IoHandle& io(const char* call) const;

  std::unique_ptr<detail::IoHandle> io_;
};

// A UDP socket bound to `local` (port 0: any free port; address 0.0.0.0 or
// :: for every interface).
UdpSocket bind_udp(const UdpEndpoint& local);

}  // namespace green::net

#endif  // GREEN_NET_UDP_H_
