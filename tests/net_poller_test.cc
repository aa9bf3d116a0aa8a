// The worker's readiness poller (runtime/readiness_poller.h) under the
// cases its edge counting must get right: a short TCP read that stopped at
// the FIN or at urgent data (no edge will follow, yet the next read must
// not park), a socket homed on one worker and read from another, sockets
// closed and their slots recycled while others wait, and a socket used by
// a green thread and then by a plain OS thread.
//
// The peer is a plain blocking socket on an OS thread, so the test decides
// exactly what reaches the green socket and when. Every read that could
// hang sits under a green::Timeout: a lost wake-up fails, it does not hang.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "tests/test_support.h"

using green::testing::with_workers;

using namespace std::chrono_literals;
namespace net = green::net;

namespace {

constexpr auto kHangLimit = 5s;

// A blocking IPv4 TCP client for the OS-thread side; closes on scope end.
// It asserts nothing (Catch is not thread-safe): failures are counted in
// `ok`, which the test checks at the end.
class PlainClient {
 public:
  PlainClient(const net::Endpoint& server, bool& ok) : ok_(ok) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(server.port());
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&address),
                                sizeof address) == 0;
  }
  ~PlainClient() { ::close(fd_); }
  PlainClient(const PlainClient&) = delete;
  PlainClient& operator=(const PlainClient&) = delete;

  void send(const std::string& bytes, int flags = 0) {
    ok_ =
        ok_ && ::send(fd_, bytes.data(), bytes.size(), flags | MSG_NOSIGNAL) ==
                   static_cast<ssize_t>(bytes.size());
  }
  void shutdown_write() { ok_ = ok_ && ::shutdown(fd_, SHUT_WR) == 0; }

 private:
  int fd_ = -1;
  bool& ok_;
};

std::string read_some(net::TcpSocket& socket, std::size_t size = 100) {
  std::string buffer(size, '\0');
  buffer.resize(socket.read_some(buffer.data(), buffer.size()));
  return buffer;
}

// Both "short read" cases: the peer sends "x", which the green side's
// first read parks for (so the socket is registered with the poller); once
// told, it sends `burst` and then keeps its socket open until the green
// side is done (so no FIN ends a wrong wait early). The green side sleeps
// meanwhile, long enough for the idle worker to collect the burst's edges,
// then reads `count` more times: each read must return without a new
// edge. Returns every read.
std::vector<std::string> reads_around_burst(
    std::size_t workers, int count,
    const std::function<void(PlainClient&)>& burst) {
  std::vector<std::string> reads;
  bool peer_ok = false;
  green::run(
      [&] {
        net::Listener listener = net::listen(net::endpoint("127.0.0.1", 0));
        green::testing::Signal go, sent, done;
        // jthread: joined even when a failed read unwinds this scope.
        std::jthread peer([&, address = listener.local_endpoint()] {
          PlainClient client(address, peer_ok);
          std::this_thread::sleep_for(20ms);  // let the first read park
          client.send("x");
          if (!go.wait(kHangLimit)) return;
          burst(client);
          sent.post();
          done.wait(2 * kHangLimit);
        });
        net::TcpSocket socket = listener.accept().socket;
        struct PostOnExit {
          green::testing::Signal& signal;
          ~PostOnExit() { signal.post(); }
        } release_peer{done};
        green::Timeout guard(kHangLimit);
        reads.push_back(read_some(socket));  // parks: registered from here
        go.post();
        REQUIRE(sent.wait(kHangLimit));
        green::sleep(30ms);  // the worker goes idle and polls: edges counted
        for (int i = 0; i < count; ++i) reads.push_back(read_some(socket));
      },
      with_workers(workers));
  REQUIRE(peer_ok);
  return reads;
}

}  // namespace

TEST_CASE("a short read that reached the FIN still reads end of stream",
          "[net][poller]") {
  const std::size_t workers = GENERATE(1, 2);
  // Data and FIN together: one read takes both, and no edge follows it.
  const auto reads = reads_around_burst(workers, 2, [](PlainClient& client) {
    client.send("abc");
    client.shutdown_write();
  });
  REQUIRE(reads == std::vector<std::string>{"x", "abc", ""});
}

TEST_CASE("a short read that stopped at urgent data still reads on",
          "[net][poller]") {
  const std::size_t workers = GENERATE(1, 2);
  // A read stops before the urgent byte (which, out of band, it then
  // skips): "abc" and "efg" come in two reads, the second with no new edge.
  const auto reads = reads_around_burst(workers, 2, [](PlainClient& client) {
    client.send("abc");
    client.send("d", MSG_OOB);
    client.send("efg");
  });
  REQUIRE(reads == std::vector<std::string>{"x", "abc", "efg"});
}

TEST_CASE("sockets come and go while others wait; no wake-up goes astray",
          "[net][poller]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  constexpr int kConcurrent = 20;
  constexpr int kEach = 25;  // connections per client green thread
  std::atomic<int> echoed{0};
  green::run(
      [&] {
        net::Listener listener = net::listen(net::endpoint("127.0.0.1", 0));
        net::ServeOptions options;
        auto server = green::spawn([&] {
          // serve() spreads the connections over the workers' pollers, so
          // slots are recycled by every worker while others are parked.
          net::serve(
              listener,
              [](net::TcpSocket& client) {
                char byte;
                while (client.read_some(&byte, 1) == 1) {
                  client.write_all(&byte, 1);
                }
              },
              options);
        });
        // One long-lived connection parks throughout: it must see exactly
        // its own byte at the end, however many slots were recycled.
        net::TcpSocket idle = net::connect(listener.local_endpoint());
        std::vector<green::GreenThread<void>> clients;
        for (int c = 0; c < kConcurrent; ++c) {
          clients.push_back(green::spawn([&, c] {
            green::Timeout guard(kHangLimit);
            for (int i = 0; i < kEach; ++i) {
              net::TcpSocket socket = net::connect(listener.local_endpoint());
              const char sent = static_cast<char>('a' + (c + i) % 26);
              socket.write_all(&sent, 1);
              char back = 0;
              // Counted, not asserted: Catch is not thread-safe, and these
              // green threads run on several workers at once.
              if (socket.read_exact(&back, 1) && back == sent) {
                echoed.fetch_add(1, std::memory_order_relaxed);
              }
            }  // closed here: its slot goes back to the table
          }));
        }
        for (auto& client : clients) client.wait();
        green::Timeout guard(kHangLimit);
        idle.write_all("!");
        char back = 0;
        REQUIRE(idle.read_exact(&back, 1));
        REQUIRE(back == '!');
        listener.close();
        idle.close();
        server.kill();
      },
      with_workers(workers));
  REQUIRE(echoed.load() == kConcurrent * kEach);
}

TEST_CASE("a socket read by green threads, then by a plain OS thread",
          "[net][poller]") {
  std::string from_plain;
  green::run(
      [&] {
        net::Listener listener = net::listen(net::endpoint("127.0.0.1", 0));
        net::TcpSocket client = net::connect(listener.local_endpoint());
        net::TcpSocket server = listener.accept().socket;
        // A green read that parks registers the socket and leaves it
        // "drained" by a short read.
        auto reader = green::spawn([&] { return read_some(server); });
        green::sleep(10ms);
        client.write_all("green");
        REQUIRE(reader.wait() == "green");
        // Now a plain thread reads the same socket: poll(2), not the
        // poller, must decide, even though no edge is counted for it yet.
        std::thread plain([&] {
          server.set_timeout(kHangLimit);
          try {
            from_plain = read_some(server);
          } catch (const std::exception& e) {
            from_plain = e.what();  // fails the check below, readably
          }
        });
        green::sleep(10ms);
        client.write_all("plain");
        plain.join();
      },
      with_workers(2));
  REQUIRE(from_plain == "plain");
}

TEST_CASE("the short-read rule is kept to plain TCP sockets", "[net][poller]") {
  // A Unix stream read also stops early at passed descriptors, kernel TLS
  // at control records: adopt() checks before it lets short reads count.
  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
  CHECK_FALSE(net::detail::is_plain_tcp(pair[0]));
  ::close(pair[0]);
  ::close(pair[1]);
  const int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(tcp >= 0);
  CHECK(net::detail::is_plain_tcp(tcp));
  ::close(tcp);
  const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(udp >= 0);
  CHECK_FALSE(net::detail::is_plain_tcp(udp));
  ::close(udp);
}
