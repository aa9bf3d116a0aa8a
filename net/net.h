// Everything in net/ (sockets, listen/connect/serve, wrap_ssl); included by
// green/green.h. User documentation: net/README.md.
//
//   green::run([] {
//     green::net::serve(green::net::listen("127.0.0.1", 6000),
//                       [](green::net::TcpSocket& client,
//                          const green::net::Endpoint&) {
//                         char buffer[4096];
//                         while (std::size_t n = client.read_some(buffer,
//                         sizeof buffer))
//                           client.write_all(buffer, n);
//                       });
//   });
#ifndef GREEN_NET_NET_H_
#define GREEN_NET_NET_H_

#include "net/connect.h"      // connect(endpoint | host, port)
#include "net/endpoint.h"     // Endpoint, endpoint(), to_string()
#include "net/errors.h"       // TimeoutError, EndOfStream, TlsError
#include "net/listener.h"     // listen(), Listener, Accepted
#include "net/resolve.h"      // resolve()
#include "net/self_signed.h"  // make_self_signed_certificate()
#include "net/serve.h"        // serve(), StopServe, ServeOptions
#include "net/socket.h"       // TcpSocket, StreamSocket
#include "net/tls.h"          // wrap_ssl(), TlsStream, TLS contexts
#include "net/udp.h"          // UdpSocket, bind_udp()
#include "net/unix.h"         // UnixStream, UnixListener

#endif  // GREEN_NET_NET_H_
