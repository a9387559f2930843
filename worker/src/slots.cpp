/* The shared mapping behind SharedSlots (see slots.hpp). */
#include "slots.hpp"

#include <sys/mman.h>

#include <new>

#include "dpool/error.hpp"

namespace dpool::detail {

SharedSlots::SharedSlots(std::size_t n) : n_(n) {
  void* mem = ::mmap(nullptr, sizeof(SlotState) * n, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw Error(Errc::kInternal, "cannot map memory shared with the children");
  slots_ = static_cast<SlotState*>(mem);
  for (std::size_t i = 0; i < n; ++i) new (&slots_[i]) SlotState();
}

SharedSlots::~SharedSlots() { ::munmap(slots_, sizeof(SlotState) * n_); }

}  // namespace dpool::detail
