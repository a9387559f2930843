/* The umbrella header: everything a program needs to define tasks and run them on a pool. */
#pragma once

#include "dpool/client.hpp"
#include "dpool/error.hpp"
#include "dpool/futures.hpp"
#include "dpool/pool.hpp"
#include "dpool/task.hpp"
#include "dpool/worker.hpp"
