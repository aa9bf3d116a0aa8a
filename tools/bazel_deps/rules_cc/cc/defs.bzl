"""Stand-in for rules_cc that re-exports Bazel 4.2.3's native C++ rules.

Debian's bazel-rules-cc is too new for Bazel 4.2.3 (it loads
use_cpp_toolchain), and nothing may be downloaded, so this keeps
`load("@rules_cc//cc:defs.bzl", ...)` working offline.
"""

cc_binary = native.cc_binary
cc_import = native.cc_import
cc_library = native.cc_library
cc_proto_library = native.cc_proto_library
cc_test = native.cc_test
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
objc_library = native.objc_library
