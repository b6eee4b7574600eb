# Compiler flags shared by every target: warnings, hardening, sanitizers, ccache.

find_program(TRELLIS_CCACHE ccache)
if(TRELLIS_CCACHE)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${TRELLIS_CCACHE})
  message(STATUS "Trellis: using ccache at ${TRELLIS_CCACHE}")
endif()

add_compile_options(-Wall -Wextra -Wno-unused-parameter)

# Each function and object in its own section, and executables and the PostgreSQL module
# linked without the sections nothing reaches: the kernel maps most of a binary's text into
# memory around the pages that run, so code linked in but never called still costs every
# agent resident memory.
add_compile_options(-ffunction-sections -fdata-sections)
set(trellis_linked_whole
    "$<OR:$<STREQUAL:$<TARGET_PROPERTY:TYPE>,EXECUTABLE>,$<STREQUAL:$<TARGET_PROPERTY:TYPE>,MODULE_LIBRARY>>")
add_link_options($<${trellis_linked_whole}:-Wl,--gc-sections>)

# Hardening applies to every build type: stack protector, FORTIFY (needs optimisation, so
# only where the build optimises), PIE and full RELRO with immediate binding. Position
# independence comes from CMake: -fPIE for executables, -fPIC for libraries (the PostgreSQL
# module is a shared object built from them). Nothing is interposed on our own functions (the
# module exports one entry point), so calls between them within a library stay direct and
# inlinable as in position-dependent code.
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
add_compile_options(-fno-semantic-interposition)
add_compile_options(-fstack-protector-strong)
if(NOT CMAKE_BUILD_TYPE STREQUAL "Debug" AND NOT TRELLIS_SANITIZE)
  add_compile_definitions(_FORTIFY_SOURCE=2)
endif()
add_link_options($<$<STREQUAL:$<TARGET_PROPERTY:TYPE>,EXECUTABLE>:-pie> -Wl,-z,relro -Wl,-z,now
                 -Wl,-z,noexecstack)

if(TRELLIS_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
