// green::net::serve over real loopback connections: a thousand concurrent
// clients on two workers, the concurrency limit, StopServe (graceful, with
// a grace period), handler exceptions (rethrown by default, reported with
// HandlerErrors::kReport), killing serve() and closing its listener, the
// spreading of clients over workers, and Unix-domain serving.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "tests/test_support.h"

using green::testing::with_workers;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace net = green::net;

namespace {

#if defined(__SANITIZE_THREAD__)
// TSan keeps ~1 MB of trace per live green thread; a client and a handler
// per connection.
constexpr int kManyClients = 200;
#else
constexpr int kManyClients = 1000;
#endif

net::Listener loopback_listener() {
  return net::listen(net::endpoint("127.0.0.1", 0));
}

// Reads one byte; 0 at end of stream.
char read_byte(net::StreamSocket& socket) {
  char c = 0;
  return socket.read_some(&c, 1) == 1 ? c : 0;
}

// Connects and sends "stop": the test handlers throw StopServe on it.
void send_stop(const net::Endpoint& server) {
  net::TcpSocket socket = net::connect(server);
  socket.write_all("s");
  read_byte(socket);  // end of stream once the handler ended
}

// A countdown that releases everybody once `count` arrived.
class Barrier {
 public:
  explicit Barrier(int count) : left_(count), count_(count) {}
  void arrive_and_wait() {
    if (left_.fetch_sub(1) == 1) {
      for (int i = 0; i < count_; ++i) go_.post();
    }
    go_.wait();
  }

 private:
  std::atomic<int> left_;
  const int count_;
  green::testing::Signal go_;
};

}  // namespace

TEST_CASE("a thousand concurrent clients are all served on two workers",
          "[net][serve]") {
  std::atomic<int> served{0}, echoed{0};
  green::run(
      [&] {
        net::Listener listener = loopback_listener();
        const net::Endpoint address = listener.local_endpoint();
        auto server = green::spawn([&] {
          net::serve(listener,
                     [&](net::TcpSocket& client, const net::Endpoint&) {
                       std::uint32_t id;
                       while (client.read_exact(&id, sizeof id)) {
                         if (id == 0xffffffff) throw net::StopServe();
                         client.write_all(&id, sizeof id);
                       }
                       served.fetch_add(1);
                     });
        });
        // Every client connects, then waits until all are connected, so
        // that kManyClients connections (and handlers) are live at once.
        Barrier all_connected(kManyClients);
        std::vector<green::GreenThread<void>> clients;
        clients.reserve(kManyClients);
        for (int c = 0; c < kManyClients; ++c) {
          clients.push_back(green::spawn([&, c] {
            net::TcpSocket socket = net::connect(address);
            all_connected.arrive_and_wait();
            const std::uint32_t id = c;
            socket.write_all(&id, sizeof id);
            std::uint32_t back = 0;
            if (socket.read_exact(&back, sizeof back) && back == id) {
              echoed.fetch_add(1);
            }
          }));
        }
        for (auto& client : clients) client.wait();
        net::TcpSocket stopper = net::connect(address);
        const std::uint32_t stop = 0xffffffff;
        stopper.write_all(&stop, sizeof stop);
        server.wait();  // returns normally: StopServe
      },
      with_workers(2));
  REQUIRE(echoed.load() == kManyClients);
  REQUIRE(served.load() == kManyClients);
}

TEST_CASE("serve never runs more handlers than its concurrency",
          "[net][serve]") {
  const std::size_t workers = GENERATE(1, 2);
  constexpr int kClients = 20;
  constexpr std::size_t kLimit = 4;
  std::atomic<int> active{0}, peak{0}, replies{0};
  green::run(
      [&] {
        net::Listener listener = loopback_listener();
        const net::Endpoint address = listener.local_endpoint();
        auto server = green::spawn([&] {
          net::ServeOptions options;
          options.concurrency = kLimit;
          net::serve(
              listener,
              [&](net::TcpSocket& client) {
                if (read_byte(client) == 's') throw net::StopServe();
                const int now = active.fetch_add(1) + 1;
                int seen = peak.load();
                while (now > seen && !peak.compare_exchange_weak(seen, now)) {
                }
                green::sleep(30ms);  // hold the slot for a while
                active.fetch_sub(1);
                client.write_all("k");
              },
              options);
        });
        std::vector<green::GreenThread<void>> clients;
        for (int c = 0; c < kClients; ++c) {
          clients.push_back(green::spawn([&] {
            net::TcpSocket socket = net::connect(address);
            socket.write_all("r");
            if (read_byte(socket) == 'k') replies.fetch_add(1);
          }));
        }
        for (auto& client : clients) client.wait();
        send_stop(address);
        server.wait();
      },
      with_workers(workers));
  REQUIRE(replies.load() == kClients);
  REQUIRE(peak.load() == static_cast<int>(kLimit));
}

TEST_CASE("StopServe ends serve normally; stragglers get stop_grace, then die",
          "[net][serve]") {
  const std::size_t workers = GENERATE(1, 2);
  std::atomic<bool> idle_handler_killed{false};
  std::atomic<bool> slow_handler_finished{false};
  Clock::duration stop_took{};
  green::run(
      [&] {
        net::Listener listener = loopback_listener();
        const net::Endpoint address = listener.local_endpoint();
        green::testing::Signal handlers_started;
        auto server = green::spawn([&] {
          net::ServeOptions options;
          options.stop_grace = 150ms;
          net::serve(
              listener,
              [&](net::TcpSocket& client) {
                const char kind = read_byte(client);
                if (kind == 's') throw net::StopServe();
                handlers_started.post();
                if (kind == 'w') {  // finishes within the grace period
                  green::sleep(30ms);
                  slow_handler_finished = true;
                  client.write_all("done");
                  return;
                }
                try {  // 'i': idles until killed
                  read_byte(client);
                } catch (const green::GreenletExit&) {
                  idle_handler_killed = true;
                  throw;
                }
              },
              options);
        });
        net::TcpSocket idle = net::connect(address);
        idle.write_all("i");
        net::TcpSocket slow = net::connect(address);
        slow.write_all("w");
        handlers_started.wait();
        handlers_started.wait();
        const auto start = Clock::now();
        net::TcpSocket stopper = net::connect(address);
        stopper.write_all("s");
        server.wait();  // no exception
        stop_took = Clock::now() - start;
        char buffer[4];
        REQUIRE(slow.read_exact(buffer, 4));
        REQUIRE(read_byte(idle) == 0);  // its handler was killed: closed
      },
      with_workers(workers));
  REQUIRE(slow_handler_finished.load());
  REQUIRE(idle_handler_killed.load());
  REQUIRE(stop_took >= 150ms);
  REQUIRE(stop_took < 10s);
}

TEST_CASE("a handler's exception ends serve and is rethrown (the default)",
          "[net][serve]") {
  std::atomic<bool> other_killed{false};
  green::run(
      [&] {
        net::Listener listener = loopback_listener();
        const net::Endpoint address = listener.local_endpoint();
        green::testing::Signal other_started;
        auto server = green::spawn([&] {
          net::serve(listener, [&](net::TcpSocket& client) {
            if (read_byte(client) == 'x') throw std::runtime_error("boom");
            other_started.post();
            try {
              read_byte(client);
            } catch (const green::GreenletExit&) {
              other_killed = true;
              throw;
            }
          });
        });
        net::TcpSocket other = net::connect(address);
        other.write_all("o");
        other_started.wait();
        net::TcpSocket failing = net::connect(address);
        failing.write_all("x");
        REQUIRE_THROWS_WITH(server.wait(), "boom");
        REQUIRE(read_byte(other) == 0);
        // The listener is still the caller's, and still listening.
        REQUIRE(listener.is_open());
      },
      with_workers(2));
  REQUIRE(other_killed.load());
}

TEST_CASE("HandlerErrors::kReport reports a handler's exception and goes on",
          "[net][serve]") {
  std::mutex mutex;
  std::vector<std::string> reports;
  std::string stderr_text;
  green::run(
      [&] {
        net::Listener listener = loopback_listener();
        const net::Endpoint address = listener.local_endpoint();
        auto server = green::spawn([&] {
          net::ServeOptions options;
          options.handler_errors = net::HandlerErrors::kReport;
          options.report = [&](std::exception_ptr error,
                               const std::string& where) {
            try {
              std::rethrow_exception(error);
            } catch (const std::exception& e) {
              std::lock_guard<std::mutex> guard(mutex);
              reports.push_back(where + ": " + e.what());
            }
          };
          net::serve(
              listener,
              [](net::TcpSocket& client) {
                const char c = read_byte(client);
                if (c == 'x') throw std::runtime_error("bad request");
                if (c == 's') throw net::StopServe();
                client.write_all("ok");
              },
              options);
        });
        for (int round = 0; round < 3; ++round) {
          net::TcpSocket failing = net::connect(address);
          failing.write_all("x");
          REQUIRE(read_byte(failing) == 0);
          net::TcpSocket fine = net::connect(address);
          fine.write_all("g");
          char buffer[2];
          REQUIRE(fine.read_exact(buffer, 2));
        }
        send_stop(address);
        server.wait();

        // The default reporter writes one line to stderr.
        green::testing::StderrCapture capture;
        auto quiet = green::spawn([&] {
          net::ServeOptions options;
          options.handler_errors = net::HandlerErrors::kReport;
          net::serve(
              listener,
              [](net::TcpSocket& client) {
                if (read_byte(client) == 's') throw net::StopServe();
                throw std::runtime_error("to stderr");
              },
              options);
        });
        net::TcpSocket failing = net::connect(address);
        failing.write_all("x");
        REQUIRE(read_byte(failing) == 0);
        send_stop(address);
        quiet.wait();
        stderr_text = capture.text();
      },
      with_workers(2));
  REQUIRE(reports.size() == 3);
  for (const std::string& report : reports) {
    REQUIRE(report.find("handler for 127.0.0.1:") == 0);
    REQUIRE(report.find("bad request") != std::string::npos);
  }
  REQUIRE(stderr_text.find("green::net::serve: handler for 127.0.0.1:") !=
          std::string::npos);
  REQUIRE(stderr_text.find("to stderr") != std::string::npos);
}

TEST_CASE("killing serve() kills its handlers before it returns",
          "[net][serve]") {
  const std::size_t workers = GENERATE(1, 2);
  std::atomic<int> handlers_ended{0};
  int ended_when_serve_returned = -1;
  green::run(
      [&] {
        net::Listener listener = loopback_listener();
        const net::Endpoint address = listener.local_endpoint();
        green::testing::Signal started;
        auto server = green::spawn([&] {
          net::serve(listener, [&](net::TcpSocket& client) {
            struct Count {
              std::atomic<int>& ended;
              ~Count() { ended.fetch_add(1); }
            } count{handlers_ended};
            started.post();
            read_byte(client);  // blocks until killed
          });
        });
        std::vector<net::TcpSocket> clients;
        for (int i = 0; i < 5; ++i) clients.push_back(net::connect(address));
        for (int i = 0; i < 5; ++i) started.wait();
        server.kill();
        try {
          server.wait();
        } catch (const green::GreenletExit&) {
          ended_when_serve_returned = handlers_ended.load();
        }
        for (auto& client : clients) REQUIRE(read_byte(client) == 0);
      },
      with_workers(workers));
  REQUIRE(ended_when_serve_returned == 5);
}

TEST_CASE("a report hook blocked when serve() is killed dies with it",
          "[net][serve]") {
  // The hook runs on the failing handler's green thread and may block;
  // killing serve() kills it there, and the handler leaves serve's list
  // of running handlers all the same (a second kill of another serve on
  // the same runtime then walks only live ones).
  std::atomic<int> hooks_killed{0};
  green::run(
      [&] {
        net::Listener listener = loopback_listener();
        const net::Endpoint address = listener.local_endpoint();
        for (int round = 0; round < 2; ++round) {
          green::testing::Signal in_hook;
          auto server = green::spawn([&] {
            net::ServeOptions options;
            options.handler_errors = net::HandlerErrors::kReport;
            options.report = [&](std::exception_ptr, const std::string&) {
              in_hook.post();
              try {
                green::sleep(std::chrono::hours(1));
              } catch (const green::GreenletExit&) {
                hooks_killed.fetch_add(1);
                throw;
              }
            };
            net::serve(
                listener,
                [](net::TcpSocket&) { throw std::runtime_error("fails"); },
                options);
          });
          std::vector<net::TcpSocket> clients;
          for (int i = 0; i < 3; ++i) clients.push_back(net::connect(address));
          for (int i = 0; i < 3; ++i) in_hook.wait();
          server.kill();
          CHECK_THROWS_AS(server.wait(), green::GreenletExit);
        }
      },
      with_workers(2));
  CHECK(hooks_killed.load() == 6);
}

TEST_CASE("green::Timeout around serve() stops it the same way",
          "[net][serve]") {
  bool timed_out = false;
  green::run(
      [&] {
        net::Listener listener = loopback_listener();
        green::Timeout timeout(50ms);
        try {
          net::serve(listener, [](net::TcpSocket&) {});
        } catch (const green::Timeout& fired) {
          timed_out = fired == timeout;
        }
      },
      with_workers(2));
  REQUIRE(timed_out);
}

TEST_CASE("closing the listener ends serve() with an error", "[net][serve]") {
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        auto server = green::spawn([&] {
          try {
            net::serve(listener, [](net::TcpSocket&) {});
            return 0;
          } catch (const std::system_error& e) {
            return e.code() == std::errc::bad_file_descriptor ? 1 : 2;
          }
        });
        green::sleep(20ms);
        listener.close();
        REQUIRE(server.wait() == 1);
      },
      with_workers(2));
}

TEST_CASE("accepted clients are spread over the workers", "[net][serve]") {
  constexpr int kClients = 32;
  constexpr int kRounds = 5;
  std::mutex mutex;
  std::set<std::size_t> workers_seen;
  green::run(
      [&] {
        net::Listener listener = loopback_listener();
        const net::Endpoint address = listener.local_endpoint();
        auto server = green::spawn([&] {
          net::serve(listener, [&](net::TcpSocket& client) {
            // A wait for input ends on the worker that owns the socket, and
            // the handler is queued there; an idle worker may still steal
            // it, so a few rounds are looked at, not one.
            for (;;) {
              const char c = read_byte(client);
              if (c == 's') throw net::StopServe();
              if (c == 'q') return;
              {
                std::lock_guard<std::mutex> guard(mutex);
                workers_seen.insert(green::worker_id());
              }
              client.write_all("k");
            }
          });
        });
        std::vector<net::TcpSocket> clients;
        for (int i = 0; i < kClients; ++i)
          clients.push_back(net::connect(address));
        for (int round = 0; round < kRounds; ++round) {
          for (auto& client : clients) client.write_all("r");
          for (auto& client : clients) REQUIRE(read_byte(client) == 'k');
        }
        for (auto& client : clients) client.write_all("q");
        send_stop(address);
        server.wait();
      },
      with_workers(2));
  REQUIRE(workers_seen.size() == 2);
}

TEST_CASE("serve() works on Unix-domain sockets", "[net][serve]") {
  const std::string path =
      "/tmp/green-net-serve-test-" + std::to_string(::getpid()) + ".sock";
  std::string reply;
  green::run(
      [&] {
        net::UnixListener listener = net::listen_unix(path, 64, true);
        auto server = green::spawn([&] {
          net::serve(
              listener, [](net::UnixStream& client, const net::UnixEndpoint&) {
                char buffer[64];
                const std::size_t n = client.read_some(buffer, sizeof buffer);
                if (n == 1 && buffer[0] == 's') throw net::StopServe();
                client.write_all(std::string("unix:") + std::string(buffer, n));
              });
        });
        {
          net::UnixStream client = net::connect_unix(path, 5s);
          client.write_all("hello");
          client.shutdown();
          reply.resize(10);
          REQUIRE(client.read_exact(reply.data(), reply.size()));
        }
        net::UnixStream stopper = net::connect_unix(path);
        stopper.write_all("s");
        server.wait();
      },
      with_workers(2));
  ::unlink(path.c_str());
  REQUIRE(reply == "unix:hello");
}

TEST_CASE("serve() checks its arguments", "[net][serve]") {
  green::run(
      [] {
        net::Listener listener = loopback_listener();
        net::ServeOptions options;
        options.concurrency = 0;
        REQUIRE_THROWS_AS(net::serve(
                              listener, [](net::TcpSocket&) {}, options),
                          std::invalid_argument);
        // One acceptor per listener: a second serve() is a clear error.
        auto first =
            green::spawn([&] { net::serve(listener, [](net::TcpSocket&) {}); });
        green::sleep(10ms);
        REQUIRE_THROWS_AS(net::serve(listener, [](net::TcpSocket&) {}),
                          std::logic_error);
        first.kill();
        REQUIRE_THROWS_AS(first.wait(), green::GreenletExit);
      },
      with_workers(1));
  net::Listener not_open;
  REQUIRE_THROWS_AS(net::serve(not_open, [](net::TcpSocket&) {}),
                    std::logic_error);
}
