# Debian's xsimd 8.1.0 exports INTERFACE_LINK_LIBRARIES "xtl" without find_dependency(xtl),
# so every consumer would link -lxtl and fail (xsimd issue #869). xsimd itself is header-only:
# an empty imported target named xtl makes the link line correct.
if(TARGET xsimd AND NOT TARGET xtl)
  add_library(xtl INTERFACE IMPORTED)
endif()
