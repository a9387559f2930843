/* fuzz_link: the supervisor's reader of a child's link (worker/src/link.hpp), the one stream
 * decoder in dpool with caps of its own, since a child runs user code that may write anything.
 *
 * The input is a list of chunks, each a length byte and that many bytes; every chunk is one
 * write into a real socketpair followed by one Link::receive(), so that messages arrive split
 * at every possible point, as they do from a busy child. The end of the input closes the
 * writing end (the child is gone). The reader uses the supervisor's own caps (LinkLimits{}):
 * those are what hostile input meets. Whole messages are decoded as the supervisor decodes a
 * child's DONE. A link that reports kBroken must stay broken: nothing may be read past it.
 */
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

#include "dpool/codec.hpp"
#include "entries.hpp"
#include "link.hpp"

namespace dpool::fuzz {
namespace {

/* Writes all of `data` (a chunk fits in any socket buffer: at most 255 bytes). */
bool write_all(int fd, const std::uint8_t* data, std::size_t size) {
  while (size > 0) {
    const auto n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

void decode_messages(std::vector<Message>& messages, DropCounters& drops) {
  for (auto& m : messages) {
    if (m.command == Command::kDone) (void)decode<wire::DoneBatch>(m, drops, "child");
  }
  messages.clear();
}

}  // namespace

int fuzz_link(const std::uint8_t* data, std::size_t size) {
  auto [reader_end, writer_end] = detail::make_link_pair();
  detail::Link link(std::move(reader_end));
  detail::Fd writer = std::move(writer_end);
  std::vector<Message> messages;
  DropCounters drops;
  auto state = detail::Link::State::kOpen;
  std::size_t at = 0;
  while (at < size && state == detail::Link::State::kOpen) {
    const std::size_t length = std::min<std::size_t>(data[at], size - at - 1);
    if (!write_all(writer.get(), data + at + 1, length)) break;
    at += 1 + length;
    state = link.receive(messages);
    decode_messages(messages, drops);
  }
  writer = detail::Fd();  // the child is gone
  const auto before = state;
  state = link.receive(messages);
  if (before == detail::Link::State::kBroken && (state != before || !messages.empty()))
    std::abort();
  decode_messages(messages, drops);
  return 0;
}

}  // namespace dpool::fuzz
