// Unix-domain green stream sockets: socketpair round trips with a writer
// and a reader at once, listen/connect on a path, end of stream, and the
// shared StreamSocket semantics (timeouts, close from another green thread).
#include <unistd.h>

#include <chrono>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "tests/test_support.h"

using green::testing::with_workers;

using namespace std::chrono_literals;
namespace net = green::net;

TEST_CASE("a Unix stream pair carries 1 MiB each way at once", "[net][unix]") {
  const std::size_t workers = GENERATE(1, 2);
  std::string sent(1 << 20, '\0');
  std::mt19937 random(3);
  for (char& c : sent) c = static_cast<char>(random());
  std::string a_got(sent.size(), '\0'), b_got(sent.size(), '\0');
  green::run(
      [&] {
        auto [a, b] = net::unix_stream_pair();
        auto a_writer = green::spawn([&] { a.write_all(sent); });
        auto b_writer = green::spawn([&] { b.write_all(sent); });
        auto b_reader = green::spawn(
            [&] { return b.read_exact(b_got.data(), b_got.size()); });
        REQUIRE(a.read_exact(a_got.data(), a_got.size()));
        REQUIRE(b_reader.wait());
        a_writer.wait();
        b_writer.wait();
        a.shutdown();
        char c;
        REQUIRE(b.read_some(&c, 1) == 0);
      },
      with_workers(workers));
  REQUIRE(a_got == sent);
  REQUIRE(b_got == sent);
}

TEST_CASE("listen_unix / connect_unix on a path", "[net][unix]") {
  const std::string path =
      "/tmp/green-net-unix-test-" + std::to_string(::getpid()) + ".sock";
  green::run(
      [&] {
        net::UnixListener listener = net::listen_unix(path, 16, true);
        REQUIRE(listener.local_endpoint().path() == path);
        auto server = green::spawn([&] {
          net::UnixAccepted accepted = listener.accept();
          char buffer[5];
          REQUIRE(accepted.socket.read_exact(buffer, 5));
          accepted.socket.write_all(std::string(buffer, 5) + "!");
        });
        net::UnixStream client = net::connect_unix(path, 5s);
        REQUIRE(client.peer_endpoint().path() == path);
        client.write_all("hello");
        char reply[6];
        REQUIRE(client.read_exact(reply, 6));
        REQUIRE(std::string(reply, 6) == "hello!");
        server.wait();
        client.set_timeout(20ms);
        REQUIRE(client.read_some(reply, 1) == 0);  // the server closed
        listener.close();
        REQUIRE_THROWS_AS(net::connect_unix("/nonexistent/green.sock"),
                          std::system_error);
      },
      with_workers(2));
  ::unlink(path.c_str());
}

TEST_CASE("Unix streams share the socket semantics", "[net][unix]") {
  green::run(
      [] {
        auto [a, b] = net::unix_stream_pair();
        char c;
        a.set_timeout(20ms);
        REQUIRE_THROWS_AS(a.read_some(&c, 1), net::TimeoutError);
        a.set_timeout(std::nullopt);
        green::testing::Signal started;
        auto reader = green::spawn([&] {
          started.post();
          try {
            a.read_some(&c, 1);
            return 0;
          } catch (const std::system_error& e) {
            return e.code() == std::errc::bad_file_descriptor ? 1 : 2;
          }
        });
        started.wait();
        green::sleep(10ms);
        a.close();
        REQUIRE(reader.wait() == 1);
        REQUIRE(b.read_some(&c, 1) == 0);  // a's close reached b
      },
      with_workers(2));
}
