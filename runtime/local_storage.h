// LocalStorage: the green-thread-local slots of one fiber (green::local<T>).
//
// Slots are keyed by a process-unique 64-bit key per green::local object
// (never by address, which a later object could reuse), created on first
// access and destroyed on the green thread's own stack when its function
// ends, so their destructors may still use green APIs.
#ifndef GREEN_RUNTIME_LOCAL_STORAGE_H_
#define GREEN_RUNTIME_LOCAL_STORAGE_H_

#include <cstdint>
#include <memory>
#include <unordered_map>

namespace green::detail {

class LocalStorage {
 public:
  struct Slot {
    virtual ~Slot() = default;
  };
  template <typename T>
  struct TypedSlot final : Slot {
    T value{};
  };

  template <typename T>
  T& get(std::uint64_t key) {
    std::unique_ptr<Slot>& slot = slots_[key];
    if (!slot) slot = std::make_unique<TypedSlot<T>>();
    return static_cast<TypedSlot<T>*>(slot.get())->value;
  }

  template <typename T>
  T* find(std::uint64_t key) noexcept {
    auto it = slots_.find(key);
    return it == slots_.end()
               ? nullptr
               : &static_cast<TypedSlot<T>*>(it->second.get())->value;
  }

 private:
  std::unordered_map<std::uint64_t, std::unique_ptr<Slot>> slots_;
};

}  // namespace green::detail

#endif  // GREEN_RUNTIME_LOCAL_STORAGE_H_
