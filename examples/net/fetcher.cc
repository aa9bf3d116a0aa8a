// Fetches many URLs at once through a GreenPool (after Eventlet's
// webcrawler example):
//
//   pool = eventlet.GreenPool(50)
//   for body in pool.imap(fetch, urls):
//       print("got body", len(body))
//
//   bazel run //examples/net:fetcher                       # local demo
//   bazel run //examples/net:fetcher -- http://127.0.0.1:8000/ ...
//
// With no URLs it starts its own little HTTP/1.0 servers on a few local
// ports (serve()) and fetches a few hundred URLs from them, at most 50 at
// a time. fetch() is ordinary blocking-looking code: resolve, connect,
// write the request, read to end of stream -- each call parks only its own
// green thread. imap yields the results in input order.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "examples/net/line_reader.h"
#include "green/green.h"

namespace net = green::net;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kPoolSize = 50;
constexpr int kLocalServers = 4;
constexpr int kLocalUrls = 400;

struct Url {
  std::string host;
  std::uint16_t port = 80;
  std::string path = "/";
};

// http://host[:port][/path] only; enough for an example.
Url parse_url(const std::string& text) {
  const std::string scheme = "http://";
  if (text.compare(0, scheme.size(), scheme) != 0) {
    throw std::invalid_argument("only http:// URLs: " + text);
  }
  Url url;
  const std::string rest = text.substr(scheme.size());
  const std::size_t slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) url.path = rest.substr(slash);
  const std::size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']') == std::string::npos) {
    url.host = authority.substr(0, colon);
    url.port =
        static_cast<std::uint16_t>(std::stoi(authority.substr(colon + 1)));
  } else {
    url.host = authority;
  }
  return url;
}

struct Fetched {
  std::string url;
  int status = 0;
  std::size_t body_bytes = 0;
  std::string error;
};

// One HTTP/1.0 GET; the body is whatever follows the headers until the
// server closes.
Fetched fetch(const std::string& text) {
  Fetched result{text};
  try {
    const Url url = parse_url(text);
    net::TcpSocket socket =
        net::connect(url.host, url.port, {.timeout = std::chrono::seconds(5)});
    socket.set_timeout(std::chrono::seconds(10));
    socket.write_all("GET " + url.path + " HTTP/1.0\r\nHost: " + url.host +
                     "\r\nConnection: close\r\n\r\n");
    examples::LineReader reader(socket);
    const std::optional<std::string> status = reader.read_line();
    if (!status || status->compare(0, 5, "HTTP/") != 0) {
      throw std::runtime_error("not an HTTP response");
    }
    result.status = std::stoi(status->substr(status->find(' ') + 1));
    while (std::optional<std::string> header = reader.read_line()) {
      if (*header == "\r\n" || *header == "\n") break;
    }
    while (std::optional<std::string> chunk = reader.read_line()) {
      result.body_bytes += chunk->size();
    }
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  return result;
}

// A tiny HTTP/1.0 server: GET /<n> answers with n bytes of body.
void http_handler(net::TcpSocket& client) {
  examples::LineReader reader(client);
  const std::optional<std::string> request = reader.read_line();
  if (!request) return;
  while (std::optional<std::string> header = reader.read_line()) {
    if (*header == "\r\n" || *header == "\n") break;
  }
  const std::size_t path = request->find(" /");
  const std::size_t size =
      path == std::string::npos
          ? 0
          : std::strtoul(request->c_str() + path + 2, nullptr, 10);
  std::string body(size, 'x');
  if (!body.empty()) body.back() = '\n';
  client.write_all("HTTP/1.0 200 OK\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\n\r\n" + body);
}

int fetch_all(const std::vector<std::string>& urls) {
  green::GreenPool pool(kPoolSize);
  const auto start = Clock::now();
  std::size_t ok = 0, bytes = 0;
  for (const Fetched& result : pool.imap(fetch, urls)) {
    if (result.error.empty() && result.status == 200) {
      ++ok;
      bytes += result.body_bytes;
      if (urls.size() <= 20 || ok % 100 == 0) {
        std::printf("got body %zu bytes from %s\n", result.body_bytes,
                    result.url.c_str());
      }
    } else {
      std::printf("%s: %s\n", result.url.c_str(),
                  result.error.empty()
                      ? ("status " + std::to_string(result.status)).c_str()
                      : result.error.c_str());
    }
  }
  const double seconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "fetched %zu of %zu URLs, %zu body bytes, in %.3f s (pool of %zu)\n", ok,
      urls.size(), bytes, seconds, kPoolSize);
  return ok == urls.size() ? 0 : 1;
}

int local_demo() {
  std::vector<net::Listener> listeners;
  std::vector<green::GreenThread<void>> servers;
  for (int i = 0; i < kLocalServers; ++i) {
    listeners.push_back(net::listen(net::endpoint("127.0.0.1", 0)));
  }
  for (net::Listener& listener : listeners) {
    servers.push_back(
        green::spawn([&listener] { net::serve(listener, http_handler); }));
  }
  std::vector<std::string> urls;
  for (int i = 0; i < kLocalUrls; ++i) {
    const net::Endpoint& server = listeners[i % kLocalServers].local_endpoint();
    // Half by name (resolved without blocking a worker), half by address.
    urls.push_back("http://" + std::string(i % 2 ? "localhost" : "127.0.0.1") +
                   ":" + std::to_string(server.port()) + "/" +
                   std::to_string(100 + 37 * i));
  }
  const int status = fetch_all(urls);
  for (auto& server : servers) {
    server.kill();
    try {
      server.wait();
    } catch (const green::GreenletExit&) {
    }
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> urls(argv + 1, argv + argc);
  return green::run(
      [&] { return urls.empty() ? local_demo() : fetch_all(urls); });
}
