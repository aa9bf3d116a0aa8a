// Everything in net/ (sockets, listen/connect/serve, wrap_ssl); included by
// green/green.h.
#ifndef GREEN_NET_NET_H_
#define GREEN_NET_NET_H_

#endif  // GREEN_NET_NET_H_
