// Addresses: TCP, UDP and Unix-domain endpoints.
//
//   green::net::Endpoint ep = green::net::endpoint("127.0.0.1", 8080);
//   green::net::Endpoint any6 = green::net::endpoint("::", 0);  // port 0:
//                                                   // the kernel picks one
//   std::string s = green::net::to_string(ep);      // "127.0.0.1:8080"
//
// The types are Asio's (asio::ip::tcp::endpoint and friends): an address
// (asio::ip::address, IPv4 or IPv6) and a port. Eventlet spells an address
// as a (host, port) tuple; here a numeric address is an Endpoint and a host
// name goes to connect()/listen()/resolve() as (host, port) instead.
#ifndef GREEN_NET_ENDPOINT_H_
#define GREEN_NET_ENDPOINT_H_

#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/udp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <cstdint>
#include <string>
#include <string_view>

namespace green::net {

using Address = asio::ip::address;
using Endpoint = asio::ip::tcp::endpoint;
using UdpEndpoint = asio::ip::udp::endpoint;
using UnixEndpoint = asio::local::stream_protocol::endpoint;

// A TCP endpoint from a numeric address ("127.0.0.1", "::1", "0.0.0.0").
// Throws std::invalid_argument for anything else (names need resolve()).
Endpoint endpoint(std::string_view numeric_address, std::uint16_t port);

// "127.0.0.1:80", "[::1]:80".
std::string to_string(const Endpoint& endpoint);
std::string to_string(const UdpEndpoint& endpoint);
// The path ("@name" for an abstract socket).
std::string to_string(const UnixEndpoint& endpoint);

}  // namespace green::net

#endif  // GREEN_NET_ENDPOINT_H_
