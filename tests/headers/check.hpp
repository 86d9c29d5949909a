// The one helper of the header examples: no mxq header, so each example still includes only its own.
#pragma once
#include <cstddef>
#include <cstdio>
#include <random>
#include <vector>

#define CHECK(c)                                                                 \
  do {                                                                           \
    if (!(c)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
      return 1;                                                                  \
    }                                                                            \
  } while (0)

// n values of N(0, sd^2) from a fixed seed.
inline std::vector<float> normal_values(std::size_t n, unsigned seed, float sd = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}
