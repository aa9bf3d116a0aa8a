// Exceptions the runtime raises inside green threads.
#ifndef GREEN_RUNTIME_ERRORS_H_
#define GREEN_RUNTIME_ERRORS_H_

namespace green {

// Raised inside a green thread by GreenThread::kill() at its next blocking
// point (Eventlet's greenlet.GreenletExit), and rethrown by wait() on a
// killed green thread.
//
// Like Python's BaseException it deliberately does NOT derive from
// std::exception: `catch (const std::exception&)` in application code must
// not swallow a kill. Catch it by name (or with `catch (...)`) and rethrow.
class GreenletExit {
 public:
  const char* what() const noexcept { return "green::GreenletExit"; }
};

}  // namespace green

#endif  // GREEN_RUNTIME_ERRORS_H_
