// A chat server (after Eventlet's chat_server.py): every line a participant
// types goes to every other participant.
//
//   bazel run //examples/net:chat_server            # listens on port 3001
//   nc localhost 3001                               # from several terminals
//   bazel run //examples/net:chat_server -- --demo  # self-contained run
//
// Each participant is two green threads on one socket at once (full
// duplex): its serve() handler reads lines and broadcasts them, and a
// writer drains the participant's outbox -- a green::Queue -- onto the
// socket. Broadcasting only puts into queues, so one slow reader never
// stalls the others; an outbox that fills up drops lines for that reader
// (it is told so) instead of blocking the sender.
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "examples/net/line_reader.h"
#include "green/green.h"

namespace net = green::net;

namespace {

// Lines buffered for a participant before we start dropping for it.
constexpr std::size_t kOutboxSize = 256;

struct Participant {
  std::string name;
  // std::nullopt tells the writer to stop.
  green::Queue<std::optional<std::string>> outbox{kOutboxSize};
  bool dropping = false;  // touched by broadcasters under Room::mutex_
};

class Room {
 public:
  std::shared_ptr<Participant> join(const std::string& name) {
    auto participant = std::make_shared<Participant>();
    participant->name = name;
    std::lock_guard<std::mutex> guard(mutex_);  // never held across a park
    participants_[participant.get()] = participant;
    return participant;
  }

  void leave(Participant* participant) {
    std::lock_guard<std::mutex> guard(mutex_);
    participants_.erase(participant);
  }

  // Puts `line` into every other participant's outbox without blocking.
  void broadcast(const Participant* from, const std::string& line) {
    std::lock_guard<std::mutex> guard(mutex_);
    for (auto& [key, participant] : participants_) {
      if (key == from) continue;  // don't echo
      if (participant->outbox.try_put(std::optional<std::string>(line))) {
        participant->dropping = false;
      } else if (!participant->dropping) {
        participant->dropping = true;
        std::printf("chat: %s is too slow, dropping lines for it\n",
                    participant->name.c_str());
      }
    }
  }

 private:
  std::mutex mutex_;
  std::map<Participant*, std::shared_ptr<Participant>> participants_;
};

void handle(Room& room, net::TcpSocket& client, const net::Endpoint& peer) {
  const std::string name = net::to_string(peer);
  std::printf("participant joined: %s\n", name.c_str());
  std::shared_ptr<Participant> self = room.join(name);
  self->outbox.put(std::optional<std::string>("* welcome, " + name + "\n"));
  // The writer: the only green thread that writes to this socket.
  auto writer = green::spawn([&client, self] {
    while (std::optional<std::string> line = self->outbox.get()) {
      client.write_all(*line);
    }
  });
  try {
    examples::LineReader reader(client);
    while (std::optional<std::string> line = reader.read_line()) {
      std::printf("Chat: %s", line->c_str());
      room.broadcast(self.get(), *line);
    }
  } catch (const std::system_error& e) {
    std::printf("participant %s: %s\n", name.c_str(), e.what());
  }
  room.leave(self.get());
  self->outbox.put(std::nullopt);
  try {
    writer.wait();
  } catch (const std::system_error&) {
    // Writing to a participant that already left: nothing to do.
  }
  std::printf("participant left: %s\n", name.c_str());
}

// Three participants talk; each must hear the other two.
int demo() {
  Room room;
  net::Listener listener = net::listen(net::endpoint("127.0.0.1", 0));
  const net::Endpoint address = listener.local_endpoint();
  auto server = green::spawn([&] {
    net::serve(listener,
               [&room](net::TcpSocket& client, const net::Endpoint& peer) {
                 handle(room, client, peer);
               });
  });
  constexpr int kPeople = 3;
  std::vector<net::TcpSocket> sockets;
  sockets.reserve(kPeople);  // the readers keep references into it
  std::vector<std::unique_ptr<examples::LineReader<net::TcpSocket>>> readers;
  for (int i = 0; i < kPeople; ++i) {
    sockets.push_back(net::connect(address));
    readers.push_back(
        std::make_unique<examples::LineReader<net::TcpSocket>>(sockets[i]));
    // The welcome line: this person has joined, and will hear everything
    // said from now on.
    std::printf("demo: person %d hears %s", i,
                readers[i]->read_line().value_or("(nothing)\n").c_str());
  }
  std::vector<green::GreenThread<int>> listeners;
  for (int i = 0; i < kPeople; ++i) {
    listeners.push_back(green::spawn([&, i] {
      examples::LineReader<net::TcpSocket>& reader = *readers[i];
      int heard = 0;
      while (heard < kPeople - 1) {
        std::optional<std::string> line = reader.read_line();
        if (!line) break;
        std::printf("demo: person %d hears %s", i, line->c_str());
        ++heard;
      }
      return heard;
    }));
  }
  for (int i = 0; i < kPeople; ++i) {
    sockets[i].write_all("hello from person " + std::to_string(i) + "\n");
  }
  bool ok = true;
  for (auto& l : listeners) ok = l.wait() == kPeople - 1 && ok;
  for (auto& socket : sockets) socket.close();
  server.kill();
  try {
    server.wait();
  } catch (const green::GreenletExit&) {
  }
  std::printf("demo: %s\n", ok ? "everybody heard everybody" : "FAILED");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const bool run_demo = argc > 1 && std::strcmp(argv[1], "--demo") == 0;
  return green::run([&] {
    if (run_demo) return demo();
    Room room;
    std::printf("ChatServer starting up on port 3001\n");
    net::ServeOptions options;
    options.handler_errors = net::HandlerErrors::kReport;  // keep chatting
    net::serve(
        net::listen(net::endpoint("0.0.0.0", 3001)),
        [&room](net::TcpSocket& client, const net::Endpoint& peer) {
          handle(room, client, peer);
        },
        options);
    return 0;
  });
}
