#pragma once
// The LibTorch API differences ostrov meets between the versions it builds against — Debian
// 12's LibTorch 1.13.1 and Debian 13's 2.6.0 (docs/architecture.md "Platforms"). Internal:
// not part of ostrov's API. Each entry names the versions it covers.

#include <variant>

#if __has_include(<c10/util/variant.h>)
#include <c10/util/variant.h>
#endif

namespace ostrov::compat {

/// The module options' variants (Conv2dOptions::padding(), padding_mode()) are c10::variant in
/// LibTorch 1.13 and std::variant in 2.x (2.6 tested). Overload resolution picks the get_if /
/// get that matches the argument; c10's exists only where its header does.
template <typename T, typename Variant>
auto get_if(Variant* variant) {
  using std::get_if;
#if __has_include(<c10/util/variant.h>)
  using c10::get_if;
#endif
  return get_if<T>(variant);
}

template <typename T, typename Variant>
decltype(auto) get(Variant&& variant) {
  using std::get;
#if __has_include(<c10/util/variant.h>)
  using c10::get;
#endif
  return get<T>(std::forward<Variant>(variant));
}

}  // namespace ostrov::compat
