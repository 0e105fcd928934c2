#pragma once
// Catch2 2 (Debian 12: 2.13, one header) and Catch2 3 (Debian 13: 3.7, split headers) behind
// one include. The tests use Catch2 2's spellings; under Catch2 3 this header provides them:
// Catch::Contains (a substring matcher: Catch::ContainsSubstring in 3, where
// Matchers::Contains became a range matcher), Catch::StartsWith and a global Approx.
// Include it after LibTorch (pch.h says why).

#if __has_include(<catch2/catch_all.hpp>)
#include <string>

#include <catch2/catch_all.hpp>

namespace Catch {
inline Matchers::StringContainsMatcher Contains(const std::string& text,
                                                CaseSensitive sensitivity = CaseSensitive::Yes) {
  return Matchers::ContainsSubstring(text, sensitivity);
}
using Matchers::StartsWith;
}  // namespace Catch

using Catch::Approx;
#else
#include <catch2/catch.hpp>
#endif
