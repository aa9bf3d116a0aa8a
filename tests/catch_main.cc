// Catch2 v2's main(), compiled once for every test binary.
//
// Catch2's own POSIX signal handlers are off: the runtime installs its
// stack-overflow handler on an alternate stack, and sanitizers install
// theirs; Catch2's handler (which allocates) would shadow both.
#define CATCH_CONFIG_NO_POSIX_SIGNALS
#define CATCH_CONFIG_MAIN
#include "catch2/catch.hpp"
