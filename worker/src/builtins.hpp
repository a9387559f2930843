/* The built-in tasks (builtins.cpp). */
#pragma once

namespace dpool::detail {

/* Registers echo and sleep, and exec when `allow_exec` (withdrawing it otherwise). */
void register_builtins(bool allow_exec);

}  // namespace dpool::detail
