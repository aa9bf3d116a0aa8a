// Green UDP sockets on loopback: datagram round trips between green
// threads, connected sockets, deadlines, interrupts, close from another
// green thread, and two concurrent receivers being an error.
#include <chrono>
#include <stdexcept>
#include <string>
#include <system_error>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "tests/test_support.h"

using green::testing::with_workers;

using namespace std::chrono_literals;
namespace net = green::net;

namespace {

net::UdpEndpoint loopback(std::uint16_t port = 0) {
  return net::UdpEndpoint(asio::ip::make_address("127.0.0.1"), port);
}

}  // namespace

TEST_CASE("UDP datagrams round-trip between green threads", "[net][udp]") {
  const std::size_t workers = GENERATE(1, 2);
  constexpr int kDatagrams = 200;
  int answered = 0;
  green::run(
      [&] {
        net::UdpSocket server = net::bind_udp(loopback());
        const net::UdpEndpoint address = server.local_endpoint();
        REQUIRE(address.port() != 0);
        auto echo = green::spawn([&] {
          char buffer[1500];
          for (;;) {
            auto [size, from] = server.receive_from(buffer, sizeof buffer);
            if (size == 4 && std::string(buffer, 4) == "stop") return;
            server.send_to(buffer, size, from);
          }
        });
        net::UdpSocket client = net::bind_udp(loopback());
        client.set_timeout(5s);  // loopback does not drop, but never hang
        for (int i = 0; i < kDatagrams; ++i) {
          const std::string message = "datagram " + std::to_string(i);
          client.send_to(message, address);
          char buffer[64];
          auto [size, from] = client.receive_from(buffer, sizeof buffer);
          if (std::string(buffer, size) == message && from == address) {
            ++answered;
          }
        }
        // A connected socket talks to one peer with send/receive.
        net::UdpSocket connected = net::bind_udp(loopback());
        connected.connect(address);
        connected.send("hello", 5);
        char buffer[8];
        REQUIRE(connected.receive(buffer, sizeof buffer) == 5);
        client.send_to("stop", address);
        echo.wait();
      },
      with_workers(workers));
  REQUIRE(answered == kDatagrams);
}

TEST_CASE("UDP receive: deadline, interrupt, close, and one receiver at a time",
          "[net][udp]") {
  green::run(
      [] {
        net::UdpSocket socket = net::bind_udp(loopback());
        char buffer[16];
        socket.set_timeout(30ms);
        REQUIRE_THROWS_AS(socket.receive_from(buffer, sizeof buffer),
                          net::TimeoutError);
        socket.set_timeout(std::nullopt);
        {
          green::Timeout timeout(30ms);
          REQUIRE_THROWS_AS(socket.receive_from(buffer, sizeof buffer),
                            green::Timeout);
        }
        green::testing::Signal started;
        auto receiver = green::spawn([&] {
          started.post();
          try {
            socket.receive_from(buffer, sizeof buffer);
            return 0;
          } catch (const std::system_error& e) {
            return e.code() == std::errc::bad_file_descriptor ? 1 : 2;
          }
        });
        started.wait();
        green::sleep(20ms);
        char other[16];
        REQUIRE_THROWS_AS(socket.receive_from(other, sizeof other),
                          std::logic_error);
        socket.close();
        REQUIRE(receiver.wait() == 1);
      },
      with_workers(2));
}
