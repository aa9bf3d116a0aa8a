// greenrt's public umbrella header: everything public, namespace green.
//
//   #include "green/green.h"
//   int main() {
//     return green::run([] {
//       auto t = green::spawn([] { green::sleep(std::chrono::milliseconds(5));
//                                  return 42; });
//       return t.wait() == 42 ? 0 : 1;
//     });
//   }
#ifndef GREEN_GREEN_H_
#define GREEN_GREEN_H_

#include "net/net.h"
#include "runtime/errors.h"
#include "runtime/green_thread.h"
#include "runtime/local.h"
#include "runtime/options.h"
#include "runtime/run.h"
#include "sync/sync.h"

#endif  // GREEN_GREEN_H_
