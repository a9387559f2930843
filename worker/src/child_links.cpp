/* The supervisor's end of its children's links (link.hpp; see supervisor.hpp for the design).
 *
 * The loop polls each link for input, and for output only while something waits to be
 * written, so a child that is slow to read never blocks the host and an idle link costs
 * nothing. A child's death is still learnt from the zygote's exit report, never from its link:
 * that report says how it died and carries its stderr, and on_child_exit() settles its tasks.
 *
 * A link can fail two ways, both the child's doing (its user code may write anything to the
 * socket, or close it):
 *   - broken: a message over the caps or with a bad header. The stream cannot be resynchronised,
 *     so the child is killed at once; its running task is reported lost, as in any death.
 *   - ended: end of file or a socket error. A dying child closes its descriptors before the
 *     zygote can reap it, so this is most often a death about to be reported; a child still
 *     alive after kLinkGrace has closed its link itself and could hold its tasks forever: it is
 *     killed too.
 */
#include "dpool/log.hpp"
#include "supervisor.hpp"

namespace dpool::detail {
namespace {

constexpr auto kLinkGrace = std::chrono::seconds(2);

}  // namespace

/* Adds one poll item per open link to `items`; returns the children they belong to, in order. */
std::vector<std::size_t> Supervisor::poll_links(std::vector<zmq::pollitem_t>& items) const {
  std::vector<std::size_t> polled;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    const auto& link = children_[i].link;
    if (!link) continue;
    const short events = static_cast<short>(ZMQ_POLLIN | (link->pending() ? ZMQ_POLLOUT : 0));
    items.push_back({nullptr, link->fd(), events, 0});
    polled.push_back(i);
  }
  return polled;
}

/* Writes to and reads from the links poll found ready. A link closed since the poll (its child
 * was handled meanwhile) is skipped; no link is opened between the poll and this. */
void Supervisor::serve_links(const std::vector<zmq::pollitem_t>& items, std::size_t first,
                             const std::vector<std::size_t>& polled) {
  for (std::size_t k = 0; k < polled.size(); ++k) {
    const auto& item = items[first + k];
    Child& c = children_[polled[k]];
    if (!c.link || c.link->fd() != item.fd) continue;
    if (item.revents & ZMQ_POLLOUT) write_link(c);
    // Hang-up and errors come as ZMQ_POLLERR: the read then finds the end of the link.
    if (c.link && (item.revents & (ZMQ_POLLIN | ZMQ_POLLERR))) read_link(c);
  }
}

void Supervisor::read_link(Child& c) {
  std::vector<Message> messages;
  const auto state = c.link->receive(messages);
  const std::string why = c.link->why();
  // Whole messages that came before a broken one are the child's word all the same.
  for (auto& m : messages) on_child_message(c, m);
  if (state == Link::State::kBroken) on_link_broken(c, why);
  if (state == Link::State::kClosed) close_link(c);
}

/* Writes what the socket takes now. Returns false (and closes the link) when the child's end
 * is gone. */
bool Supervisor::write_link(Child& c) {
  if (!c.link) return false;
  if (c.link->flush(false)) return true;
  close_link(c);
  return false;
}

void Supervisor::close_link(Child& c) {
  if (!c.link) return;
  c.link.reset();
  c.link_lost = Clock::now();
}

void Supervisor::on_link_broken(Child& c, const std::string& why) {
  drops_.drop(DropReason::kFraming, "worker process " + std::to_string(c.pid), why);
  log::warn("worker process {} broke its link to the supervisor ({}): killing it", c.pid, why);
  close_link(c);
  c.broken = "it broke its link to the supervisor: " + why;
  kill_child(c);  // a child not yet known by its pid is killed by check_links() once it is
}

/* Kills the children whose link broke or ended kLinkGrace ago, and whose death is not reported
 * yet; their exit reports settle their tasks. */
void Supervisor::check_links(Clock::time_point now) {
  for (auto& c : children_) {
    if (c.pid <= 0 || c.killed || c.link) continue;
    if (c.broken.empty() && now < c.link_lost + kLinkGrace) continue;
    if (c.broken.empty()) {
      log::warn("worker process {} closed its link to the supervisor and lives on: killing it",
                c.pid);
      c.broken = "it closed its link to the supervisor";
    }
    kill_child(c);
  }
}

/* When check_links() must look at `c` again (time_point::max() if never). */
Clock::time_point Supervisor::link_deadline(const Child& c) const {
  if (c.pid < 0 || c.killed || c.link) return Clock::time_point::max();
  return c.link_lost + kLinkGrace;
}

}  // namespace dpool::detail
