// green::local<T>: green-thread-local storage.
//
//   green::local<std::string> request_id;   // e.g. a global
//   ... in any green thread:  *request_id = "abc";  use(*request_id);
//
// Each green thread sees its own T, default-constructed on first use and
// destroyed when that green thread ends. Use it instead of thread_local:
// a green thread may move to another worker (another OS thread) at every
// blocking point, so a thread_local read before a sleep() and after it can
// belong to two different threads -- and two green threads on one worker
// share it.
#ifndef GREEN_RUNTIME_LOCAL_H_
#define GREEN_RUNTIME_LOCAL_H_

#include <cstdint>

#include "runtime/local_storage.h"

namespace green {
namespace detail {
std::uint64_t next_local_key() noexcept;
// The running green thread's slots; throws std::logic_error naming `call`
// on a plain thread.
LocalStorage& current_locals(const char* call);
}  // namespace detail

template <typename T>
class local {
 public:
  local() : key_(detail::next_local_key()) {}
  local(const local&) = delete;
  local& operator=(const local&) = delete;

  // The calling green thread's value.
  T& get() const {
    return detail::current_locals("green::local::get").get<T>(key_);
  }
  T& operator*() const { return get(); }
  // The calling green thread's value if it has made one; creates nothing.
  T* find() const {
    return detail::current_locals("green::local::find").find<T>(key_);
  }
  T* operator->() const { return &get(); }

 private:
  const std::uint64_t key_;
};

}  // namespace green

#endif  // GREEN_RUNTIME_LOCAL_H_
