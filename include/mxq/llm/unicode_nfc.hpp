// Unicode Normalization Form C (UAX #15), the normalizer Qwen2/Qwen3 tokenizer.json files declare:
// canonical decomposition, canonical ordering by combining class, canonical composition (Hangul
// algorithmically). Tables generated from the Unicode Character Database by tools/gen/unicode_nfc.py
// (unicode_nfc_data.hpp states the version); by Unicode's stability policy a text made of
// characters of that version normalizes the same in every later version.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "unicode_nfc_data.hpp"
#include "utf8.hpp"

namespace mxq::llm {
namespace detail_nfc {

inline constexpr std::uint32_t s_base = 0xAC00, l_base = 0x1100, v_base = 0x1161, t_base = 0x11A7;
inline constexpr std::uint32_t l_count = 19, v_count = 21, t_count = 28, n_count = v_count * t_count,
                               s_count = l_count * n_count;

template <std::size_t N>
inline const cp_range* find_range(const cp_range (&t)[N], std::uint32_t cp) noexcept {
  const auto it = std::upper_bound(t, t + N, cp, [](std::uint32_t c, const cp_range& r) { return c < r.lo; });
  return it != t && cp <= (it - 1)->hi ? it - 1 : nullptr;
}
inline std::uint8_t combining_class_of(std::uint32_t cp) noexcept {
  const cp_range* r = find_range(combining_class, cp);
  return r ? r->value : 0;
}
inline bool maybe_changes(std::uint32_t cp) noexcept { return find_range(maybe_unnormalized, cp) != nullptr; }

inline void decompose(std::uint32_t cp, std::vector<std::uint32_t>& out) {
  if (cp >= s_base && cp < s_base + s_count) {
    const std::uint32_t s = cp - s_base;
    out.push_back(l_base + s / n_count), out.push_back(v_base + (s % n_count) / t_count);
    if (s % t_count) out.push_back(t_base + s % t_count);
    return;
  }
  const auto* end = decompositions + std::size(decompositions);
  const auto* d = std::lower_bound(decompositions, end, cp, [](const decomposition& e, std::uint32_t c) { return e.cp < c; });
  if (d != end && d->cp == cp) out.insert(out.end(), decomposed + d->offset, decomposed + d->offset + d->length);
  else out.push_back(cp);
}
// The primary composite of a + b, or 0.
inline std::uint32_t compose(std::uint32_t a, std::uint32_t b) noexcept {
  if (a >= l_base && a < l_base + l_count && b >= v_base && b < v_base + v_count)
    return s_base + ((a - l_base) * v_count + (b - v_base)) * t_count;
  if (a >= s_base && a < s_base + s_count && (a - s_base) % t_count == 0 && b > t_base && b < t_base + t_count)
    return a + (b - t_base);
  const std::uint64_t key = (std::uint64_t{a} << 21) | b;
  const auto* end = composites + std::size(composites);
  const auto* c = std::lower_bound(composites, end, key, [](const composite& e, std::uint64_t k) { return e.pair < k; });
  return c != end && c->pair == key ? c->cp : 0;
}

}  // namespace detail_nfc

// `s` (valid UTF-8) in NFC. Text without a character that NFC could change (ASCII, most Latin,
// CJK, …) comes back as it is without the full algorithm.
inline std::string nfc(std::string_view s) {
  namespace dn = detail_nfc;
  bool plain = true;
  for (std::size_t i = 0; i < s.size() && plain;) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    plain = !dn::maybe_changes(detail_utf8::next(s, i));
  }
  if (plain) return std::string(s);
  std::vector<std::uint32_t> cps;
  cps.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) dn::decompose(detail_utf8::next(s, i), cps);
  // Canonical ordering: each run of non-starters stably sorted by combining class.
  std::vector<std::uint8_t> cls(cps.size());
  for (std::size_t i = 0; i < cps.size(); ++i) cls[i] = dn::combining_class_of(cps[i]);
  for (std::size_t i = 0; i < cps.size();) {
    if (!cls[i]) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < cps.size() && cls[j]) ++j;
    for (std::size_t a = i + 1; a < j; ++a)  // insertion sort: runs are short, the sort is stable
      for (std::size_t b = a; b > i && cls[b - 1] > cls[b]; --b) std::swap(cls[b - 1], cls[b]), std::swap(cps[b - 1], cps[b]);
    i = j;
  }
  // Canonical composition: each character joins the last starter unless a character of the same
  // or a higher class (or a starter) stands between them.
  std::size_t out = 0, starter = 0;
  bool have_starter = false;
  int last = -1;  // class of the last character kept after the starter; -1: none
  for (std::size_t i = 0; i < cps.size(); ++i) {
    const int c = cls[i];
    if (have_starter && (last == -1 || (last != 0 && last < c)))
      if (const std::uint32_t comp = dn::compose(cps[starter], cps[i])) {
        cps[starter] = comp;
        continue;
      }
    if (c == 0) starter = out, have_starter = true, last = -1;
    else last = c;
    cls[out] = cls[i], cps[out++] = cps[i];
  }
  std::string r;
  r.reserve(s.size());
  for (std::size_t i = 0; i < out; ++i) detail_utf8::append(r, cps[i]);
  return r;
}

}  // namespace mxq::llm
