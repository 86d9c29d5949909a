// Runtime name -> compile-time format: call a generic lambda with the format type.
#pragma once
#include <string>
#include <string_view>
#include <type_traits>

#include "../config.hpp"
#include "predefined.hpp"

namespace mxq {

template <class F>
struct format_tag {
  using type = F;
};

// visit_format("mxfp4", [](auto tag) { using F = typename decltype(tag)::type; ... });
template <class... F, class Fn>
decltype(auto) visit_format(std::string_view name, Fn&& fn, format_list<F...>) {
  using R = std::invoke_result_t<Fn, format_tag<typename std::tuple_element<0, std::tuple<F...>>::type>>;
  if constexpr (std::is_void_v<R>) {
    bool found = ((format_traits<F>::name == name ? (fn(format_tag<F>{}), true) : false) || ...);
    if (!found) throw error("unknown format '" + std::string(name) + "' (see `mxq formats`)");
  } else {
    R result{};
    bool found = ((format_traits<F>::name == name ? (result = fn(format_tag<F>{}), true) : false) || ...);
    if (!found) throw error("unknown format '" + std::string(name) + "' (see `mxq formats`)");
    return result;
  }
}
template <class Fn>
decltype(auto) visit_format(std::string_view name, Fn&& fn) {
  return visit_format(name, std::forward<Fn>(fn), predefined_formats{});
}

template <class... F, class Fn>
void for_each_format(Fn&& fn, format_list<F...>) {
  (fn(format_tag<F>{}), ...);
}
template <class Fn>
void for_each_format(Fn&& fn) {
  for_each_format(std::forward<Fn>(fn), predefined_formats{});
}

inline bool is_known_format(std::string_view name) {
  bool found = false;
  for_each_format([&](auto tag) { found = found || format_traits<typename decltype(tag)::type>::name == name; });
  return found;
}

}  // namespace mxq
