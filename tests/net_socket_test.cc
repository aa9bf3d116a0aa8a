// Green TCP sockets over real loopback connections: round trips, end of
// stream, resets, refused connects, deadlines (set_timeout and
// green::Timeout), interrupts, close from another green thread, misuse
// (two readers), IPv6, name resolution, and use from a plain OS thread.
// Bounded in time; assertions run on one green thread at a time.
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "tests/test_support.h"

using green::testing::with_workers;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace net = green::net;

namespace {

std::string random_bytes(std::size_t size, unsigned seed) {
  std::mt19937 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  return bytes;
}

net::Listener loopback_listener() {
  return net::listen(net::endpoint("127.0.0.1", 0));
}

net::Endpoint address_of(const net::Listener& listener) {
  return listener.local_endpoint();
}

// Echoes one connection until the client half-closes, then closes.
void echo_one(net::Listener& listener) {
  net::Accepted client = listener.accept();
  std::vector<char> buffer(64 * 1024);
  while (std::size_t n =
             client.socket.read_some(buffer.data(), buffer.size())) {
    client.socket.write_all(buffer.data(), n);
  }
}

}  // namespace

TEST_CASE("1 MiB echoes back intact, written and read at once", "[net]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  const std::string sent = random_bytes(1 << 20, 7);
  std::string received(sent.size(), '\0');
  bool clean_end = false;
  green::run(
      [&] {
        net::Listener listener = loopback_listener();
        auto server = green::spawn([&] { echo_one(listener); });
        net::TcpSocket client = net::connect(address_of(listener));
        // Full duplex: one green thread writes while this one reads.
        auto writer = green::spawn([&] {
          client.write_all(sent);
          client.shutdown(net::Shutdown::kWrite);
        });
        REQUIRE(client.read_exact(received.data(), received.size()));
        char extra;
        clean_end = client.read_some(&extra, 1) == 0;
        writer.wait();
        server.wait();
      },
      with_workers(workers));
  REQUIRE(received == sent);
  REQUIRE(clean_end);
}

TEST_CASE("a half-closed peer reads as end of stream; the other way works",
          "[net]") {
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        auto server = green::spawn([&] {
          net::Accepted client = listener.accept();
          std::string request(5, '\0');
          REQUIRE(client.socket.read_exact(request.data(), request.size()));
          char more;
          const std::size_t after = client.socket.read_some(&more, 1);
          client.socket.write_all("reply:" + request);  // after the FIN
          return after;
        });
        net::TcpSocket client = net::connect(address_of(listener));
        client.write_all("hello");
        client.shutdown(net::Shutdown::kWrite);
        std::string reply(11, '\0');
        REQUIRE(client.read_exact(reply.data(), reply.size()));
        REQUIRE(reply == "reply:hello");
        REQUIRE(server.wait() == 0);  // the server saw end of stream
        char extra;
        REQUIRE(client.read_some(&extra, 1) == 0);
        // read_exact: a clean end before the first byte is false ...
        REQUIRE_FALSE(client.read_exact(&extra, 1));
      },
      with_workers(2));
}

TEST_CASE("read_exact throws EndOfStream when the stream ends mid-message",
          "[net]") {
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        auto server = green::spawn([&] {
          net::Accepted client = listener.accept();
          client.socket.write_all("abc");
        });  // closes after 3 bytes
        net::TcpSocket client = net::connect(address_of(listener));
        char buffer[8];
        REQUIRE_THROWS_AS(client.read_exact(buffer, sizeof buffer),
                          net::EndOfStream);
        server.wait();
      },
      with_workers(1));
}

TEST_CASE("connecting to a closed port throws connection refused", "[net]") {
  green::run(
      [] {
        net::Endpoint closed;
        {
          net::Listener listener = loopback_listener();
          closed = address_of(listener);
        }  // closed: nothing listens there now
        try {
          net::connect(closed);
          FAIL("connect succeeded");
        } catch (const std::system_error& e) {
          REQUIRE(e.code() == std::errc::connection_refused);
          REQUIRE(std::string(e.what()).find("green::net::connect") !=
                  std::string::npos);
        }
      },
      with_workers(2));
}

TEST_CASE("a peer reset in the middle of a read is a clear exception",
          "[net]") {
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        green::testing::Signal client_read_first_part;
        auto server = green::spawn([&] {
          net::Accepted client = listener.accept();
          client.socket.write_all(std::string(100, 'x'));
          client_read_first_part.wait();
          green::sleep(20ms);  // let the client park in its next read
          // SO_LINGER 0: close() sends RST instead of FIN.
          linger hard{1, 0};
          ::setsockopt(client.socket.native_handle(), SOL_SOCKET, SO_LINGER,
                       &hard, sizeof hard);
          client.socket.close();
        });
        net::TcpSocket client = net::connect(address_of(listener));
        std::string first(100, '\0');
        REQUIRE(client.read_exact(first.data(), first.size()));
        client_read_first_part.post();
        char buffer[100];
        try {
          const std::size_t n = client.read_some(buffer, sizeof buffer);
          FAIL("read_some returned " << n << " instead of throwing");
        } catch (const std::system_error& e) {
          REQUIRE(e.code() == std::errc::connection_reset);
        }
        server.wait();
      },
      with_workers(workers));
}

TEST_CASE("set_timeout on a silent peer times out and the socket stays usable",
          "[net]") {
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        green::testing::Signal timed_out;
        auto server = green::spawn([&] {
          net::Accepted client = listener.accept();
          timed_out.wait();  // silent until the client gave up once
          client.socket.write_all("late");
          char end;
          return client.socket.read_some(&end, 1);
        });
        net::TcpSocket client = net::connect(address_of(listener));
        client.set_timeout(50ms);
        REQUIRE(client.timeout() == std::chrono::nanoseconds(50ms));
        char buffer[4];
        const auto start = Clock::now();
        REQUIRE_THROWS_AS(client.read_some(buffer, sizeof buffer),
                          net::TimeoutError);
        const auto waited = Clock::now() - start;
        REQUIRE(waited >= 50ms);
        REQUIRE(waited < 5s);
        // Documented state: open, nothing lost; a later read gets the data.
        REQUIRE(client.is_open());
        client.set_timeout(std::nullopt);
        timed_out.post();
        REQUIRE(client.read_exact(buffer, 4));
        REQUIRE(std::string(buffer, 4) == "late");
        client.close();
        REQUIRE(server.wait() == 0);
      },
      with_workers(workers));
}

TEST_CASE("green::Timeout around a read on a silent peer interrupts it cleanly",
          "[net]") {
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        green::testing::Signal go_on;
        auto server = green::spawn([&] {
          net::Accepted client = listener.accept();
          go_on.wait();
          client.socket.write_all("data");
          go_on.wait();
        });
        net::TcpSocket client = net::connect(address_of(listener));
        char buffer[4];
        for (int round = 0; round < 3; ++round) {
          green::Timeout timeout(20ms);
          try {
            client.read_some(buffer, sizeof buffer);
            FAIL("read_some returned on a silent peer");
          } catch (const green::Timeout& fired) {
            REQUIRE(fired == timeout);
          }
        }
        // The socket remains usable: the cancelled waits left nothing
        // behind, and the read slot is free again.
        go_on.post();
        {
          green::Timeout generous(10s);
          REQUIRE(client.read_exact(buffer, 4));
        }
        REQUIRE(std::string(buffer, 4) == "data");
        go_on.post();
        server.wait();
      },
      with_workers(workers));
}

TEST_CASE("kill() interrupts a blocked read; the socket stays usable",
          "[net]") {
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        green::testing::Signal reader_started, write_now;
        auto server = green::spawn([&] {
          net::Accepted client = listener.accept();
          write_now.wait();
          client.socket.write_all("ok");
          write_now.wait();
        });
        net::TcpSocket client = net::connect(address_of(listener));
        auto reader = green::spawn([&] {
          reader_started.post();
          char buffer[2];
          return client.read_some(buffer, sizeof buffer);
        });
        reader_started.wait();
        green::sleep(10ms);
        reader.kill();
        REQUIRE_THROWS_AS(reader.wait(), green::GreenletExit);
        write_now.post();
        char buffer[2];
        REQUIRE(client.read_exact(buffer, 2));
        REQUIRE(std::string(buffer, 2) == "ok");
        write_now.post();
        server.wait();
      },
      with_workers(2));
}

TEST_CASE("two green threads reading one socket is an error, not a hang",
          "[net]") {
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        green::testing::Signal reader_started, finish;
        auto server = green::spawn([&] {
          net::Accepted client = listener.accept();
          finish.wait();
          client.socket.write_all("x");
          finish.wait();
        });
        net::TcpSocket client = net::connect(address_of(listener));
        auto reader = green::spawn([&] {
          reader_started.post();
          char c;
          return client.read_some(&c, 1);
        });
        reader_started.wait();
        green::sleep(20ms);  // the reader is parked inside read_some now
        char c;
        REQUIRE_THROWS_AS(client.read_some(&c, 1), std::logic_error);
        // A writer alongside the reader is fine (full duplex).
        client.write_all("ping");
        finish.post();
        REQUIRE(reader.wait() == 1);
        finish.post();
        server.wait();
      },
      with_workers(workers));
}

TEST_CASE("close() from another green thread wakes a blocked reader", "[net]") {
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        green::testing::Signal reader_started, done;
        auto server = green::spawn([&] {
          net::Accepted client = listener.accept();
          done.wait();
        });
        net::TcpSocket client = net::connect(address_of(listener));
        auto reader = green::spawn([&] {
          reader_started.post();
          char c;
          try {
            client.read_some(&c, 1);
            return 0;
          } catch (const std::system_error& e) {
            return e.code() == std::errc::bad_file_descriptor ? 1 : 2;
          }
        });
        reader_started.wait();
        green::sleep(10ms);
        client.close();
        REQUIRE(reader.wait() == 1);
        REQUIRE_FALSE(client.is_open());
        char c;
        REQUIRE_THROWS_AS(client.read_some(&c, 1), std::system_error);
        done.post();
        server.wait();
      },
      with_workers(workers));
}

TEST_CASE("closing a listener wakes a blocked accept", "[net]") {
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        green::testing::Signal started;
        auto acceptor = green::spawn([&] {
          started.post();
          try {
            listener.accept();
            return false;
          } catch (const std::system_error& e) {
            return e.code() == std::errc::bad_file_descriptor;
          }
        });
        started.wait();
        green::sleep(10ms);
        listener.close();
        REQUIRE(acceptor.wait());
      },
      with_workers(2));
}

TEST_CASE("accept honours set_timeout", "[net]") {
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        listener.set_timeout(30ms);
        REQUIRE_THROWS_AS(listener.accept(), net::TimeoutError);
        // Still listening.
        listener.set_timeout(std::nullopt);
        auto client = green::spawn(
            [&] { return net::connect(address_of(listener)).peer_endpoint(); });
        net::Accepted accepted = listener.accept();
        REQUIRE(client.wait().port() == address_of(listener).port());
        REQUIRE(accepted.peer.address().is_loopback());
      },
      with_workers(1));
}

TEST_CASE("IPv6 loopback, host names and socket options", "[net]") {
  green::run(
      [] {
        // IPv6 (::1); skipped where the kernel has no IPv6.
        net::Listener v6;
        bool have_v6 = true;
        try {
          v6 = net::listen(net::endpoint("::1", 0));
        } catch (const std::system_error&) {
          have_v6 = false;
        }
        if (have_v6) {
          auto server = green::spawn([&] { echo_one(v6); });
          net::TcpSocket client = net::connect(v6.local_endpoint());
          REQUIRE(client.peer_endpoint().address().is_v6());
          REQUIRE(net::to_string(client.peer_endpoint()).front() == '[');
          client.write_all("six");
          client.shutdown();
          char buffer[3];
          REQUIRE(client.read_exact(buffer, 3));
          REQUIRE(std::string(buffer, 3) == "six");
          server.wait();
        }
        // A host name goes through the (green) resolver.
        net::Listener listener = loopback_listener();
        const std::uint16_t port = address_of(listener).port();
        REQUIRE_FALSE(net::resolve("localhost", port).empty());
        auto server = green::spawn([&] { echo_one(listener); });
        net::TcpSocket client =
            net::connect("localhost", port, {.family = net::Family::kV4});
        REQUIRE(client.nodelay());  // connect() turns Nagle off by default
        client.set_nodelay(false);
        REQUIRE_FALSE(client.nodelay());
        client.set_keepalive(true, 30s);
        REQUIRE(client.keepalive());
        client.write_all("name");
        client.shutdown();
        char buffer[4];
        REQUIRE(client.read_exact(buffer, 4));
        server.wait();
        REQUIRE_THROWS_AS(net::endpoint("localhost", 1), std::invalid_argument);
        REQUIRE_THROWS_AS(net::resolve("no-such-host.invalid", 1),
                          std::system_error);
      },
      with_workers(2));
}

TEST_CASE("connect binds a local address when asked", "[net]") {
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        auto server = green::spawn([&] { return listener.accept().peer; });
        net::Listener reserve = loopback_listener();  // a free local port
        const net::Endpoint local = reserve.local_endpoint();
        reserve.close();
        net::TcpSocket client =
            net::connect(address_of(listener), {.bind = local, .timeout = 5s});
        REQUIRE(client.local_endpoint() == local);
        REQUIRE(server.wait() == local);
      },
      with_workers(1));
}

TEST_CASE("a moved-from socket says so", "[net]") {
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        auto server = green::spawn([&] { echo_one(listener); });
        net::TcpSocket client = net::connect(address_of(listener));
        net::TcpSocket moved = std::move(client);
        char c;
        REQUIRE_THROWS_AS(client.read_some(&c, 1), std::logic_error);
        REQUIRE_FALSE(client.is_open());
        REQUIRE(moved.is_open());
        moved.shutdown();
        REQUIRE(moved.read_some(&c, 1) == 0);
        server.wait();
      },
      with_workers(1));
}

TEST_CASE("the same calls work from a plain OS thread (they block it)",
          "[net]") {
  std::string reply;
  green::run(
      [&] {
        net::Listener listener = loopback_listener();
        const net::Endpoint address = address_of(listener);
        auto server = green::spawn([&] { echo_one(listener); });
        std::thread plain([&] {
          net::TcpSocket client = net::connect(address);
          client.set_timeout(10s);
          client.write_all("from a plain thread");
          client.shutdown();
          reply.resize(19);
          if (!client.read_exact(reply.data(), reply.size())) reply.clear();
        });
        server.wait();
        plain.join();
      },
      with_workers(2));
  REQUIRE(reply == "from a plain thread");
}

TEST_CASE("many connections ping-pong across workers", "[net]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  constexpr int kClients = 50;
  constexpr int kRounds = 100;
  std::atomic<int> ok{0};
  green::run(
      [&] {
        net::Listener listener = loopback_listener();
        auto acceptor = green::spawn([&] {
          for (int i = 0; i < kClients; ++i) {
            net::Accepted accepted = listener.accept();
            green::spawn_n([socket = std::move(accepted.socket)]() mutable {
              std::uint32_t value;
              while (socket.read_exact(&value, sizeof value)) {
                ++value;
                socket.write_all(&value, sizeof value);
              }
            });
          }
        });
        std::vector<green::GreenThread<void>> clients;
        for (int c = 0; c < kClients; ++c) {
          clients.push_back(green::spawn([&, c] {
            net::TcpSocket socket = net::connect(address_of(listener));
            std::uint32_t value = c * 1000;
            for (int r = 0; r < kRounds; ++r) {
              socket.write_all(&value, sizeof value);
              std::uint32_t back;
              if (!socket.read_exact(&back, sizeof back) || back != value + 1) {
                return;
              }
              value = back;
            }
            ok.fetch_add(1);
          }));
        }
        for (auto& client : clients) client.wait();
        acceptor.wait();
      },
      with_workers(workers));
  REQUIRE(ok.load() == kClients);
}
